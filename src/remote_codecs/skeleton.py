"""The skeleton: a value's structure, with typed objects replaced by part references.

JSON whenever the structure is plain (dict, list, tuple, str, int, float, bool, None,
bytes, complex, set, frozenset, non-str dict keys): such a bundle loads with no pickle.
Otherwise a cloudpickle stream whose typed leaves are still parts, through pickle's
``persistent_id`` / ``persistent_load``.
"""

from __future__ import annotations

import base64
import io
import math
import pickle
import struct
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Any

from .bundle import BundleReader, BundleWriter
from .codec import Codec
from .codecs.raw import INLINE_LIMIT
from .errors import DeserializationError, SerializationError
from .registry import Rejection, type_name

__all__ = ["decode_skeleton", "encode_skeleton", "find_path"]

_SCALARS = (str, int, bool, type(None))
_NAN = struct.pack(">d", float("nan"))  # the NaN that {"$float": "nan"} reads back as
JSON_DEPTH = 96  # a JSON skeleton nests at most this deep (manifests are capped at 128)


class _NeedsPickle(Exception):
    pass


def encode_skeleton(obj: Any, writer: BundleWriter, root: str = "value") -> dict[str, Any]:
    """Encode ``obj``'s structure, writing typed parts to ``writer``; return the skeleton record."""
    try:
        return {"kind": "json", "value": _JsonEncoder(writer, obj, root).encode(obj)}
    except _NeedsPickle:
        pass
    buf = io.BytesIO()
    pickler = _make_pickler(buf, writer, obj, root)
    try:
        pickler.dump(obj)
    except SerializationError:
        raise
    except RecursionError:
        raise SerializationError(f"{root} is nested too deeply to serialize") from None
    except Exception as exc:
        raise _pickling_error(obj, root, exc) from exc
    return writer.write_skeleton_file(buf.getbuffer())  # type: ignore[arg-type]


class _JsonEncoder:
    def __init__(self, writer: BundleWriter, root_obj: Any, root: str) -> None:
        self.writer = writer
        self.lookup = writer.registry.lookup
        self.root_obj = root_obj
        self.root = root

    def encode(self, obj: Any, stack: tuple[int, ...] = ()) -> Any:
        tp = type(obj)
        if tp in _SCALARS:
            return obj
        if len(stack) >= JSON_DEPTH:
            raise _NeedsPickle  # deeper structures take the pickle skeleton
        if tp is float:
            if math.isfinite(obj):
                return obj
            if obj != obj and struct.pack(">d", obj) != _NAN:
                return {"$float": "nan:" + struct.pack(">d", obj).hex()}  # its sign, payload
            return {"$float": repr(obj)}
        if tp is list or tp is tuple or tp is dict or tp is set or tp is frozenset:
            if id(obj) in stack:
                raise _NeedsPickle  # a cycle: pickle keeps it
            stack = (*stack, id(obj))
            enc = self.encode
            if tp is list:
                return [enc(v, stack) for v in obj]
            if tp is tuple:
                return {"$tuple": [enc(v, stack) for v in obj]}
            if tp is dict:
                if all(type(k) is str and not k.startswith("$") for k in obj):
                    return {k: enc(v, stack) for k, v in obj.items()}
                return {"$dict": [[enc(k, stack), enc(v, stack)] for k, v in obj.items()]}
            return {("$set" if tp is set else "$frozenset"): [enc(v, stack) for v in obj]}
        if tp is OrderedDict:
            extra = vars(obj) if hasattr(obj, "__dict__") else {}
            if set(extra) - {"_metadata"} or id(obj) in stack:
                raise _NeedsPickle
            stack = (*stack, id(obj))
            record: dict[str, Any] = {
                "items": [[self.encode(k, stack), self.encode(v, stack)] for k, v in obj.items()]
            }
            if "_metadata" in extra:  # torch state dicts carry their modules' versions here
                record["metadata"] = self.encode(extra["_metadata"], stack)
            return {"$odict": record}
        if tp is complex:
            return {"$complex": [self.encode(obj.real), self.encode(obj.imag)]}
        if (tp is bytes or tp is bytearray) and len(obj) <= INLINE_LIMIT:
            return {"$" + tp.__name__: base64.b64encode(obj).decode("ascii")}
        found = self.lookup(obj)
        if isinstance(found, Rejection):
            raise _rejected(found, obj, find_path(self.root_obj, obj, self.root))
        if isinstance(found, Codec) and found.can_encode(obj):
            return {
                "$part": self.writer.add_part(
                    obj, found, lambda: find_path(self.root_obj, obj, self.root)
                )
            }
        raise _NeedsPickle


