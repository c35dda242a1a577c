"""Read the tensors of a PyTorch checkpoint without torch, as numpy arrays.

Two layouts are read: the legacy one (``torch.save`` before 1.6, or with
``_use_new_zipfile_serialization=False``): a run of pickles — magic number, protocol version,
system info, the object, the storage keys — followed by each storage as an ``int64`` element
count and its raw little-endian bytes; and the zip one (``archive/data.pkl`` with one
``archive/data/<key>`` member per storage). Only what a state dict holds is rebuilt: tensors
(``torch._utils._rebuild_tensor_v2``), ordered dicts and plain containers. Any other class in the
pickle is refused, so a checkpoint cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import ModelError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

#: torch storage classes → numpy dtypes (both spellings: legacy ``FloatStorage``, zip ``float32``)
_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"), "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4"), "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"), "ByteStorage": np.dtype("u1"), "BoolStorage": np.dtype("?"),
}


@dataclass
class _Storage:
    """A storage named in the pickle, filled in once its bytes are read."""

    dtype: np.dtype
    key: str
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    """A tensor of a storage not read yet: ``storage``, element ``offset``, ``size``, ``stride``."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ModelError(f"checkpoint storage {self.storage.key} has no data")
        if not self.size:
            return data[self.offset:self.offset + 1].reshape(()).copy()
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride))
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                    *_: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    """Rebuilds tensors as :class:`_TensorRef`; refuses every class a state dict does not need."""

    _ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage]) -> None:
        super().__init__(file, encoding="utf-8")
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and (name in _DTYPES or name.endswith("Storage")):
            return name  # a storage type: its name is enough
        raise ModelError(f"checkpoint refers to {module}.{name}, which a state dict does not hold")

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise ModelError(f"checkpoint has an unknown persistent id {pid!r}")
        kind, key = pid[1], str(pid[2])
        if kind not in _DTYPES:
            raise ModelError(f"checkpoint storage of an unsupported type {kind}")
        if key not in self.storages:
            self.storages[key] = _Storage(_DTYPES[kind], key)
        return self.storages[key]


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.array()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _read_legacy(f: IO[bytes]) -> Any:
    storages: dict[str, _Storage] = {}
    if pickle.load(f) != _LEGACY_MAGIC:  # noqa: S301 - plain ints only
        raise ModelError("not a PyTorch checkpoint (no magic number)")
    if pickle.load(f) != _LEGACY_PROTOCOL:  # noqa: S301
        raise ModelError("a PyTorch checkpoint of an unknown protocol version")
    _Unpickler(f, storages).load()  # system info: endianness and type sizes
    obj = _Unpickler(f, storages).load()
    keys = _Unpickler(f, storages).load()
    for key in keys:
        storage = storages[str(key)]
        (count,) = struct.unpack("<q", f.read(8))
        raw = f.read(count * storage.dtype.itemsize)
        if len(raw) != count * storage.dtype.itemsize:
            raise ModelError(f"checkpoint ends inside storage {key}")
        storage.data = np.frombuffer(raw, storage.dtype)
    return obj


def _read_zip(path: Path) -> Any:
    storages: dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ModelError("not a PyTorch checkpoint (no data.pkl)")
        prefix = pkl[: -len("data.pkl")]
        obj = _Unpickler(io.BytesIO(z.read(pkl)), storages).load()
        for key, storage in storages.items():
            storage.data = np.frombuffer(z.read(f"{prefix}data/{key}"), storage.dtype)
    return obj


def read_checkpoint(path: str | Path) -> Any:
    """The object a ``torch.save`` file holds, its tensors as C-contiguous numpy arrays.

    Raises:
        ModelError: not a PyTorch checkpoint, cut short, or holding a class other than tensors,
            ordered dicts and plain containers.
    """
    p = Path(path)
    try:
        if zipfile.is_zipfile(p):
            return _materialise(_read_zip(p))
        with p.open("rb") as f:
            return _materialise(_read_legacy(f))
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, ValueError) as exc:
        raise ModelError(f"cannot read the checkpoint {p.name}: {exc}") from exc


def state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The ``{name: array}`` state dict of a checkpoint (a ``"state_dict"`` entry if it has one)."""
    obj = read_checkpoint(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ModelError(f"{Path(path).name} holds no state dict of tensors")
    return dict(obj)
