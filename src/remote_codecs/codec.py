"""The codec contract: what a codec is, and the part writer and reader it is given."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO, ClassVar, Literal, Protocol

__all__ = ["Buffer", "Codec", "PartReader", "PartWriter", "Prefixed"]

Buffer = bytes | bytearray | memoryview


class PartWriter(Protocol):
    """Where a codec writes one part: one or more files, each named by a suffix."""

    def write(self, suffix: str, data: Buffer | Iterable[Buffer]) -> None:
        """Write a whole file from one buffer or an iterable of buffers (streamed, not joined)."""

    def open(self, suffix: str) -> BinaryIO:
        """Open a file for streaming writes; close it (or use ``with``) when done."""

    def pickle(self, suffix: str, obj: Any) -> None:
        """Write ``obj`` with cloudpickle and mark this part as needing pickle to load."""

    @property
    def part_id(self) -> int:
        """This part's id in its bundle."""

    @property
    def shared(self) -> dict[str, Any]:
        """State shared by the codecs of one bundle's parts (key it by your codec)."""


class PartReader(Protocol):
    """Where a codec reads one part from. Every read is verified against the manifest."""

    @property
    def allow_pickle(self) -> bool:
        """Whether the loader allows unpickling."""

    @property
    def options(self) -> Mapping[str, Any]:
        """The loader's options for codecs (``map_location``, ``trusted`` ...)."""

    def size(self, suffix: str) -> int:
        """The size in bytes of a file, as recorded in the (verified) manifest."""

    def read(self, suffix: str) -> bytes:
        """Read a whole file, verified."""

    def read_into(self, suffix: str, buffers: Iterable[memoryview]) -> None:
        """Fill ``buffers`` in order from a file whose size is their total, verified."""

    def unpickle(self, suffix: str) -> Any:
        """Read and unpickle a file written by :meth:`PartWriter.pickle`; refused in safe mode."""

    @property
    def part_id(self) -> int:
        """This part's id in its bundle."""

    @property
    def shared(self) -> dict[str, Any]:
        """State shared by the codecs of one bundle's parts while it is decoded."""

    def decode_part(self, part_id: int) -> Any:
        """The decoded object of an *earlier* part of the same bundle (decoded once)."""

    @property
    def written_version(self) -> str | None:
        """The version of the codec's ``library`` that wrote this part (None if unrecorded)."""

    @property
    def version_mismatch(self) -> Literal["allowed", "verify"] | None:
        """What the loader decided, from the codec's ``version_policy``, about the library
        version that wrote this part. The codec never decides it again:

        - None: the policy accepts it (the same version, or one the policy allows);
        - ``"allowed"``: the policy refuses it and the loader opted in with
          ``allow_version_mismatch=True`` (it has warned, naming both versions);
        - ``"verify"``: the policy refuses it and the loader passed ``"verify"`` to a codec
          that ``verifies``: ``decode`` must check the object's recorded behaviour and
          raise ``DeserializationError`` if it differs or cannot be checked.
        """


class Codec(abc.ABC):
    """Encodes objects of some types into a part and decodes them back.

    ``id`` is stable forever (it is written in every manifest; decoding looks the codec
    up by it, never by guessing). ``version`` is the format version this codec writes;
    ``decode`` must keep reading every older version it ever wrote. ``types`` are the
    qualified names (``module.QualName``) of the types it handles, matched along the
    MRO. ``library`` is the distribution whose version the manifest records.
    ``needs_pickle`` declares that loading this codec's parts always needs pickle (so
    ``allow_pickle=False`` refuses them); a codec that pickles only some objects marks
    those parts through ``PartWriter.pickle`` instead.

    ``version_policy`` says how a part written under another version of ``library`` is
    read; the loader applies it from the manifest before decoding anything, and is the
    only place that decides it: ``"stable"`` (the stored format reads the same under any
    version: ``.npy``, Arrow IPC), ``"no-newer"`` (a part written by a newer version is
    refused, naming both, unless the loader passes ``allow_version_mismatch``) or
    ``"same"`` (any other version is refused unless the loader opts in). Versions are
    ordered as PEP 440 orders them, the local label (``+cpu``) ignored; a version string
    that is not one counts as another version. ``verifies`` declares that ``decode``
    checks a recorded behaviour when ``reader.version_mismatch == "verify"``; ``decode``
    reads ``reader.written_version`` where it needs it (to choose how to decode, or to
    name it), never to refuse a version again.
    """

    id: ClassVar[str]
    version: ClassVar[int] = 1
    types: ClassVar[tuple[str, ...]] = ()
    library: ClassVar[str | None] = None
    needs_pickle: ClassVar[bool] = False
    version_policy: ClassVar[str] = "no-newer"
    verifies: ClassVar[bool] = False

    def can_encode(self, obj: Any) -> bool:
        """Whether this object (of a handled type) can be encoded; otherwise it is pickled."""
        return True

    @abc.abstractmethod
    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any] | None:
        """Write ``obj`` into ``writer``; return JSON-able metadata for the manifest."""

    @abc.abstractmethod
    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        """Rebuild the object from ``reader`` and the metadata written by ``encode``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} v{self.version}>"


class Prefixed:
    """A part writer or reader whose file suffixes get ``prefix`` in front: lets a codec
    run another codec inside its own part (``NDArrayCodec().encode(a, Prefixed(w, ".x"))``
    writes ``<id>.x.npy``)."""

    _NAMED = frozenset({"write", "open", "pickle", "size", "read", "read_into", "unpickle"})

    def __init__(self, target: PartWriter | PartReader, prefix: str) -> None:
        self._target = target
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name in self._NAMED:
            prefix = self._prefix
            return lambda suffix, *args, **kwargs: attr(prefix + suffix, *args, **kwargs)
        return attr
