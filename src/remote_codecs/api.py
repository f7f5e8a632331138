"""The public functions: dumps/loads (bytes), save/load (any fsspec URI), inspect."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from .bundle import BundleReader, BundleWriter, Key, Manifest, parse_manifest
from .codec import Codec
from .errors import DeserializationError
from .registry import Registry
from .skeleton import decode_skeleton, encode_skeleton
from .storage import (
    FolderSink,
    FolderSource,
    Sink,
    Source,
    TooLarge,
    ZipSink,
    ZipSource,
    resolve,
)

__all__ = ["default_registry", "dumps", "inspect", "load", "loads", "register", "reject", "save"]

_registry: Registry | None = None
_registry_lock = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry used by dumps/loads/save/load."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                _registry = Registry()
    return _registry


def register(codec: Codec | type[Codec], *, replace: bool = False) -> Codec:
    """Register a codec in the default registry; a duplicate id is refused unless ``replace``."""
    return default_registry().register(codec, replace=replace)


def reject(type_name: str, hint: str) -> None:
    """Refuse objects of ``type_name`` (qualified, e.g. ``"mylib.Handle"``) with ``hint``."""
    default_registry().reject(type_name, hint)


def _encode(
    obj: Any, sink: Sink, key: Key | None, registry: Registry | None, purpose: str | None = None
) -> Manifest:
    try:
        writer = BundleWriter(sink, registry or default_registry(), key, purpose)
        skeleton = encode_skeleton(obj, writer)
        return writer.commit(skeleton)
    except BaseException:
        sink.abort()
        raise


_ATTEMPTS = 3  # a bundle replaced while it was being read is read again, this often


def _decode(
    open_source: Callable[[], Source],
    key: Key | None,
    allow_pickle: bool,
    registry: Registry | None,
    options: Mapping[str, Any] | None,
    purpose: str | None = None,
) -> Any:
    for attempt in range(_ATTEMPTS):
        source = open_source()
        try:
            reader = BundleReader(
                source,
                registry or default_registry(),
                key=key,
                allow_pickle=allow_pickle,
                options=options,
                purpose=purpose,
            )
            source.prefetch(reader.records())
            return decode_skeleton(reader)
        except DeserializationError:
            # Another writer published a new bundle here while this one was read: read
            # the new one, instead of reporting the old one as broken.
            if attempt + 1 < _ATTEMPTS and source.replaced():
                continue
            raise
        finally:
            source.close()
    raise AssertionError("unreachable")


def dumps(
    obj: Any,
    *,
    key: Key | None = None,
    purpose: str | None = None,
    registry: Registry | None = None,
) -> bytes:
    """Encode ``obj`` as a single-file bundle (a stored zip of the manifest and parts).

    ``key`` signs the manifest (HMAC-SHA256); ``purpose`` (e.g. ``"job-42/results"``) is
    recorded and signed with it, and a loader that names another purpose refuses it.
    """
    sink = ZipSink()
    _encode(obj, sink, key, registry, purpose)
    return sink.getvalue()


def dumps_if_small(
    obj: Any,
    max_size: int,
    *,
    key: Key | None = None,
    purpose: str | None = None,
    registry: Registry | None = None,
) -> bytes | None:
    """:func:`dumps`, or None as soon as the parts pass ``max_size`` bytes (nothing large
    is buffered: the caller then saves the value as a folder). For runtimes choosing the
    single-file form for small values."""
    sink = ZipSink(max_size)
    try:
        _encode(obj, sink, key, registry, purpose)
    except TooLarge:
        return None
    return sink.getvalue()


VersionMismatch = bool | Literal["verify"]


def _options(
    map_location: Any,
    trusted: Any,
    allow_version_mismatch: VersionMismatch,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    options = dict(extra or {})
    if map_location is not None:
        options["map_location"] = map_location
    if trusted is not None:
        options["trusted"] = list(trusted)
    if allow_version_mismatch not in (True, False, "verify"):
        raise ValueError(
            f"allow_version_mismatch must be True, False or 'verify', got {allow_version_mismatch!r}"
        )
    if allow_version_mismatch:
        options["allow_version_mismatch"] = allow_version_mismatch
    return options


def loads(
    data: bytes | bytearray | memoryview,
    *,
    key: Key | None = None,
    allow_pickle: bool = True,
    map_location: Any = None,
    trusted: Iterable[str] | None = None,
    allow_version_mismatch: VersionMismatch = False,
    purpose: str | None = None,
    registry: Registry | None = None,
    options: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Any:
    """Decode a bundle made by :func:`dumps`. With ``key``, the signature must match;
    with ``purpose``, the bundle must have been written for that purpose. ``name`` (a
    file name, say) names the bytes in error messages.

    ``allow_pickle=False`` never unpickles anything: a bundle that needs pickle is refused.
    ``map_location`` places torch tensors (default: the CPU); ``trusted`` names extra
    types scikit-learn estimators may contain (skops). A part written under a library
    version its codec cannot vouch for (a newer xgboost, another scikit-learn ...) is
    refused naming both versions; ``allow_version_mismatch=True`` loads it with a warning,
    ``"verify"`` loads it only if its recorded behaviour is reproduced here (codecs that
    record one). ``options`` are handed to third-party codecs as they are.
    """
    _check_buffer(data, "loads()")
    opts = _options(map_location, trusted, allow_version_mismatch, options)
    description = name or "<bytes>"
    return _decode(lambda: ZipSource(data, description), key, allow_pickle, registry, opts, purpose)


def _check_buffer(
    data: Any, where: str, instead: str = "for a bundle folder use remote_codecs.load(uri)"
) -> None:
    """``data`` must hold bytes (any buffer: bytes, bytearray, memoryview, array ...)."""
    if not isinstance(data, (str, os.PathLike)):
        try:
            memoryview(data).release()
            return
        except TypeError:
            pass
    raise TypeError(
        f"{where} takes the bytes of a single-file bundle (remote_codecs.dumps), not a "
        f"{type(data).__name__}; {instead}"
    )


def _fs(
    uri: str | os.PathLike[str], storage_options: Mapping[str, Any] | None
) -> tuple[Any, str, str]:
    if not isinstance(uri, (str, os.PathLike)) or isinstance(os.fspath(uri), bytes):
        raise TypeError(
            f"a bundle folder is named by a path or URI string, not a {type(uri).__name__}; "
            "for the bytes of a single-file bundle use remote_codecs.loads / dumps"
        )
    fs, path = resolve(uri, dict(storage_options) if storage_options else None)
    return fs, path, os.fspath(uri)


def save(
    obj: Any,
    uri: str | os.PathLike[str],
    *,
    key: Key | None = None,
    purpose: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> Manifest:
    """Write ``obj`` as a bundle folder at ``uri`` (any fsspec URI); return its manifest.

    The bundle is published in one step (locally: written aside, then renamed into place;
    on object stores: the manifest last), so a reader sees the old bundle or the new one.
    An existing bundle at ``uri`` is replaced; a folder with other files is refused.
    ``key`` and ``purpose`` are those of :func:`dumps`.
    """
    fs, path, _ = _fs(uri, storage_options)
    return _encode(obj, FolderSink(fs, path), key, registry, purpose)


def load(
    uri: str | os.PathLike[str],
    *,
    key: Key | None = None,
    allow_pickle: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    map_location: Any = None,
    trusted: Iterable[str] | None = None,
    allow_version_mismatch: VersionMismatch = False,
    purpose: str | None = None,
    registry: Registry | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Read the bundle folder at ``uri``, verifying every part (and the signature, with
    ``key``). The other arguments are those of :func:`loads`."""
    fs, path, text = _fs(uri, storage_options)
    opts = _options(map_location, trusted, allow_version_mismatch, options)
    return _decode(lambda: FolderSource(fs, path, text), key, allow_pickle, registry, opts, purpose)


def inspect(
    uri_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Manifest:
    """The manifest of a bundle (folder URI or bytes), without decoding anything."""
    source: Source
    if not isinstance(uri_or_bytes, (str, os.PathLike)):
        _check_buffer(uri_or_bytes, "inspect()", "or the path or URI of a bundle folder")
        source = ZipSource(uri_or_bytes)
    else:
        fs, path, text = _fs(uri_or_bytes, storage_options)
        source = FolderSource(fs, path, text)
    try:
        return parse_manifest(source.read_manifest(), source.description)
    finally:
        source.close()
