"""Which release upstream broke the newest-versions leg of CI? Run with that leg's Python.

    python .ci/culprit.py moved --lock constraints.txt
        prints the packages whose installed version moved from the lock (one line)
    python .ci/culprit.py find --lock constraints.txt --check check.sh
        after the check failed: puts one moved package at a time back to its locked version
        (native bindings first) and reruns the check; the last line names the package and
        version whose release broke it. Always exits 1 (the leg failed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from swapline.versions import NATIVE_BINDINGS, read_lock

#: the search stops trying packages after this long (CI has 30 minutes in all)
BUDGET_S = 12 * 60


def installed() -> dict[str, str]:
    """``{canonical name: version}`` of this environment (pip's view)."""
    out = subprocess.run([sys.executable, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                         check=True, capture_output=True, text=True).stdout
    return {canonicalize_name(p["name"]): p["version"] for p in json.loads(out)}


def moved(lock: Path) -> list[tuple[str, str, str]]:
    """``(name, locked, installed)`` of every locked package installed at another release,
    native bindings first."""
    pins, have = read_lock(lock), installed()
    rows = [(name, pins[name], have[name]) for name in sorted(pins)
            if name in have and Version(have[name]).public != Version(pins[name]).public]
    native = [canonicalize_name(n) for n in NATIVE_BINDINGS]
    return sorted(rows, key=lambda r: (native.index(r[0]) if r[0] in native else len(native), r[0]))


def describe(rows: list[tuple[str, str, str]]) -> str:
    return ", ".join(f"{n} {old} -> {new}" for n, old, new in rows) or "none"


def _pip_install(name: str, version: str) -> bool:
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                           f"{name}=={version}"], check=False).returncode == 0


def find(lock: Path, check: Path) -> str:
    rows = moved(lock)
    if not rows:
        return ("CI: the newest-versions leg failed with every package at its locked version: "
                "not a release upstream (see the failure above)")
    print(f"moved since the lock: {describe(rows)}", flush=True)
    start = time.monotonic()
    for name, old, new in rows:
        if time.monotonic() - start > BUDGET_S:
            return f"CI: the newest-versions leg failed; not narrowed down in time; moved since the lock: {describe(rows)}"
        print(f"-- trying {name} {old} (the lock) instead of {new}", flush=True)
        if not _pip_install(name, old):
            continue
        passed = subprocess.run(["bash", str(check)], check=False).returncode == 0
        _pip_install(name, new)
        if passed:
            return f"CI: {name} {new} breaks swapline (the lock's {name} {old} passes); fix it or cap {name} below {new}"
    return f"CI: the newest-versions leg failed and no single package explains it; moved since the lock: {describe(rows)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("moved", "find"))
    parser.add_argument("--lock", type=Path, required=True)
    parser.add_argument("--check", type=Path, help="the check to rerun (with find)")
    args = parser.parse_args(argv)
    if args.action == "moved":
        print(f"moved since the lock: {describe(moved(args.lock))}")
        return 0
    if args.check is None:
        parser.error("find needs --check")
    print(find(args.lock, args.check), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
