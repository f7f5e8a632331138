"""remote_codecs: any Python value as a portable, typed, verifiable bundle.

    >>> import remote_codecs as rc
    >>> data = rc.dumps({"lr": 0.1, "tags": ("a", "b")})
    >>> rc.loads(data, allow_pickle=False)
    {'lr': 0.1, 'tags': ('a', 'b')}

Typed values (numpy arrays, DataFrames, tensors, models ...) become parts stored in
portable formats; cloudpickle is only the glue for objects no codec handles.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import default_registry, dumps, inspect, load, loads, register, reject, save
from .bundle import FORMAT_VERSION, Manifest, PartInfo
from .codec import Codec, PartReader, PartWriter, Prefixed
from .errors import CodecError, DeserializationError, IntegrityError, SerializationError
from .registry import Registry, Rejection, type_name

__all__ = [
    "FORMAT_VERSION",
    "Codec",
    "CodecError",
    "DeserializationError",
    "IntegrityError",
    "Manifest",
    "PartInfo",
    "PartReader",
    "PartWriter",
    "Prefixed",
    "Registry",
    "Rejection",
    "SerializationError",
    "default_registry",
    "dumps",
    "inspect",
    "load",
    "loads",
    "register",
    "reject",
    "save",
    "type_name",
]