_pickler_class: type | None = None


def _make_pickler(file: io.BytesIO, writer: BundleWriter, root_obj: Any, root: str) -> Any:
    """A cloudpickle Pickler whose typed leaves become parts (cloudpickle is imported only
    when a value needs the pickle skeleton)."""
    global _pickler_class
    if _pickler_class is None:
        import cloudpickle

        class _Pickler(cloudpickle.CloudPickler):  # type: ignore[misc]
            def __init__(
                self, file: io.BytesIO, writer: BundleWriter, root_obj: Any, root: str
            ) -> None:
                super().__init__(file, protocol=5)
                self._writer = writer
                self._lookup = writer.registry.lookup
                self._root_obj = root_obj
                self._root = root

            def persistent_id(self, obj: Any) -> int | None:
                tp = type(obj)
                if tp in _SCALARS or tp is float or tp is list or tp is tuple or tp is dict:
                    return None
                found = self._lookup(obj)
                if found is None:
                    return None
                if isinstance(found, Rejection):
                    raise _rejected(found, obj, find_path(self._root_obj, obj, self._root))
                if found.can_encode(obj):
                    return self._writer.add_part(
                        obj, found, lambda: find_path(self._root_obj, obj, self._root)
                    )
                return None

        _pickler_class = _Pickler
    return _pickler_class(file, writer, root_obj, root)


def _rejected(rejection: Rejection, obj: Any, path: str) -> SerializationError:
    return SerializationError(
        f"{path} is a {type_name(type(obj))}, which cannot be sent: {rejection.hint}"
    )


def _pickling_error(root_obj: Any, root: str, exc: Exception) -> SerializationError:
    culprit = _find_unpicklable(root_obj, root)
    where = f"{culprit[0]} ({type_name(type(culprit[1]))})" if culprit else root
    return SerializationError(
        f"{where} cannot be serialized: {type(exc).__name__}: {exc}. Pass plain data (or a path) "
        "instead, create the object inside the function, or register a codec for its type "
        "(remote_codecs.register)."
    )


# -- finding where an object sits, for error messages ---------------------------------------


