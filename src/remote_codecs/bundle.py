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
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from .codec import Buffer, Codec
from .errors import DeserializationError, IntegrityError, SerializationError
from .registry import BUILTIN_PROVIDER, Registry, type_name
from .storage import MANIFEST, FileRecord, HashingWriter, Sink, Source, check_name

__all__ = ["FORMAT_VERSION", "BundleReader", "BundleWriter", "Manifest", "PartInfo"]

FORMAT_VERSION = 1
SUPPORTED_FORMATS = (1,)
Key = bytes | str


def _key_bytes(key: Key | None) -> bytes | None:
    if key is None:
        return None
    if isinstance(key, str):
        return _key_bytes(key.encode())
    if isinstance(key, (bytes, bytearray)):
        if not key:
            raise ValueError(
                "key is empty: pass a secret (for example secrets.token_bytes(32)), or key=None"
            )
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
    def tag(self) -> str:
        """The writer's tag in file names (object stores: one per write), or ""."""
        found = self.raw.get("tag", "")
        return found if isinstance(found, str) else ""

    @property
    def purpose(self) -> str | None:
        """What the bundle was written for (signed with it), e.g. ``"<job>/results"``."""
        found = self.raw.get("purpose")
        return found if isinstance(found, str) else None

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
    def __init__(self, sink: Sink, part_id: int, shared: dict[str, Any]) -> None:
        self._sink = sink
        self.part_id = part_id
        self.shared = shared
        self._prefix = file_prefix(part_id, sink.tag)
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

    def __init__(
        self, sink: Sink, registry: Registry, key: Key | None = None, purpose: str | None = None
    ) -> None:
        if purpose is not None and not isinstance(purpose, str):
            raise TypeError(f"purpose must be a str, got {type(purpose).__name__}")
        self.purpose = purpose
        self.sink = sink
        self.registry = registry
        self.key = _key_bytes(key)
        self.parts: list[dict[str, Any]] = []
        self._memo: dict[int, tuple[Any, int]] = {}
        self.shared: dict[str, Any] = {}  # codecs' state across the parts of this bundle
        self._libraries: set[str] = set()

    def add_part(self, obj: Any, codec: Codec, path: Callable[[], str]) -> int:
        """Encode ``obj`` with ``codec`` as a new part (once per object); return its id."""
        hit = self._memo.get(id(obj))
        if hit is not None:
            return hit[1]
        part_id = len(self.parts)
        writer = _PartWriter(self.sink, part_id, self.shared)
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
        with self.sink.open(skeleton_name(self.sink.tag)) as f:
            f.write(data)
        record = f.record
        assert record is not None
        return {"kind": "pickle", "file": record.name, "size": record.size, "digest": record.digest}

    def commit(self, skeleton: dict[str, Any]) -> Manifest:
        libraries = {"cloudpickle"} if skeleton["kind"] == "pickle" else set()
        libraries |= self._libraries
        manifest: dict[str, Any] = {"format": FORMAT_VERSION}
        if self.sink.tag:
            manifest["tag"] = self.sink.tag
        if self.purpose is not None:
            manifest["purpose"] = self.purpose
        manifest |= {
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

# Loading code pickled by value (functions, lambdas, classes defined in __main__) under
# another Python minor version can crash the interpreter: cloudpickle's code objects are
# tied to the bytecode of the version that wrote them. These names mark such a stream.
_CODE_MARKERS = (b"CodeType", b"_make_function", b"_make_skeleton_class")


def _python_minor(version: Any) -> str | None:
    if not isinstance(version, str):
        return None
    parts = version.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else None


def check_pickled_code(data: bytes | memoryview, producer: Mapping[str, Any], where: str) -> None:
    """Refuse a pickle stream holding code by value written by another Python minor."""
    written = _python_minor(producer.get("python"))
    here = "{}.{}".format(*sys.version_info[:2])
    if written is None or written == here:
        return
    blob = bytes(data) if isinstance(data, memoryview) else data
    if any(marker in blob for marker in _CODE_MARKERS):
        raise DeserializationError(
            f"{where}: it holds Python code pickled by value (a function, lambda or class "
            f"defined in a script or notebook) under Python {written}, and this is Python "
            f"{here}: such code cannot run on another minor version. Load it with Python "
            f"{written}, or define the code in an importable module"
        )


_VERSION = re.compile(
    r"""^\s*v?(?:(?P<epoch>\d+)!)?(?P<release>\d+(?:\.\d+)*)
    (?:[-_.]?(?P<pre_l>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?P<pre_n>\d+)?)?
    (?:-(?P<post_n1>\d+)|[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>\d+)?)?
    (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>\d+)?)?
    (?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_PRE = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}


def version_key(version: Any) -> tuple[Any, ...] | None:
    """A key that orders version strings as PEP 440 does (``2.1.0.dev1 < 2.1.0rc1 <
    2.1.0 == 2.1 < 2.1.0.post1``), or None for a string that is not a version. The local
    label (``+cpu``, ``+cu121``: another build of the same release) is ignored."""
    if not isinstance(version, str) or len(version) > 200:
        return None
    m = _VERSION.match(version)
    if m is None:
        return None
    release = tuple(int(n) for n in m["release"].split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    post_n = m["post_n1"] or m["post_n2"] or "0"
    has_post = m["post_n1"] is not None or m["post_l"] is not None
    has_dev = m["dev_l"] is not None
    if m["pre_l"] is not None:
        pre: tuple[int, int] = (_PRE[m["pre_l"].lower()], int(m["pre_n"] or 0))
    elif has_dev and not has_post:
        pre = (-1, 0)  # 2.1.0.dev1 comes before 2.1.0a1
    else:
        pre = (3, 0)  # a final release comes after its pre-releases
    post = int(post_n) if has_post else -1
    dev = (0, int(m["dev_n"] or 0)) if has_dev else (1, 0)
    return (int(m["epoch"] or 0), release, pre, post, dev)


def installed_version(library: str) -> str | None:
    """The installed version of ``library`` (a distribution name), or None."""
    found = _dist_version(library)
    if found is None:
        for alt in (f"{library}-cpu", f"{library}-gpu"):
            found = _dist_version(alt)
            if found is not None:
                break
    return found


POLICIES = ("stable", "no-newer", "same")


Mismatch = Literal["allowed", "verify"] | None


def _shown(version: str) -> str:
    """A version from an artifact, as an error message shows it."""
    return version if version_key(version) is not None else repr(version[:60])


def check_version_policy(
    codec: Codec, written: str | None, allow: Any, where: str, part_id: int
) -> Mismatch:
    """Apply ``codec.version_policy`` to a part written under ``written`` (a version of
    ``codec.library``), before anything is decoded. This is the only place that decides
    whether a part from another library version may be read; the codec is told the
    outcome (``PartReader.version_mismatch``) and never decides it again.

    Returns None when the policy accepts the part (the same version, or one the policy
    allows); ``"allowed"`` when the policy refuses it and the loader opted in with
    ``allow_version_mismatch=True`` (a warning names both versions); ``"verify"`` when the
    loader passed ``"verify"`` and the codec ``verifies``: its ``decode`` must check the
    part's recorded behaviour. Otherwise raises DeserializationError naming both versions
    and the opt-in.
    """
    policy = getattr(codec, "version_policy", "no-newer")
    if policy == "stable" or not codec.library or written is None:
        return None
    if policy not in POLICIES:
        raise DeserializationError(
            f"codec {codec.id!r} declares an unknown version_policy {policy!r} "
            f"(one of {', '.join(POLICIES)})"
        )
    here = installed_version(codec.library)
    if here is None:  # not installed: decoding it fails on the import, naming it
        return None
    w, h = version_key(written), version_key(here)
    if w is not None and h is not None:
        if w == h or (policy == "no-newer" and w < h):
            return None
        relation = "another version than" if policy == "same" else "a newer version than"
    elif written == here:
        return None
    else:  # a version string that is not one cannot be ordered: never assume it is older
        relation = "a version that cannot be compared with"
    lib = codec.library
    shown = _shown(written)
    message = (
        f"{where}: part {part_id} ({codec.id}) was written by {lib} {shown}, "
        f"{relation} this {lib} {here}"
    )
    if not allow:
        verify = (
            'allow_version_mismatch="verify" to load it only if it behaves as recorded, or '
            if getattr(codec, "verifies", False)
            else ""
        )
        raise DeserializationError(
            f"{message}, and may load differently. Install {lib}=={shown} to load it, "
            f"or pass {verify}allow_version_mismatch=True to load it anyway"
        )
    if allow == "verify":
        if not getattr(codec, "verifies", False):
            raise DeserializationError(
                f"{message}; allow_version_mismatch='verify' was asked, but this codec "
                "cannot verify its parts; pass allow_version_mismatch=True to load it anyway"
            )
        return "verify"  # the codec verifies the decoded object itself
    import warnings

    warnings.warn(f"{message}; loading anyway (allow_version_mismatch=True)", stacklevel=4)
    return "allowed"


class _PartReader:
    def __init__(self, reader: BundleReader, part: PartInfo, codec: Codec) -> None:
        self._reader = reader
        self._part = part
        self._codec = codec
        prefix = file_prefix(part.id, reader.manifest.tag)
        self._files = {f.name[len(prefix) :]: f for f in part.files}
        self.part_id = part.id
        self.shared = reader.shared

    def decode_part(self, part_id: int) -> Any:
        """The decoded object of an earlier part of this bundle (decoded once, verified)."""
        if type(part_id) is not int or not 0 <= part_id < self.part_id:
            raise DeserializationError(
                f"{self._reader.source.description}: part {self.part_id} refers to part "
                f"{str(part_id)[:20]}, which is not an earlier part of the bundle"
            )
        return self._reader.part(part_id)

    @property
    def allow_pickle(self) -> bool:
        return self._reader.allow_pickle

    @property
    def options(self) -> Mapping[str, Any]:
        return self._reader.options

    @property
    def written_version(self) -> str | None:
        """The version of the codec's library that wrote this part, as the manifest says."""
        lib = self._codec.library
        found = self._reader.manifest.producer.get("libraries", {}).get(lib) if lib else None
        return found if isinstance(found, str) else None

    @property
    def version_mismatch(self) -> Mismatch:
        """What the loader decided about this part's library version (None, "allowed" or
        "verify": :func:`check_version_policy`)."""
        return self._reader.mismatches.get(self.part_id)

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
        where = f"{self._reader.source.description}: part {self._part.id} ({self._part.codec})"
        if not self.allow_pickle:
            raise DeserializationError(f"{where} needs pickle, and allow_pickle=False")
        import pickle

        data = self.read(suffix)
        check_pickled_code(data, self._reader.manifest.producer, where)
        return pickle.loads(data)


class BundleReader:
    """Parses, verifies and audits a manifest; decodes parts on demand (each once).

    Everything is checked before a byte of a part is decoded: the manifest (size,
    structure, file names), the signature and purpose, every codec id and version, the
    files themselves (regular files of their recorded sizes), and pickle permission.
    """

    def __init__(
        self,
        source: Source,
        registry: Registry,
        *,
        key: Key | None = None,
        allow_pickle: bool = True,
        options: Mapping[str, Any] | None = None,
        purpose: str | None = None,
    ) -> None:
        self.source = source
        self.registry = registry
        self.allow_pickle = allow_pickle
        self.options: Mapping[str, Any] = dict(options or {})
        key = _key_bytes(key)
        try:
            self.manifest = parse_manifest(source.read_manifest(), source.description)
        except IntegrityError:
            raise
        except DeserializationError as exc:
            if key is None or "no bundle at" in str(exc):
                raise
            # A signed bundle whose manifest does not even parse failed verification.
            raise IntegrityError(str(exc)) from None
        verify_signature(self.manifest.raw, key, source.description)
        check_purpose(self.manifest.raw, purpose, source.description)
        self._parts = self.manifest.parts
        self._decoded: dict[int, Any] = {}
        self.shared: dict[str, Any] = {}  # codecs' state across the parts of this bundle
        self._lock = threading.RLock()
        # per part: what check_version_policy decided (only the parts it did not accept)
        self.mismatches: dict[int, Mismatch] = {}
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
        libraries = self.manifest.producer.get("libraries") or {}
        allow = self.options.get("allow_version_mismatch")
        for part in self._parts:
            codec = self.registry.get(part.codec, provider_hint=part.provider)
            if part.codec_version > codec.version:
                raise DeserializationError(
                    f"{where}: part {part.id} was written by codec {part.codec!r} format "
                    f"v{part.codec_version}; this installation reads up to v{codec.version}. "
                    f"Upgrade {codec_provider(self.registry, codec)}."
                )
            if not self.allow_pickle and codec.needs_pickle:
                raise DeserializationError(
                    f"{where}: part {part.id} ({part.codec}) needs pickle to load, "
                    "and allow_pickle=False"
                )
            written = libraries.get(codec.library) if codec.library else None
            mismatch = check_version_policy(
                codec, written if isinstance(written, str) else None, allow, where, part.id
            )
            if mismatch is not None:
                self.mismatches[part.id] = mismatch
            codecs[part.id] = codec
        self.source.check(self.records())
        return codecs

    def part(self, part_id: int) -> Any:
        """The decoded object of part ``part_id`` (decoded once, then shared)."""
        with self._lock:
            if type(part_id) is not int or not 0 <= part_id < len(self._parts):
                raise DeserializationError(
                    f"{self.source.description}: reference to unknown part {str(part_id)[:40]!r}"
                )
            if part_id in self._decoded:
                return self._decoded[part_id]
            part = self._parts[part_id]
            codec = self._codecs[part_id]
            try:
                obj = codec.decode(_PartReader(self, part, codec), part.meta, part.codec_version)
            except DeserializationError:
                raise
            except MemoryError:
                raise DeserializationError(
                    f"{self.source.description}: part {part_id} ({part.codec}) does not fit in memory"
                ) from None
            except RecursionError:
                raise DeserializationError(
                    f"{self.source.description}: part {part_id} ({part.codec}) is nested too deeply"
                ) from None
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
            out.append(_skeleton_record(sk))
        return out

    def skeleton_bytes(self) -> bytes:
        data = self.source.read(_skeleton_record(self.manifest.raw["skeleton"]))
        check_pickled_code(
            data, self.manifest.producer, f"{self.source.description}: the pickled skeleton"
        )
        return data


def codec_provider(registry: Registry, codec: Codec) -> str:
    return registry.provider(codec.id) or "remote-runtime"


def _skeleton_record(sk: Mapping[str, Any]) -> FileRecord:
    return FileRecord(str(sk["file"]), int(sk["size"]), str(sk["digest"]))


_DIGEST = re.compile(r"^(blake3|sha256):[0-9a-f]{64}$")
_TAG = re.compile(r"^([0-9a-f]{8,32})?$")


def file_prefix(part_id: int, tag: str) -> str:
    """How the file names of part ``part_id`` begin: ``0`` (``0.npy``), or ``0-<tag>``
    where the writer tags its files (object stores, so writers never overwrite each other)."""
    return f"{part_id}-{tag}" if tag else str(part_id)


def skeleton_name(tag: str) -> str:
    return f"skeleton-{tag}.pkl" if tag else "skeleton.pkl"


MAX_DEPTH = 128  # nesting of a manifest (skeleton and codec metadata)
MAX_PARTS = 1_000_000


def _brackets(data: bytes | str) -> int:
    if isinstance(data, str):
        return data.count("{") + data.count("[")
    return data.count(b"{") + data.count(b"[")


def _depth_exceeds(node: Any, limit: int) -> bool:
    stack = [(node, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return False


def _malformed(where: str, what: str) -> DeserializationError:
    return DeserializationError(f"{where}: {MANIFEST} is malformed ({what}); not a valid bundle")


def _check_files(files: Any, where: str, owner: str, prefix: str, seen: set[str]) -> None:
    if not isinstance(files, list):
        raise _malformed(where, f"{owner}: files is not a list")
    for f in files:
        if not isinstance(f, dict):
            raise _malformed(where, f"{owner}: a file record is not an object")
        name = check_name(f.get("name"), where)
        if not name.startswith(prefix) or name in seen or name == MANIFEST:
            raise _malformed(where, f"{owner}: file name {name!r} is not its own")
        seen.add(name)
        size = f.get("size")
        if type(size) is not int or size < 0:
            raise _malformed(where, f"{owner}: {name} has no valid size")
        if not isinstance(f.get("digest"), str) or not _DIGEST.match(f["digest"]):
            raise _malformed(where, f"{owner}: {name} has no valid digest")


def parse_manifest(data: bytes, where: str) -> Manifest:
    try:
        raw = json.loads(data)
    except RecursionError:
        raise DeserializationError(
            f"{where}: {MANIFEST} is nested too deeply; not a bundle"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeserializationError(
            f"{where}: {MANIFEST} is not valid JSON ({exc}); the bundle is corrupted"
        ) from None
    if not isinstance(raw, dict) or "format" not in raw:
        raise DeserializationError(f"{where}: {MANIFEST} has no format version; not a bundle")
    fmt = raw["format"]
    if type(fmt) is not int or fmt not in SUPPORTED_FORMATS:
        raise DeserializationError(
            f"{where}: bundle format {str(fmt)[:20]} is not supported by this installation "
            f"(it reads {', '.join(map(str, SUPPORTED_FORMATS))}); upgrade remote-runtime"
        )
    # (a JSON value nests at most as deep as its text has brackets: most manifests are
    # cleared by counting them, without walking the parsed value)
    if _brackets(data) > MAX_DEPTH and _depth_exceeds(raw, MAX_DEPTH):
        raise DeserializationError(
            f"{where}: {MANIFEST} is nested more than {MAX_DEPTH} levels deep; not a bundle"
        )
    parts, skeleton = raw.get("parts"), raw.get("skeleton")
    if not isinstance(parts, list) or len(parts) > MAX_PARTS:
        raise _malformed(where, "parts is not a list")
    if not isinstance(skeleton, dict) or skeleton.get("kind") not in ("json", "pickle"):
        kind = skeleton.get("kind") if isinstance(skeleton, dict) else None
        raise DeserializationError(f"{where}: unknown skeleton kind {str(kind)[:40]!r}")
    if "purpose" in raw and not isinstance(raw["purpose"], str):
        raise _malformed(where, "purpose is not a string")
    if not isinstance(raw.get("producer", {}), dict) or not isinstance(
        raw.get("producer", {}).get("libraries", {}), dict
    ):
        raise _malformed(where, "producer is not an object")
    tag = raw.get("tag", "")
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise _malformed(where, "tag is not a short lowercase hex string")
    seen: set[str] = set()
    for index, p in enumerate(parts):
        if not isinstance(p, dict) or p.get("id") != index or type(p.get("id")) is not int:
            raise _malformed(where, f"part {index} is not numbered {index}")
        if not isinstance(p.get("codec"), str) or type(p.get("codec_version")) is not int:
            raise _malformed(where, f"part {index} has no codec id and version")
        if not isinstance(p.get("meta", {}), dict) or not isinstance(p.get("type", ""), str):
            raise _malformed(where, f"part {index}: meta is not an object")
        _check_files(p.get("files", []), where, f"part {index}", file_prefix(index, tag), seen)
    if skeleton["kind"] == "pickle":
        name = skeleton_name(tag)
        if skeleton.get("file") != name:
            raise _malformed(where, f"the pickled skeleton is not {name}")
        _check_files(
            [{k: skeleton.get(k) for k in ("name", "size", "digest")} | {"name": name}],
            where,
            "skeleton",
            "skeleton",
            seen,
        )
    elif "value" not in skeleton:
        raise _malformed(where, "the JSON skeleton has no value")
    return Manifest(raw)


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
            f"{where}: {MANIFEST} is not signed, but a key was given; refusing to load the bundle"
        )
    if not hmac.compare_digest(sig["value"].encode(), _sign(key, raw).encode()):
        raise IntegrityError(
            f"{where}: signature mismatch in {MANIFEST}: the bundle was signed with another key, or tampered "
            "with, so it is refused"
        )


def check_purpose(raw: Mapping[str, Any], purpose: str | None, where: str) -> None:
    """Refuse a bundle written for another purpose (another job, or another role)."""
    if purpose is None:
        return
    found = raw.get("purpose")
    if found != purpose:
        shown = "no purpose" if found is None else f"the purpose {str(found)[:120]!r}"
        raise IntegrityError(
            f"{where}: the bundle was written with {shown}, but it is loaded as "
            f"{purpose!r}: a bundle cannot stand in for another; refusing to load it"
        )
