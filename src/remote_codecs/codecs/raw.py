"""Large ``bytes`` and ``bytearray`` values as raw part files (small ones stay inline)."""

from __future__ import annotations

from typing import Any

from ..codec import Codec, PartReader, PartWriter

INLINE_LIMIT = 64 << 10  # bytes up to this size stay inline in the skeleton


class BytesCodec(Codec):
    version_policy = "stable"  # raw bytes: no library involved
    """``bytes`` / ``bytearray`` larger than 64 KiB, stored as they are. No pickle."""

    id = "bytes/raw"
    version = 1
    types = ("builtins.bytes", "builtins.bytearray")

    def can_encode(self, obj: Any) -> bool:
        return type(obj) in (bytes, bytearray) and len(obj) > INLINE_LIMIT

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        writer.write(".bin", obj)
        return {"bytearray": True} if isinstance(obj, bytearray) else {}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        buf = bytearray(reader.size(".bin"))
        reader.read_into(".bin", [memoryview(buf)])
        return buf if meta.get("bytearray") else bytes(buf)
