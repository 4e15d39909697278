"""Read PyTorch ``.pth`` state dicts into NumPy arrays without importing torch.

Two on-disk layouts exist:

* **legacy** (``torch.save(..., _use_new_zipfile_serialization=False)`` and
  everything before torch 1.6): a plain concatenation of pickles -- magic
  number, protocol version, sys info, the object pickle (tensors refer to
  storages through *persistent ids*), the list of storage keys -- followed by
  each storage's raw bytes, each preceded by an 8-byte little-endian element
  count.
* **zip** (torch >= 1.6 default): ``<prefix>/data.pkl`` holds the object
  pickle and ``<prefix>/data/<key>`` the raw bytes of each storage.

Pickles can run arbitrary code, so the object pickle is read with an
unpickler whose ``find_class`` admits only the handful of globals a plain
state dict needs (``torch._utils._rebuild_tensor_v2``,
``collections.OrderedDict`` and the typed storage classes).  Nothing from
torch is ever imported: the admitted names resolve to local stand-ins.

Example:
    >>> from apparel.backbones.torch_checkpoint import load_state_dict
    >>> sd = load_state_dict("efficientnet-lite0-57934424.pth")  # doctest: +SKIP
    >>> sd["_conv_stem.weight"].shape  # doctest: +SKIP
    (32, 3, 3, 3)
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

__all__ = ["load_state_dict", "RestrictedUnpickler", "UnsafeCheckpointError"]


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint pickle named a global outside the allow-list.

    Subclasses both ``pickle.UnpicklingError`` and ``ValueError`` so callers
    can catch either.
    """

# Written by torch as the first pickle of a legacy file.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage class name -> NumPy dtype (little-endian).  BFloat16 is left
# out on purpose: NumPy has no native type for it.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only carries the dtype."""

    name: str
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by a persistent id; its bytes are read later."""

    key: str
    dtype: np.dtype
    numel: int
    # Legacy "views" (torch < 0.4) share a root storage at an element offset.
    view_offset: int = 0


@dataclass(frozen=True)
class _LazyTensor:
    """What ``_rebuild_tensor_v2`` returns: enough to slice the storage later."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _LazyTensor:
    """Local replacement for ``torch._utils._rebuild_tensor_v2``.

    The storage bytes of a legacy file come *after* the pickle, so the tensor
    is only described here and materialised once every storage is read.
    """
    if not isinstance(storage, _StorageRef):
        raise ValueError("_rebuild_tensor_v2 called without a storage reference")
    ints = (storage_offset, *size, *stride)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
        raise ValueError(f"bad tensor geometry: offset={storage_offset!r} size={size!r} stride={stride!r}")
    if len(size) != len(stride):
        raise ValueError(f"size {size!r} and stride {stride!r} differ in length")
    return _LazyTensor(storage, storage_offset, tuple(size), tuple(stride))


