"""One model file's manifest record (:class:`Entry`), and whether a derived file's record ties it
to an original the caller knows (:func:`derived_problem`).

A record says what its file is::

    file, kind            the file's name; "original", "converted", "optimized" or "fp16"
    sha256, size, mtime_ns
                          the file as it was written (the hash of the bytes meant to be written)
    model                 the catalogue name, when known
    original, original_sha256
                          for a derived file: the file it was made from and that file's sha256
    recipe, recipe_version, steps
                          how it was made ("convert" + the conversion recipe's version and steps,
                          "ort-optimize" + the onnxruntime version, "fp16" + its version)
    mac                   HMAC-SHA256 of the record under the folder's own key

What a record says about the original (``original_sha256``, recipe) is for the caller to judge,
with :func:`derived_problem`: a derived file (converted, optimised, float16) is used only when its
record names the sha256 of an original the caller knows (verified against the catalogue, or
trusted by the user) and today's recipe version; a record that names no original, or one the
caller does not know, means the file is made again -- however right the record's own hash is.

``fixed_batch`` records that a dynamic-batch conversion could not free the batch axis and left
the graph at batch 1 (its runs go one item at a time); records without it leave it out of the
signed payload, so older signatures stay valid.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = 1


@dataclass(frozen=True)
class Entry:
    """One file's record (see the module docstring for the fields)."""

    file: str
    kind: str
    sha256: str
    size: int
    mtime_ns: int
    model: str | None = None
    original: str | None = None
    original_sha256: str | None = None
    recipe: str | None = None
    recipe_version: str | None = None
    steps: tuple[str, ...] = ()
    fixed_batch: int | None = None
    mac: str | None = field(default=None, compare=False)

    def payload(self) -> dict[str, Any]:
        """The record as JSON data, without its mac (and without ``fixed_batch`` when unset)."""
        data = asdict(self)
        data.pop("mac")
        if self.fixed_batch is None:
            data.pop("fixed_batch")
        data["steps"] = list(self.steps)
        data["format"] = FORMAT
        return data

    def to_json(self) -> str:
        data = self.payload()
        data["mac"] = self.mac
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Entry":
        """Parse a record; ValueError when it is not one. Records of older swaplines (converted
        files: ``recipe`` was the version number, no size, mtime or mac) are read too."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        sha = data.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64:
            raise ValueError("no sha256")
        recipe, version = data.get("recipe"), data.get("recipe_version")
        if isinstance(recipe, int) and version is None:  # format 0: {"recipe": RECIPE_VERSION}
            recipe, version = "convert", recipe
        steps = data.get("steps") or ()
        if not isinstance(steps, (list, tuple)) or not all(isinstance(s, str) for s in steps):
            raise ValueError("steps is not a list of names")
        fixed = data.get("fixed_batch")
        return cls(
            file=str(data.get("file") or ""),
            kind=str(data.get("kind") or "converted"),
            sha256=sha.lower(),
            size=int(data.get("size", -1)),
            mtime_ns=int(data.get("mtime_ns", -1)),
            model=_opt_str(data.get("model")),
            original=_opt_str(data.get("original")),
            original_sha256=_opt_str(data.get("original_sha256")),
            recipe=_opt_str(recipe),
            recipe_version=_opt_str(version),
            steps=tuple(steps),
            fixed_batch=None if fixed is None else int(fixed),
            mac=_opt_str(data.get("mac")),
        )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def derived_problem(entry: Entry | None, known_originals: Collection[str], *,
                    recipe_version: str | int | None = None) -> str | None:
    """Whether a derived file's record ties it to an original the caller knows: None when it
    names one of ``known_originals`` (sha256 of originals verified against the catalogue or
    trusted by the user) and, with ``recipe_version``, was made by that version of the recipe;
    otherwise the problem, in words. The record's tie to its own bytes is
    :meth:`~swapline.models.manifest.Manifest.check`'s."""
    if entry is None:
        return "is not listed in the manifest"
    if not entry.original_sha256:
        return "names no original in its manifest record (swapline did not make it)"
    if entry.original_sha256 not in known_originals:
        return f"was made from an original swapline does not know (sha256 {entry.original_sha256[:12]}…)"
    if recipe_version is not None and entry.recipe_version != str(recipe_version):
        return f"was made by recipe version {entry.recipe_version}, not today's {recipe_version}"
    return None

