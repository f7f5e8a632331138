"""Bundle format v1: a manifest plus part files.

Writing: the skeleton walker hands typed objects to :class:`BundleWriter.add_part`, which
runs the codec against a part writer; the manifest (skeleton, parts with their hashes,
producer, optional HMAC signature) is committed last, so a bundle without a manifest
does not exist. Reading: :class:`BundleReader` parses and verifies the manifest, audits
every part (known codec, supported version, pickle allowed) before decoding anything,
and verifies every file as it is read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .codec import Buffer, Codec
from .errors import DeserializationError, IntegrityError, SerializationError
from .registry import BUILTIN_PROVIDER, Registry, type_name
from .storage import FileRecord, HashingWriter, Sink, Source

__all__ = ["FORMAT_VERSION", "BundleReader", "BundleWriter", "Manifest", "PartInfo"]

FORMAT_VERSION = 1
SUPPORTED_FORMATS = (1,)
Key = bytes | str


def _key_bytes(key: Key | None) -> bytes | None:
    if key is None:
        return None
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, (bytes, bytearray)):
        return bytes(key)
    raise TypeError(f"key must be bytes or str, got {type(key).__name__}")


def canonical(manifest: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the manifest without its signature, canonical JSON."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def _sign(key: bytes, manifest: Mapping[str, Any]) -> str:
    return hmac.new(key, canonical(manifest), hashlib.sha256).hexdigest()


def _machine() -> str:
    import os

    return os.uname().machine if hasattr(os, "uname") else __import__("platform").machine()


_versions: dict[str, str | None] = {}
_DIST_MODULES = {
    "scikit-learn": "sklearn",
    "remote-runtime": "remote_codecs",
    "tensorflow-cpu": "tensorflow",
}


def _dist_version(dist: str) -> str | None:
    if dist not in _versions:
        module = sys.modules.get(_DIST_MODULES.get(dist, dist))
        found = getattr(module, "__version__", None)
        if isinstance(found, str):  # fast: no metadata scan of sys.path
            _versions[dist] = found
            return found
        from importlib.metadata import PackageNotFoundError, version

        try:
            _versions[dist] = version(dist)
        except PackageNotFoundError:
            _versions[dist] = None
    return _versions[dist]


# -- the manifest, as users see it --------------------------------------------------------


@dataclass(frozen=True)
class PartInfo:
    """One part of a bundle, as recorded in its manifest."""

    id: int
    codec: str
    codec_version: int
    type: str
    size: int
    files: tuple[FileRecord, ...]
    pickle: bool
    provider: str | None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest: ``inspect()`` returns it; ``str()`` renders a readable summary."""

    raw: dict[str, Any]

    @property
    def format(self) -> int:
        return int(self.raw["format"])

    @property
    def skeleton_kind(self) -> str:
        return str(self.raw["skeleton"]["kind"])

    @property
    def parts(self) -> list[PartInfo]:
        return [_part_info(p) for p in self.raw["parts"]]

    @property
    def producer(self) -> dict[str, Any]:
        return dict(self.raw.get("producer", {}))

    @property
    def signed(self) -> bool:
        return "signature" in self.raw

    @property
    def size(self) -> int:
        """Total bytes of the part files (and the pickled skeleton, if any)."""
        skeleton = self.raw["skeleton"]
        return sum(p.size for p in self.parts) + int(skeleton.get("size", 0))

    @property
    def needs_pickle(self) -> bool:
        """Whether loading runs pickle (refused by ``allow_pickle=False``)."""
        return self.skeleton_kind == "pickle" or any(p.pickle for p in self.parts)

    def __str__(self) -> str:
        prod = self.producer
        libs = ", ".join(f"{k} {v}" for k, v in sorted(prod.get("libraries", {}).items()))
        lines = [
            f"bundle format {self.format}, skeleton: {self.skeleton_kind}, "
            f"{len(self.parts)} part(s), {_human(self.size)}, "
            f"{'signed' if self.signed else 'unsigned'}, "
            f"{'needs pickle' if self.needs_pickle else 'no pickle'}",
            f"producer: python {prod.get('python', '?')} on {prod.get('platform', '?')}"
            + (f"; {libs}" if libs else ""),
        ]
        for p in self.parts:
            flag = "  [pickle]" if p.pickle else ""
            files = ", ".join(f.name for f in p.files) or "(inline)"
            lines.append(
                f"  part {p.id}: {p.codec} v{p.codec_version}  {p.type}  {_human(p.size)}  {files}{flag}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Manifest\n{self}\n>"


def _part_info(p: Mapping[str, Any]) -> PartInfo:
    files = tuple(
        FileRecord(f["name"], int(f["size"]), str(f["digest"])) for f in p.get("files", ())
    )
    return PartInfo(
        id=int(p["id"]),
        codec=str(p["codec"]),
        codec_version=int(p["codec_version"]),
        type=str(p.get("type", "")),
        size=sum(f.size for f in files),
        files=files,
        pickle=bool(p.get("pickle", False)),
        provider=p.get("provider"),
        meta=dict(p.get("meta") or {}),
    )


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# -- writing --------------------------------------------------------------------------------


class _PartWriter:
    def __init__(self, sink: Sink, part_id: int) -> None:
        self._sink = sink
        self._prefix = str(part_id)
        self._writers: list[HashingWriter] = []
        self.pickled = False

    def open(self, suffix: str) -> BinaryIO:
        if not suffix or not all(c.isalnum() or c in "._-" for c in suffix):
            raise ValueError(
                f"part file suffix {suffix!r} must be made of letters, digits, '.', '_', '-'"
            )
        name = self._prefix + suffix
        if any(w.name == name for w in self._writers):
            raise ValueError(f"part file {name!r} written twice")
        if self._writers and not self._writers[-1].closed:
            raise RuntimeError("close the previous part file before opening another")
        writer = self._sink.open(name)
        self._writers.append(writer)
        return writer  # type: ignore[return-value]

    def write(self, suffix: str, data: Buffer | Iterable[Buffer]) -> None:
        with self.open(suffix) as f:
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                for chunk in data:
                    f.write(chunk)

    def pickle(self, suffix: str, obj: Any) -> None:
        self.pickled = True
        with self.open(suffix) as f:
            import cloudpickle

            cloudpickle.dump(obj, f, protocol=5)

    def finish(self) -> list[FileRecord]:
        for w in self._writers:
            w.close()
        return [w.record for w in self._writers if w.record is not None]


class BundleWriter:
    """Collects parts into a sink and commits the manifest."""

    def __init__(self, sink: Sink, registry: Registry, key: Key | None = None) -> None:
        self.sink = sink
        self.registry = registry
        self.key = _key_bytes(key)
        self.parts: list[dict[str, Any]] = []
        self._memo: dict[int, tuple[Any, int]] = {}
        self._libraries: set[str] = set()

    def add_part(self, obj: Any, codec: Codec, path: Callable[[], str]) -> int:
        """Encode ``obj`` with ``codec`` as a new part (once per object); return its id."""
        hit = self._memo.get(id(obj))
        if hit is not None:
            return hit[1]
        part_id = len(self.parts)
        writer = _PartWriter(self.sink, part_id)
        try:
            meta = codec.encode(obj, writer)
            files = writer.finish()
        except SerializationError as exc:
            where = path()
            if str(exc).startswith(where):
                raise
            raise SerializationError(f"{where}: {exc}") from exc
        except Exception as exc:
            raise SerializationError(
                f"{path()}: codec {codec.id!r} could not encode {type_name(type(obj))}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        entry: dict[str, Any] = {
            "id": part_id,
            "codec": codec.id,
            "codec_version": codec.version,
            "type": type_name(type(obj)),
            "files": [{"name": f.name, "size": f.size, "digest": f.digest} for f in files],
            "provider": self.registry.provider(codec.id) or BUILTIN_PROVIDER,
        }
        if writer.pickled:
            entry["pickle"] = True
        if meta:
            entry["meta"] = meta
        self.parts.append(entry)
        self._memo[id(obj)] = (obj, part_id)
        if codec.library:
            self._libraries.add(codec.library)
        return part_id

    def write_skeleton_file(self, data: bytes) -> dict[str, Any]:
        with self.sink.open("skeleton.pkl") as f:
            f.write(data)
        record = f.record
        assert record is not None
        return {"kind": "pickle", "file": record.name, "size": record.size, "digest": record.digest}

    def commit(self, skeleton: dict[str, Any]) -> Manifest:
        libraries = {"cloudpickle"} if skeleton["kind"] == "pickle" else set()
        libraries |= self._libraries
        manifest: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "skeleton": skeleton,
            "parts": self.parts,
            "producer": {
                "python": "{}.{}.{}".format(*sys.version_info[:3]),
                "implementation": sys.implementation.name,
                "platform": f"{sys.platform}-{_machine()}",
                "remote_codecs": _dist_version("remote-runtime"),
                "libraries": {lib: _dist_version(lib) for lib in sorted(libraries)},
            },
        }
        try:
            if self.key is not None:
                manifest["signature"] = {"alg": "hmac-sha256", "value": _sign(self.key, manifest)}
            body = json.dumps(manifest, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"a codec returned metadata that is not plain JSON: {exc}"
            ) from exc
        self.sink.commit(body)
        return Manifest(manifest)


