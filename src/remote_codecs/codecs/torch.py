"""torch tensors as raw storages on the CPU: any dtype (bfloat16, float8, complex, bool
...), any device, strides, storage sharing, ``requires_grad`` and ``nn.Parameter`` kept;
quantized, sparse (COO, CSR, CSC, BSR, BSC) and meta-device tensors too. No pickle.

A strided tensor is written as (storage, offset, shape, stride), as ``torch.save`` does:
the bytes of its storage once per bundle, and every other tensor of the bundle that views
the same storage (a slice, a transpose, ``state_dict()`` entries of tied weights, an
``expand``\\ ed buffer) refers to the part that holds them, so after loading they share
memory again and keep their strides (``channels_last`` stays ``channels_last``). A view
covering a small piece of a much larger storage writes only the piece it covers; a later
view of the same storage that reaches outside that piece gets its own copy.

Every offset, size and stride is checked against the stored bytes before a tensor is
built, so a crafted part cannot read outside its buffer. Tensors load on the CPU, or on
``load(..., map_location=...)`` when this machine has that device (a device, a string, a
``{origin: target}`` dict, or a callable ``(tensor, origin) -> tensor``). So a model
trained on a GPU comes back to a CPU-only client.

State dicts (``OrderedDict`` of tensors, with their ``_metadata``) and optimizer state
dicts are plain structures of tensors: they load with ``allow_pickle=False``. An
``nn.Module`` travels in the pickled skeleton with every parameter and buffer (non-
persistent ones included) as a tensor part; tied parameters are one part, so they stay
tied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..codec import Codec, PartReader, PartWriter, Prefixed
from ..errors import DeserializationError

_MAX_NDIM = 64
# a view writes its whole storage unless the storage is this much larger than the view
_WHOLE_STORAGE_FACTOR = 2
_WHOLE_STORAGE_BELOW = 1 << 20
_SPARSE = {
    torch.sparse_coo: "sparse_coo",
    torch.sparse_csr: "sparse_csr",
    torch.sparse_csc: "sparse_csc",
    torch.sparse_bsr: "sparse_bsr",
    torch.sparse_bsc: "sparse_bsc",
}
_COMPRESSED = {
    "sparse_csr": (torch.sparse_csr, "crow_indices", "col_indices"),
    "sparse_csc": (torch.sparse_csc, "ccol_indices", "row_indices"),
    "sparse_bsr": (torch.sparse_bsr, "crow_indices", "col_indices"),
    "sparse_bsc": (torch.sparse_bsc, "ccol_indices", "row_indices"),
}


def _dtype(name: Any) -> torch.dtype:
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype):
        raise DeserializationError(
            f"torch {torch.__version__} has no dtype {name!r}; upgrade torch"
        )
    return dtype


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _ints(value: Any, what: str, *, limit: int = _MAX_NDIM) -> list[int]:
    if not isinstance(value, list) or len(value) > limit:
        raise DeserializationError(f"torch part: {what} {value!r} is not a list of sizes")
    if not all(type(n) is int and n >= 0 for n in value):
        raise DeserializationError(f"torch part: {what} {value!r} must be non-negative integers")
    return value


def _extent(shape: list[int], stride: list[int], offset: int) -> int:
    """Elements of storage a (shape, stride, offset) view reaches: one past its last."""
    if any(n == 0 for n in shape):
        return offset
    return offset + sum((n - 1) * s for n, s in zip(shape, stride)) + 1


# -- bundle-wide state: which storages a bundle already holds ------------------------------
#
# The codec contract gives a codec one part at a time. Storage sharing needs two things
# the core does not expose yet: a memo that lives as long as one bundle, and a way to
# decode another (earlier) part. Until it does, they are taken from the built-in part
# writer and reader; any other writer or reader (a ``Prefixed`` wrapper, another bundle
# implementation) gets no sharing: each tensor is then written with its own bytes.


class _Written:
    """A storage window that a part of the bundle being written holds."""

    __slots__ = ("hi", "keep", "lo", "part")

    def __init__(self, part: int, lo: int, hi: int, keep: Any) -> None:
        self.part, self.lo, self.hi, self.keep = part, lo, hi, keep


def _writer_scope(writer: Any) -> tuple[dict[Any, _Written], int] | None:
    """The storages already written in this bundle (none through a Prefixed writer)."""
    if isinstance(writer, Prefixed) or not hasattr(writer, "shared"):
        return None
    return writer.shared.setdefault("torch.storages", {}), writer.part_id


def _reader_scope(reader: Any) -> tuple[dict[int, torch.UntypedStorage], int] | None:
    """The storages already read in this bundle, by part (none through Prefixed)."""
    if isinstance(reader, Prefixed) or not hasattr(reader, "shared"):
        return None
    return reader.shared.setdefault("torch.storages", {}), reader.part_id


# -- dense pieces (quantized and sparse components) -----------------------------------------


def _byte_view(t: torch.Tensor) -> memoryview:
    if t.numel() == 0:
        return memoryview(b"")
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]


def _write_dense(writer: PartWriter, suffix: str, t: torch.Tensor) -> dict[str, Any]:
    cpu = t.detach().to("cpu").contiguous()
    writer.write(suffix, _byte_view(cpu))
    return {"dtype": _dtype_name(cpu.dtype), "shape": list(cpu.shape)}


def _read_dense(reader: PartReader, suffix: str, meta: Any) -> torch.Tensor:
    if not isinstance(meta, dict):
        raise DeserializationError(f"torch part: component {suffix!r} has no description")
    dtype, shape = _dtype(meta.get("dtype")), _ints(meta.get("shape"), "shape")
    nbytes = reader.size(suffix)
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes != expected:
        raise DeserializationError(
            f"torch part: component {suffix!r} holds {nbytes} bytes, but a {dtype} tensor "
            f"of shape {shape} needs {expected}"
        )
    raw = np.empty(nbytes, dtype=np.uint8)
    reader.read_into(suffix, [memoryview(raw)])  # type: ignore[arg-type]
    if not nbytes:
        return torch.empty(shape, dtype=dtype)
    return torch.from_numpy(raw).view(dtype).reshape(shape)


class TensorCodec(Codec):
    """``torch.Tensor`` and ``torch.nn.Parameter``: strided, quantized, sparse, meta."""

    id = "torch.Tensor/raw"
    version = 2
    types = ("torch.Tensor",)
    library = "torch"
    # raw little-endian storage bytes described by this codec's own meta: any torch reads them
    version_policy = "stable"

    def can_encode(self, obj: Any) -> bool:
        if type(obj) not in (torch.Tensor, torch.nn.Parameter):
            return False
        return obj.layout == torch.strided or obj.layout in _SPARSE

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        t: torch.Tensor = obj
        meta: dict[str, Any] = {
            "dtype": _dtype_name(t.dtype),
            "shape": list(t.shape),
            "requires_grad": bool(t.requires_grad),
            "parameter": isinstance(t, torch.nn.Parameter),
        }
        t = t.detach()
        if t.device.type == "meta":
            meta.update(layout="meta", device="meta")
            if t.layout == torch.strided:
                meta.update(stride=list(t.stride()), offset=t.storage_offset())
            else:
                meta["layout_kind"] = _SPARSE[t.layout]
            return meta
        meta["device"] = _location(t)
        if t.layout in _SPARSE:
            meta.update(self._encode_sparse(t, writer))
        elif t.is_quantized:
            meta.update(self._encode_quantized(t, writer))
        else:
            meta.update(_encode_strided(t, writer))
        return meta

    def _encode_sparse(self, t: torch.Tensor, writer: PartWriter) -> dict[str, Any]:
        kind = _SPARSE[t.layout]
        if kind == "sparse_coo":
            return {
                "layout": kind,
                "coalesced": bool(t.is_coalesced()),
                "indices": _write_dense(writer, ".indices.bin", t._indices()),
                "values": _write_dense(writer, ".values.bin", t._values()),
            }
        _, compressed, plain = _COMPRESSED[kind]
        return {
            "layout": kind,
            "compressed": _write_dense(writer, ".compressed.bin", getattr(t, compressed)()),
            "plain": _write_dense(writer, ".plain.bin", getattr(t, plain)()),
            "values": _write_dense(writer, ".values.bin", t.values()),
        }

    def _encode_quantized(self, t: torch.Tensor, writer: PartWriter) -> dict[str, Any]:
        scheme = t.qscheme()
        meta: dict[str, Any] = {"layout": "quantized", "stride": list(t.stride())}
        meta["int_repr"] = _write_dense(writer, ".int_repr.bin", t.int_repr())
        if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            meta.update(
                qscheme="per_tensor_affine", scale=float(t.q_scale()), zero_point=t.q_zero_point()
            )
        elif scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
            meta.update(
                qscheme="per_channel_affine",
                axis=int(t.q_per_channel_axis()),
                scales=_write_dense(writer, ".scales.bin", t.q_per_channel_scales()),
                zero_points=_write_dense(writer, ".zero_points.bin", t.q_per_channel_zero_points()),
            )
        else:  # per_channel_affine_float_qparams
            meta.update(
                qscheme="per_channel_affine_float_qparams",
                axis=int(t.q_per_channel_axis()),
                scales=_write_dense(writer, ".scales.bin", t.q_per_channel_scales()),
                zero_points=_write_dense(writer, ".zero_points.bin", t.q_per_channel_zero_points()),
            )
        return meta

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        if version < 2:
            t = _decode_v1(reader, meta)
        else:
            layout = meta.get("layout")
            if layout == "strided":
                t = _decode_strided(reader, meta)
            elif layout == "meta":
                t = _decode_meta(meta)
            elif layout == "quantized":
                t = _decode_quantized(reader, meta)
            elif layout in _SPARSE.values():
                t = _decode_sparse(reader, meta)
            else:
                raise DeserializationError(f"torch part: unknown tensor layout {layout!r}")
        if meta.get("parameter"):
            return torch.nn.Parameter(t, requires_grad=bool(meta.get("requires_grad")))
        if meta.get("requires_grad") and (t.is_floating_point() or t.is_complex()):
            return t.requires_grad_(True)
        return t


def _location(t: torch.Tensor) -> str:
    if t.layout != torch.strided:
        return str(t.device)
    return str(torch.serialization.location_tag(t.untyped_storage()))


# -- strided tensors -------------------------------------------------------------------------


def _encode_strided(t: torch.Tensor, writer: PartWriter) -> dict[str, Any]:
    if t.is_neg():
        t = t.resolve_neg()  # a rare lazy negation: written as its own values
    conj = bool(t.is_conj())
    if conj:
        t = t.conj()  # the storage holds the unconjugated values; the flag comes back on load
    item = t.element_size()
    storage = t.untyped_storage()
    offset = int(t.storage_offset())
    lo = offset * item
    hi = _extent(list(t.shape), list(t.stride()), offset) * item
    meta: dict[str, Any] = {"layout": "strided", "stride": list(t.stride())}
    if conj:
        meta["conj"] = True
    scope = _writer_scope(writer) if hi > lo else None
    key = (str(storage.device), storage.data_ptr())
    if scope is not None:
        held = scope[0].get(key)
        if held is not None and held.lo <= lo and hi <= held.hi and (lo - held.lo) % item == 0:
            meta.update(storage_part=held.part, offset=(lo - held.lo) // item)
            return meta
    whole = storage.nbytes()
    if hi > lo and (whole <= _WHOLE_STORAGE_BELOW or whole <= _WHOLE_STORAGE_FACTOR * (hi - lo)):
        lo, hi = 0, whole
    if hi <= lo:
        lo = hi = 0
    data = torch.empty(0, dtype=torch.uint8, device=storage.device).set_(storage)[lo:hi]
    writer.write(".bin", _byte_view(data.cpu()))
    meta["offset"] = (offset * item - lo) // item
    if scope is not None and hi > lo:
        scope[0][key] = _Written(scope[1], lo, hi, storage)
    return meta


def _decode_strided(reader: PartReader, meta: dict[str, Any]) -> torch.Tensor:
    dtype = _dtype(meta.get("dtype"))
    shape, stride = _ints(meta.get("shape"), "shape"), _ints(meta.get("stride"), "stride")
    offset = meta.get("offset")
    if len(shape) != len(stride) or type(offset) is not int or offset < 0:
        raise DeserializationError(
            f"torch part: shape {shape}, stride {stride} and offset {offset!r} do not fit together"
        )
    owner = meta.get("storage_part")
    if owner is None:
        storage = _read_storage(reader, meta)
    else:
        storage = _shared_storage(reader, owner)
    # an empty tensor reads nothing: its offset is kept as written (torch allows any)
    needed = 0 if 0 in shape else _extent(shape, stride, offset) * dtype.itemsize
    if needed > storage.nbytes() or offset >= 1 << 62 or max(stride, default=0) >= 1 << 62:
        raise DeserializationError(
            f"torch part: a {dtype} tensor of shape {shape}, stride {stride} at offset {offset} "
            f"reaches byte {needed}, past the end of its {storage.nbytes()}-byte storage"
        )
    t = torch.empty(0, dtype=dtype, device=storage.device).set_(storage, offset, shape, stride)
    if meta.get("conj"):
        t = t.conj()
    target = reader.options.get("map_location")
    if callable(target):
        result = target(t, meta.get("device", "cpu"))
        if not isinstance(result, torch.Tensor):
            raise DeserializationError(
                f"map_location returned a {type(result).__name__}, not a tensor"
            )
        return result
    return t


def _read_storage(reader: PartReader, meta: dict[str, Any]) -> torch.UntypedStorage:
    """This part's storage bytes, on the device map_location names (CPU by default)."""
    # numpy's allocator asks for huge pages on large buffers: reading into it is ~3x
    # faster than into torch.empty's memory; the tensor then shares that memory.
    raw = np.empty(reader.size(".bin"), dtype=np.uint8)
    reader.read_into(".bin", [memoryview(raw)])  # type: ignore[arg-type]
    base = torch.from_numpy(raw) if raw.size else torch.empty(0, dtype=torch.uint8)
    target = reader.options.get("map_location")
    if target is not None and not callable(target):
        base = _move(base, target, str(meta.get("device", "cpu")))
    storage = base.untyped_storage()
    scope = _reader_scope(reader)
    if scope is not None:
        scope[0][scope[1]] = storage
    return storage


