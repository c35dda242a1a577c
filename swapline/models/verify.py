"""``swapline models verify``: re-hash every model file at hand (:func:`verify_files`).

Bad files in the cache are deleted (fetched or made again on next use); files in ``--model-dir``,
in installed packages and the files the user trusts are reported, never deleted.
"""

from __future__ import annotations

from pathlib import Path

from .catalog import ModelSpec
from .checks import FileChecks
from .converted import converted_ok
from .fetch import package_files
from .hashing import sha256_file, short
from .manifest import DERIVED_KINDS, Manifest
from .records import Entry, derived_problem
from .trust import UserFiles, files_in


def verify_files(catalog: dict[str, ModelSpec], checks: FileChecks, user: UserFiles,
                 optimized_dir: Path) -> list[tuple[str, bool, str]]:
    """Re-hash every file at hand; delete bad cached ones (they are fetched again on next use).

    Returns ``(model name, ok, message)`` rows, one per file checked (or one saying nothing
    is cached). Files in ``model_dir``, in installed packages and the files the user trusts
    are reported, never deleted; a trusted file whose bytes changed is no longer used.
    """
    checks.hashes.clear()
    rows: list[tuple[str, bool, str]] = []
    seen: set[Path] = set()
    checked: set[Path] = set()  # user files hashed here (the trusted ones are not hashed twice)
    for spec in catalog.values():
        before = len(rows)
        trust = user.trusted(spec.name)
        for where, path in user_and_package_files(spec, checks.model_dir):
            if path.name in spec.original_names:
                digest = sha256_file(path)
                checked.add(path.absolute())
                ok = digest in user.known_originals(spec)
                said = "ok" if digest == spec.sha256 else (
                    "ok (trusted by you, not verified)" if ok else "sha256 mismatch (not deleted)")
            else:
                ok = converted_ok(checks, spec, path, user.known_originals(spec), full=True)
                said = "ok" if ok else "sha256 mismatch (not deleted)"
            rows.append((spec.name, ok, f"{where} {path}: {said}"))
        if trust is not None and trust.original and Path(trust.original) not in checked:
            rows.append(verify_trusted(spec.name, trust))
            checked.add(Path(trust.original))
        cached = checks.models_dir / spec.file_name
        if cached.exists():
            seen.add(cached)
            ok = checks.hashes.matches(cached, spec.sha256)
            if ok:
                checks.record_original(spec, cached)
            else:
                checks.manifest.forget(cached)
            rows.append((spec.name, ok, f"{cached}: {'ok' if ok else 'sha256 mismatch, deleted'}"))
        if spec.convert and spec.converted_name:
            converted = checks.models_dir / spec.converted_name
            if converted.exists():
                seen.add(converted)
                ok = converted_ok(checks, spec, converted, user.known_originals(spec), full=True)
                if not ok:
                    checks.remove_converted(converted)
                said = "ok" if ok else "does not match its manifest, deleted"
                rows.append((spec.name, ok, f"{converted}: {said}"))
        if len(rows) == before:
            rows.append((spec.name, True, "nothing at hand yet"))
    for name, trust in checks.manifest.trusted_all().items():  # models outside this catalogue
        if name not in catalog and trust.original and Path(trust.original) not in checked:
            rows.append(verify_trusted(name, trust))
    # every other file the store or a session wrote: re-hashed against its own record
    for book in (checks.manifest, Manifest(optimized_dir)):
        for path in book.files():
            if path in seen:
                continue
            entry = book.entry(path)
            label = (entry.model or entry.kind) if entry is not None else "unlisted"
            problem = book.check(path, full=True)
            if problem is None and entry is not None and entry.kind in DERIVED_KINDS and not entry.original_sha256:
                problem = derived_problem(entry, ())
            if problem is None:
                rows.append((label, True, f"{path}: ok"))
            else:
                book.forget(path)
                rows.append((label, False, f"{path} {problem}; deleted (made again on next use)"))
        for orphan in book.orphans():
            orphan.unlink(missing_ok=True)
    return rows


def verify_trusted(name: str, trust: Entry) -> tuple[str, bool, str]:
    """Re-hash the file the user trusts for ``name``: a ``verify`` row (never deleted)."""
    path = Path(trust.original or "")
    if not path.is_file():
        return name, False, (f"trusted {path}: gone (swapline models untrust {name} forgets it, "
                             f"or trust the file where it is now)")
    digest = sha256_file(path)
    if digest == trust.sha256:
        return name, True, f"trusted {path}: ok (yours, not verified)"
    return name, False, (f"trusted {path}: changed since you trusted it (sha256 {short(digest)}, "
                         f"trusted {short(trust.sha256)}); not used until you trust it again")


def user_and_package_files(spec: ModelSpec, model_dir: Path | None) -> list[tuple[str, Path]]:
    """``spec``'s files that are not the store's: ``("model-dir", path)`` for its original and
    converted names in ``model_dir``, then ``("package", path)`` inside installed packages."""
    names = [n for n in (*spec.original_names, spec.converted_name) if n]
    return [("model-dir", p) for p in files_in(model_dir, names)] + [("package", p) for p in package_files(spec)]