def _children(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    tp = type(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"{path}[{k!r}]", v
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield f"{path}[{i}]", v
    elif isinstance(obj, (set, frozenset)):
        for v in obj:
            yield f"{path}.<item>", v
    elif tp.__module__ != "builtins":
        state = getattr(obj, "__dict__", None)
        if isinstance(state, dict):
            for k, v in state.items():
                yield f"{path}.{k}", v
        for slot in getattr(tp, "__slots__", ()):
            if isinstance(slot, str) and hasattr(obj, slot):
                yield f"{path}.{slot}", getattr(obj, slot)


def find_path(root_obj: Any, target: Any, root: str = "value", limit: int = 100_000) -> str:
    """The path of ``target`` inside ``root_obj`` (breadth first), or ``root`` if not found."""
    if root_obj is target:
        return root
    seen = {id(root_obj)}
    queue: deque[tuple[str, Any]] = deque([(root, root_obj)])
    while queue and limit > 0:
        path, obj = queue.popleft()
        for child_path, child in _children(obj, path):
            limit -= 1
            if child is target:
                return child_path
            if id(child) not in seen and not isinstance(child, (str, bytes, int, float)):
                seen.add(id(child))
                queue.append((child_path, child))
    return f"an object inside {root}"


def _find_unpicklable(obj: Any, path: str, depth: int = 0) -> tuple[str, Any] | None:
    """The deepest sub-object that cloudpickle refuses, for the error message."""
    import cloudpickle

    if depth > 20:
        return None
    for child_path, child in _children(obj, path):
        try:
            cloudpickle.dumps(child)
        except Exception:
            return _find_unpicklable(child, child_path, depth + 1) or (child_path, child)
    return None


# -- decoding ----------------------------------------------------------------------------------


def decode_skeleton(reader: BundleReader) -> Any:
    sk = reader.manifest.raw["skeleton"]
    if sk["kind"] == "json":
        try:
            return _decode_json(sk["value"], reader)
        except DeserializationError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError) as exc:
            # binascii.Error is a ValueError; an unhashable key a TypeError
            raise DeserializationError(
                f"{reader.source.description}: the skeleton is malformed "
                f"({type(exc).__name__}: {str(exc)[:200]}); the bundle is corrupted or was "
                "tampered with"
            ) from None
    data = reader.skeleton_bytes()  # verified before anything is unpickled
    try:
        return _Unpickler(io.BytesIO(data), reader).load()
    except DeserializationError:
        raise
    except Exception as exc:
        raise DeserializationError(
            f"{reader.source.description}: the pickled skeleton could not be loaded: "
            f"{type(exc).__name__}: {exc} (is a module or class it needs missing here?)"
        ) from exc


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, reader: BundleReader) -> None:
        super().__init__(file)
        self._reader = reader

    def persistent_load(self, pid: Any) -> Any:
        return self._reader.part(pid)


def _decode_json(node: Any, reader: BundleReader) -> Any:
    tp = type(node)
    if tp is list:
        return [_decode_json(v, reader) for v in node]
    if tp is not dict:
        return node
    if len(node) == 1:
        ((tag, value),) = node.items()
        if tag.startswith("$"):
            return _decode_tag(tag, value, reader)
    return {k: _decode_json(v, reader) for k, v in node.items()}


_LIST_TAGS = frozenset({"$tuple", "$dict", "$set", "$frozenset", "$complex"})


def _decode_tag(tag: str, value: Any, reader: BundleReader) -> Any:
    if tag == "$part":
        return reader.part(value)
    if tag in _LIST_TAGS and type(value) is not list:
        raise TypeError(f"{tag} holds a {type(value).__name__}, not a list")
    if tag == "$tuple":
        return tuple(_decode_json(v, reader) for v in value)
    if tag == "$dict":
        return {_decode_json(k, reader): _decode_json(v, reader) for k, v in value}
    if tag == "$set":
        return {_decode_json(v, reader) for v in value}
    if tag == "$frozenset":
        return frozenset(_decode_json(v, reader) for v in value)
    if tag == "$float":
        if type(value) is str and len(value) == 20 and value.startswith("nan:"):
            raw = bytes.fromhex(value[4:])
            bits = float(struct.unpack(">d", raw)[0]) if len(raw) == 8 else 0.0
            if bits == bits:
                raise ValueError(f"$float holds {value!r}, which is no NaN")
            return bits
        if value not in ("nan", "inf", "-inf"):
            raise ValueError(f"$float holds {str(value)[:20]!r}")
        return float(value)
    if tag == "$odict":
        if type(value) is not dict or type(value.get("items")) is not list:
            raise TypeError("$odict holds no item list")
        out: OrderedDict[Any, Any] = OrderedDict(
            (_decode_json(k, reader), _decode_json(v, reader)) for k, v in value["items"]
        )
        if "metadata" in value:
            out._metadata = _decode_json(value["metadata"], reader)  # type: ignore[attr-defined]
        return out
    if tag == "$complex":
        real, imag = (_decode_json(v, reader) for v in value)
        if type(real) is not float or type(imag) is not float:
            raise TypeError("$complex holds no pair of floats")
        return complex(real, imag)
    if tag == "$bytes":
        return base64.b64decode(value, validate=True)
    if tag == "$bytearray":
        return bytearray(base64.b64decode(value, validate=True))
    raise DeserializationError(f"{reader.source.description}: unknown skeleton tag {tag!r}")