# -- reading --------------------------------------------------------------------------------


class _PartReader:
    def __init__(self, reader: BundleReader, part: PartInfo) -> None:
        self._reader = reader
        self._part = part
        self._files = {f.name[len(str(part.id)) :]: f for f in part.files}

    @property
    def allow_pickle(self) -> bool:
        return self._reader.allow_pickle

    @property
    def options(self) -> Mapping[str, Any]:
        return self._reader.options

    def _record(self, suffix: str) -> FileRecord:
        try:
            return self._files[suffix]
        except KeyError:
            raise DeserializationError(
                f"{self._reader.source.description}: part {self._part.id} ({self._part.codec}) "
                f"has no file with suffix {suffix!r}"
            ) from None

    def size(self, suffix: str) -> int:
        return self._record(suffix).size

    def read(self, suffix: str) -> bytes:
        return self._reader.source.read(self._record(suffix))

    def read_into(self, suffix: str, buffers: Iterable[memoryview]) -> None:
        self._reader.source.read_into(self._record(suffix), buffers)

    def unpickle(self, suffix: str) -> Any:
        if not self.allow_pickle:
            raise DeserializationError(
                f"part {self._part.id} ({self._part.codec}) needs pickle, and allow_pickle=False"
            )
        import pickle

        return pickle.loads(self.read(suffix))


