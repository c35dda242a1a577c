"""The lock (constraints.txt) and pyproject.toml's ranges agree, and doctor reports versions
outside the tested set."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from swapline.versions import LOCK_NAME, NATIVE_BINDINGS, BindingVersion, binding_versions, read_lock

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def test_every_locked_version_lies_inside_its_pyproject_range() -> None:
    lock = read_lock(ROOT / LOCK_NAME)
    assert len(lock) > 50  # the whole resolved set, not only the direct dependencies
    outside = []
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is required but not in {LOCK_NAME}: refresh it (bash .ci/lock)"
        if not req.specifier.contains(Version(lock[name]), prereleases=True):
            outside.append(f"{req.name}=={lock[name]} is outside {req.specifier}")
    assert not outside, outside


def test_the_lock_installs_from_the_public_index() -> None:
    text = (ROOT / LOCK_NAME).read_text(encoding="utf-8")
    pins = [ln for ln in text.splitlines() if ln and not ln.lstrip().startswith("#")]
    assert all("==" in ln for ln in pins if not ln.startswith(" ")), "only exact pins"
    # no local version label (torch's "+cpu" comes from a local wheel folder), no index or path
    assert not [v for v in read_lock(ROOT / LOCK_NAME).values() if "+" in v]
    assert not [ln for ln in pins if ln.startswith(("-", "file:", "/")) or " @ " in ln]


def test_native_bindings_are_capped_below_their_next_major() -> None:
    reqs = {canonicalize_name(r.name): r for r in _requirements()}
    lock = read_lock(ROOT / LOCK_NAME)
    for name in NATIVE_BINDINGS:
        spec = reqs[canonicalize_name(name)].specifier
        caps = [s for s in spec if s.operator in ("<", "==", "~=")]
        assert caps, f"{name} {spec} has no upper bound"
        locked = Version(lock[canonicalize_name(name)])
        # the cap admits the locked major and nothing from the next one
        assert spec.contains(locked) and not spec.contains(Version(f"{locked.major + 1}.0"))


def test_a_version_outside_the_tested_set_is_named() -> None:
    inside = BindingVersion("av", "av", "18.1.1", ">=18.0,<19", "18.1.1")
    assert inside.problem is None
    assert "outside the tested range >=18.0,<19" in (BindingVersion("av", "av", "19.0.0", ">=18.0,<19", "18.1.1").problem or "")
    assert "not the tested 18.1.1" in (BindingVersion("av", "av", "18.0.0", ">=18.0,<19", "18.1.1").problem or "")
    # a local label is the same release; no lock: only the range counts; not installed: nothing to say
    assert BindingVersion("torch", "torch", "2.13.0+cpu", "==2.13.0", "2.13.0").problem is None
    assert BindingVersion("av", "av", "18.0.0", ">=18.0,<19", None).problem is None
    assert BindingVersion("ray", "ray", None, ">=2.9,<3", "2.60.0").problem is None


def test_binding_versions_read_this_install_and_the_lock(tmp_path: Path) -> None:
    import numpy

    rows = {b.name: b for b in binding_versions()}
    assert list(rows) == list(NATIVE_BINDINGS)
    assert rows["numpy"].installed == numpy.__version__
    assert rows["numpy"].tested_range  # from swapline's installed metadata
    lock = tmp_path / "constraints.txt"
    lock.write_text("numpy==0.1\n    # via swapline\n", encoding="utf-8")
    numpy_row = next(b for b in binding_versions(lock) if b.name == "numpy")
    assert numpy_row.locked == "0.1" and "not the tested 0.1" in (numpy_row.problem or "")


@pytest.mark.parametrize("installed", ["tested", "moved"])
def test_doctor_prints_the_bindings_and_warns_once_per_version_outside(
        installed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from swapline import versions
    from swapline.cli.doctor import run_doctor
    from swapline.config import RuntimeConfig

    rows = versions.binding_versions()
    if installed == "moved":
        lock = tmp_path / "constraints.txt"
        lock.write_text("".join(f"{canonicalize_name(b.name)}==0.0.1\n" for b in rows if b.installed), encoding="utf-8")
        monkeypatch.setattr(versions, "find_lock", lambda: lock)
    else:
        lock = tmp_path / "constraints.txt"
        lock.write_text("".join(f"{canonicalize_name(b.name)}=={b.installed}\n" for b in rows if b.installed),
                        encoding="utf-8")
        monkeypatch.setattr(versions, "find_lock", lambda: lock)
    assert run_doctor(RuntimeConfig(home=tmp_path / "home")) == 0
    out, err = capsys.readouterr()
    line = next(ln for ln in out.splitlines() if ln.startswith("native bindings:"))
    for b in rows:
        assert f"{b.distribution} {b.installed or 'not installed'}" in line
    warnings = [ln for ln in err.splitlines() if ln.startswith("swapline: warning:")]
    if installed == "moved":
        assert len(warnings) == sum(1 for b in rows if b.installed)
        assert all("not the tested 0.0.1" in w or "outside the tested range" in w for w in warnings)
    else:
        assert warnings == []