def _shared_storage(reader: PartReader, owner: Any) -> torch.UntypedStorage:
    scope = _reader_scope(reader)
    if scope is None or type(owner) is not int or not 0 <= owner < scope[1]:
        raise DeserializationError(
            f"torch part: its storage is said to be held by part {owner!r}, which is not an "
            "earlier part of this bundle"
        )
    reader.decode_part(owner)  # type: ignore[attr-defined]  # decoded once, verified
    storage = scope[0].get(owner)
    if storage is None:
        raise DeserializationError(
            f"torch part: part {owner}, said to hold its storage, holds no tensor storage"
        )
    return storage


def _move(t: torch.Tensor, target: Any, origin: str) -> torch.Tensor:
    if callable(target):
        return target(t, origin)  # type: ignore[no-any-return]
    if isinstance(target, dict):
        target = target.get(origin, "cpu")
    device = torch.device(target)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeserializationError(
            f"map_location={target!r}, but this machine has no CUDA device; load with map_location='cpu' "
            "(or leave it out: tensors load on the CPU)"
        )
    return t.to(device)


def _placed(reader: PartReader, t: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    target = reader.options.get("map_location")
    return t if target is None else _move(t, target, str(meta.get("device", "cpu")))


# -- other layouts ------------------------------------------------------------------------------


def _decode_meta(meta: dict[str, Any]) -> torch.Tensor:
    dtype, shape = _dtype(meta.get("dtype")), _ints(meta.get("shape"), "shape")
    kind = meta.get("layout_kind")
    if kind is not None:
        layouts = {v: k for k, v in _SPARSE.items()}
        if kind not in layouts:
            raise DeserializationError(f"torch part: unknown sparse layout {kind!r}")
        return torch.empty(shape, dtype=dtype, device="meta", layout=layouts[kind])
    stride = _ints(meta.get("stride"), "stride")
    offset = meta.get("offset", 0)
    if len(stride) != len(shape) or type(offset) is not int or offset < 0:
        raise DeserializationError(f"torch part: malformed meta-device tensor {meta!r}")
    return torch.empty_strided(shape, stride, dtype=dtype, device="meta")


_QDTYPES = {"qint8": torch.int8, "quint8": torch.uint8, "qint32": torch.int32}


def _decode_quantized(reader: PartReader, meta: dict[str, Any]) -> torch.Tensor:
    name = meta.get("dtype")
    if name not in _QDTYPES:
        raise DeserializationError(f"torch part: unsupported quantized dtype {name!r}")
    ints = _read_dense(reader, ".int_repr.bin", meta.get("int_repr"))
    if ints.dtype != _QDTYPES[name] or list(ints.shape) != meta.get("shape"):
        raise DeserializationError(f"torch part: quantized values do not match dtype {name}")
    scheme = meta.get("qscheme")
    if scheme == "per_tensor_affine":
        scale, zero = meta.get("scale"), meta.get("zero_point")
        if not isinstance(scale, (int, float)) or type(zero) is not int:
            raise DeserializationError("torch part: malformed quantization scale/zero point")
        t = torch._make_per_tensor_quantized_tensor(ints, float(scale), zero)
    elif scheme in ("per_channel_affine", "per_channel_affine_float_qparams"):
        axis = meta.get("axis")
        scales = _read_dense(reader, ".scales.bin", meta.get("scales"))
        zeros = _read_dense(reader, ".zero_points.bin", meta.get("zero_points"))
        if (
            type(axis) is not int
            or not 0 <= axis < ints.dim()
            or scales.shape != (ints.shape[axis],)
            or zeros.shape != (ints.shape[axis],)
        ):
            raise DeserializationError("torch part: per-channel quantization parameters do not fit")
        t = torch._make_per_channel_quantized_tensor(ints, scales, zeros, axis)
    else:
        raise DeserializationError(f"torch part: unknown quantization scheme {scheme!r}")
    stride = meta.get("stride")
    if isinstance(stride, list) and stride != list(t.stride()) and t.dim() == 4:
        laid = t.contiguous(memory_format=torch.channels_last)
        if list(laid.stride()) == stride:
            t = laid
    return _placed(reader, t, meta)


def _decode_sparse(reader: PartReader, meta: dict[str, Any]) -> torch.Tensor:
    kind = meta["layout"]
    shape = _ints(meta.get("shape"), "shape")
    values = _read_dense(reader, ".values.bin", meta.get("values"))
    if values.dtype != _dtype(meta.get("dtype")):
        raise DeserializationError("torch part: sparse values do not match the tensor's dtype")
    if kind == "sparse_coo":
        indices = _read_dense(reader, ".indices.bin", meta.get("indices"))
        # check_invariants: every index within ``shape`` before anything reads through it
        t = torch.sparse_coo_tensor(indices, values, shape, check_invariants=True)
        if meta.get("coalesced"):
            t = t.coalesce()
    else:
        layout, _, _ = _COMPRESSED[kind]
        compressed = _read_dense(reader, ".compressed.bin", meta.get("compressed"))
        plain = _read_dense(reader, ".plain.bin", meta.get("plain"))
        t = torch.sparse_compressed_tensor(
            compressed, plain, values, shape, layout=layout, check_invariants=True
        )
    return _placed(reader, t, meta)


def _decode_v1(reader: PartReader, meta: dict[str, Any]) -> torch.Tensor:
    """Parts written by format v1: a contiguous copy of the tensor's values."""
    dtype = _dtype(meta.get("dtype"))
    shape = _ints(meta.get("shape"), "shape")
    size = reader.size(".bin")
    if size != int(np.prod(shape, dtype=object)) * dtype.itemsize:
        raise DeserializationError(
            f"torch part: {size} bytes cannot hold a {dtype} tensor of shape {shape}"
        )
    raw = np.empty(size, dtype=np.uint8)
    reader.read_into(".bin", [memoryview(raw)])  # type: ignore[arg-type]
    t = (
        torch.from_numpy(raw).view(dtype).reshape(shape)
        if raw.size
        else torch.empty(shape, dtype=dtype)
    )
    return _placed(reader, t, meta)