# The complete list of globals a state-dict pickle may name.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in ``_ALLOWED_GLOBALS``.

    Any other global (``os.system``, ``builtins.eval``, ...) raises
    ``UnsafeCheckpointError`` (a ``ValueError`` and ``pickle.UnpicklingError``)
    naming it, before anything is called.
    Persistent ids are turned into ``_StorageRef`` placeholders.

    Example:
        >>> import io, pickle
        >>> bad = b"cos\\nsystem\\n(S'echo pwned'\\ntR."
        >>> RestrictedUnpickler(io.BytesIO(bad)).load()
        Traceback (most recent call last):
        ...
        torch_checkpoint.UnsafeCheckpointError: refusing to unpickle global 'os.system' from a checkpoint; only plain tensor state dicts are supported
    """

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__(stream)
        # Root storages named so far: key -> reference with the full size.
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refusing to unpickle global '{module}.{name}' from a checkpoint; "
                "only plain tensor state dicts are supported"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        # Legacy: ('storage', type, key, location, numel, view_metadata)
        # Zip:    ('storage', type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"bad storage size {numel!r}")
        self.storages.setdefault(str(key), _StorageRef(str(key), storage_type.dtype, numel))
        view = pid[5] if len(pid) == 6 else None
        if view is not None:
            # Old-style storage view: (view_key, offset, view_size) into root `key`.
            _view_key, view_offset, view_size = view
            return _StorageRef(str(key), storage_type.dtype, int(view_size), int(view_offset))
        return _StorageRef(str(key), storage_type.dtype, numel)


def _restricted_load(stream: BinaryIO) -> Any:
    return RestrictedUnpickler(stream).load()


def _materialise(tensor: _LazyTensor, raw: dict[str, np.ndarray]) -> np.ndarray:
    """Slice a (possibly strided) tensor out of its storage, with bounds checks."""
    ref = tensor.storage
    if ref.key not in raw:
        raise ValueError(f"tensor refers to missing storage {ref.key!r}")
    base = raw[ref.key]
    if base.dtype != ref.dtype:
        base = base.view(ref.dtype)  # same bytes re-typed, as torch would
    start = ref.view_offset + tensor.offset
    if any(n == 0 for n in tensor.shape):
        return np.zeros(tensor.shape, dtype=ref.dtype)
    # Last element touched; as_strided does no checking, so a crafted file
    # could otherwise read memory outside the buffer.
    last = start + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride))
    if last >= base.size:
        raise ValueError(
            f"tensor (offset {start}, shape {tensor.shape}, stride {tensor.stride}) reads "
            f"element {last} but its storage has only {base.size} elements"
        )
    item = base.itemsize
    view = np.lib.stride_tricks.as_strided(
        base[start:], shape=tensor.shape, strides=[s * item for s in tensor.stride], writeable=False
    )
    # Copy (keeps 0-d shapes, unlike ascontiguousarray): detaches from the file buffer.
    return np.array(view, order="C", copy=True)


def _finish(obj: Any, raw: dict[str, np.ndarray], drop_num_batches_tracked: bool) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint holds a {type(obj).__name__}, expected a state dict")
    out: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _LazyTensor):
            raise ValueError(f"state dict entry {name!r} is not a tensor")
        if drop_num_batches_tracked and name.endswith("num_batches_tracked"):
            continue  # BatchNorm's step counter: not a weight
        out[name] = _materialise(value, raw)
    return out


def _load_legacy(data: bytes, drop_num_batches_tracked: bool) -> dict[str, np.ndarray]:
    stream = io.BytesIO(data)
    magic = _restricted_load(stream)
    if magic != LEGACY_MAGIC_NUMBER:
        raise ValueError("not a PyTorch checkpoint (bad magic number)")
    protocol = _restricted_load(stream)
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise ValueError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = _restricted_load(stream)
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise ValueError("big-endian checkpoints are not supported")

    # Storage sizes/dtypes are only known from the persistent ids seen here.
    unpickler = RestrictedUnpickler(stream)
    obj = unpickler.load()
    refs = unpickler.storages
    keys = _restricted_load(stream)
    if not isinstance(keys, list):
        raise ValueError("corrupt checkpoint: storage key list missing")

    raw: dict[str, np.ndarray] = {}
    for key in keys:
        key = str(key)
        if key not in refs:
            raise ValueError(f"corrupt checkpoint: unknown storage {key!r}")
        ref = refs[key]
        header = stream.read(8)
        if len(header) != 8:
            raise ValueError("truncated checkpoint: storage header missing")
        count = int.from_bytes(header, "little")
        if count != ref.numel:
            raise ValueError(f"storage {key!r}: header says {count} elements, pickle says {ref.numel}")
        nbytes = count * ref.dtype.itemsize
        blob = stream.read(nbytes)
        if len(blob) != nbytes:
            raise ValueError(f"truncated checkpoint: storage {key!r} is short")
        raw[key] = np.frombuffer(blob, dtype=ref.dtype)
    return _finish(obj, raw, drop_num_batches_tracked)


def _load_zip(path: str | os.PathLike[str], drop_num_batches_tracked: bool) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError("zip checkpoint without a single '<prefix>/data.pkl'")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
            raise ValueError("big-endian checkpoints are not supported")

        unpickler = RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])))
        obj = unpickler.load()

        raw: dict[str, np.ndarray] = {}
        for ref in unpickler.storages.values():
            entry = f"{prefix}data/{ref.key}"
            if entry not in names:
                raise ValueError(f"zip checkpoint lacks storage {entry!r}")
            blob = archive.read(entry)
            if len(blob) != ref.numel * ref.dtype.itemsize:
                raise ValueError(f"storage {entry!r} has {len(blob)} bytes, expected {ref.numel} elements")
            raw[ref.key] = np.frombuffer(blob, dtype=ref.dtype)
    return _finish(obj, raw, drop_num_batches_tracked)


def load_state_dict(
    path: str | os.PathLike[str], *, drop_num_batches_tracked: bool = True
) -> dict[str, np.ndarray]:
    """Load a PyTorch state dict (legacy or zip ``.pth``) as NumPy arrays.

    Args:
        path: the ``.pth`` file.
        drop_num_batches_tracked: leave out BatchNorm's int64
            ``num_batches_tracked`` counters (they are not weights).

    Returns:
        ``{tensor name: C-contiguous array}`` in file order, shapes as in torch.

    Raises:
        UnsafeCheckpointError: (a ``ValueError``) the file names a global
            outside the allow-list (e.g. ``os.system``); nothing is executed.
        ValueError: the file is not a plain state dict or is corrupt.

    Example:
        >>> sd = load_state_dict("model.pth")  # doctest: +SKIP
        >>> {k: v.shape for k, v in sd.items()}  # doctest: +SKIP
    """
    if zipfile.is_zipfile(path):
        return _load_zip(path, drop_num_batches_tracked)
    with open(path, "rb") as f:
        data = f.read()
    return _load_legacy(data, drop_num_batches_tracked)
