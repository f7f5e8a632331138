"""torch tensors as raw little parts on the CPU: any dtype (bfloat16, float8, complex,
bool ...), any device, ``requires_grad`` and ``nn.Parameter`` kept. No pickle.

A tensor is written from its CPU copy's bytes, with its dtype, shape and the device
it came from (``torch.serialization.location_tag``, as ``torch.save`` records it), and
loads on the CPU, or on ``load(..., map_location=...)`` when this machine has that
device. So a model trained on a GPU comes back to a CPU-only client.

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

from ..codec import Codec, PartReader, PartWriter
from ..errors import DeserializationError


def _byte_view(t: torch.Tensor) -> memoryview:
    if t.numel() == 0:
        return memoryview(b"")
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise DeserializationError(
            f"torch {torch.__version__} has no dtype {name!r}; upgrade torch"
        )
    return dtype


class TensorCodec(Codec):
    """``torch.Tensor`` and ``torch.nn.Parameter`` (strided, not quantized)."""

    id = "torch.Tensor/raw"
    version = 1
    types = ("torch.Tensor",)
    library = "torch"

    def can_encode(self, obj: Any) -> bool:
        return (
            type(obj) in (torch.Tensor, torch.nn.Parameter)
            and obj.layout == torch.strided
            and not obj.is_quantized
            and obj.device.type != "meta"
        )

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        t: torch.Tensor = obj
        location = torch.serialization.location_tag(t.untyped_storage())
        cpu = t.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
        writer.write(".bin", _byte_view(cpu))
        return {
            "dtype": str(t.dtype).removeprefix("torch."),
            "shape": list(t.shape),
            "requires_grad": bool(t.requires_grad),
            "parameter": isinstance(t, torch.nn.Parameter),
            "device": location,
        }

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        dtype = _dtype(meta["dtype"])
        # numpy's allocator asks for huge pages on large buffers: reading into it is ~3x
        # faster than into torch.empty's memory; the tensor then shares that memory.
        raw = np.empty(reader.size(".bin"), dtype=np.uint8)
        reader.read_into(".bin", [memoryview(raw)])  # type: ignore[arg-type]
        t = (
            torch.from_numpy(raw).view(dtype).reshape(meta["shape"])
            if raw.size
            else torch.empty(meta["shape"], dtype=dtype)
        )
        target = reader.options.get("map_location")
        if target is not None:
            t = _move(t, target, meta["device"])
        if meta.get("parameter"):
            return torch.nn.Parameter(t, requires_grad=bool(meta["requires_grad"]))
        return (
            t.requires_grad_(bool(meta["requires_grad"]))
            if t.is_floating_point() or t.is_complex()
            else t
        )


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