class BundleReader:
    """Parses, verifies and audits a manifest; decodes parts on demand (each once)."""

    def __init__(
        self,
        source: Source,
        registry: Registry,
        *,
        key: Key | None = None,
        allow_pickle: bool = True,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.source = source
        self.registry = registry
        self.allow_pickle = allow_pickle
        self.options: Mapping[str, Any] = dict(options or {})
        self.manifest = parse_manifest(source.read_manifest(), source.description)
        verify_signature(self.manifest.raw, _key_bytes(key), source.description)
        self._parts = self.manifest.parts
        self._decoded: dict[int, Any] = {}
        self._lock = threading.RLock()
        self._codecs = self._audit()

    def _audit(self) -> dict[int, Codec]:
        where = self.source.description
        if not self.allow_pickle and self.manifest.needs_pickle:
            what = (
                "its skeleton is a pickle stream"
                if self.manifest.skeleton_kind == "pickle"
                else "part(s) "
                + ", ".join(f"{p.id} ({p.codec})" for p in self._parts if p.pickle)
                + " were stored with pickle"
            )
            raise DeserializationError(
                f"{where}: loading needs pickle ({what}), and allow_pickle=False; "
                "load it with allow_pickle=True only if you trust its producer"
            )
        codecs: dict[int, Codec] = {}
        for part in self._parts:
            codec = self.registry.get(part.codec, provider_hint=part.provider)
            if part.codec_version > codec.version:
                raise DeserializationError(
                    f"{where}: part {part.id} was written by codec {part.codec!r} format "
                    f"v{part.codec_version}; this installation reads up to v{codec.version}. "
                    f"Upgrade {part.provider or 'remote-runtime'}."
                )
            codecs[part.id] = codec
        return codecs

    def part(self, part_id: int) -> Any:
        """The decoded object of part ``part_id`` (decoded once, then shared)."""
        with self._lock:
            if part_id in self._decoded:
                return self._decoded[part_id]
            if not isinstance(part_id, int) or not 0 <= part_id < len(self._parts):
                raise DeserializationError(
                    f"{self.source.description}: reference to unknown part {part_id!r}"
                )
            part = self._parts[part_id]
            codec = self._codecs[part_id]
            try:
                obj = codec.decode(_PartReader(self, part), part.meta, part.codec_version)
            except (DeserializationError, MemoryError):
                raise
            except Exception as exc:
                raise DeserializationError(
                    f"{self.source.description}: part {part_id} ({part.codec}) could not be decoded: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self._decoded[part_id] = obj
            return obj

    def records(self) -> list[FileRecord]:
        """Every file the bundle's decoding will read (for prefetching)."""
        out = [f for p in self._parts for f in p.files]
        sk = self.manifest.raw["skeleton"]
        if sk["kind"] == "pickle":
            out.append(FileRecord(str(sk["file"]), int(sk["size"]), str(sk["digest"])))
        return out

    def skeleton_bytes(self) -> bytes:
        sk = self.manifest.raw["skeleton"]
        record = FileRecord(str(sk["file"]), int(sk["size"]), str(sk["digest"]))
        return self.source.read(record)


def parse_manifest(data: bytes, where: str) -> Manifest:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeserializationError(
            f"{where}: manifest is not valid JSON ({exc}); the bundle is corrupted"
        ) from None
    if not isinstance(raw, dict) or "format" not in raw:
        raise DeserializationError(f"{where}: manifest has no format version; not a bundle")
    fmt = raw["format"]
    if fmt not in SUPPORTED_FORMATS:
        raise DeserializationError(
            f"{where}: bundle format {fmt!r} is not supported by this installation "
            f"(it reads {', '.join(map(str, SUPPORTED_FORMATS))}); upgrade remote-runtime"
        )
    try:
        manifest = Manifest(raw)
        manifest.parts  # noqa: B018  (validates the part records)
        kind = manifest.skeleton_kind
    except (KeyError, TypeError, ValueError) as exc:
        raise DeserializationError(
            f"{where}: manifest is malformed ({type(exc).__name__}: {exc})"
        ) from None
    if kind not in ("json", "pickle"):
        raise DeserializationError(f"{where}: unknown skeleton kind {kind!r}")
    return manifest


def verify_signature(raw: Mapping[str, Any], key: bytes | None, where: str) -> None:
    if key is None:
        return
    sig = raw.get("signature")
    if (
        not isinstance(sig, dict)
        or sig.get("alg") != "hmac-sha256"
        or not isinstance(sig.get("value"), str)
    ):
        raise IntegrityError(
            f"{where}: the bundle is not signed, but a key was given; refusing to load it"
        )
    if not hmac.compare_digest(sig["value"], _sign(key, raw)):
        raise IntegrityError(
            f"{where}: signature mismatch: the bundle was signed with another key, or tampered with"
        )
