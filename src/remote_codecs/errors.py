"""The errors raised by remote_codecs: one base class, three kinds."""

from __future__ import annotations

__all__ = [
    "CodecError",
    "DeserializationError",
    "IntegrityError",
    "SerializationError",
]


class CodecError(Exception):
    """Base class of every error raised by remote_codecs."""


class SerializationError(CodecError, TypeError):
    """A value cannot be encoded: the message names where it sits and what to pass instead."""


class DeserializationError(CodecError, ValueError):
    """A bundle cannot be decoded: missing, truncated, unknown codec or format, pickle refused."""


class IntegrityError(DeserializationError):
    """A bundle failed verification: a part's hash or the manifest's signature does not match."""
