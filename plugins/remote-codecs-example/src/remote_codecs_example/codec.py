"""A codec for ``Histogram``, written as the tutorial a new codec author would copy.

A codec turns one object into one *part* of a bundle: a few files (each named by a
suffix) plus a small JSON ``meta`` dict that the manifest keeps. remote_codecs hashes
every file, signs the manifest when given a key, and verifies all of it before calling
``decode``: a codec only reads and writes bytes.

Read it top to bottom; every rule of the contract shows up once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from remote_codecs import Codec, PartReader, PartWriter, Prefixed
from remote_codecs.codecs.numpy import NDArrayCodec

from .histogram import Histogram


class HistogramCodec(Codec):
    # 1. A stable id, "<type>/<format>". It is written in every manifest and decoding
    #    looks the codec up by it: never change it once artifacts exist.
    id = "example.Histogram/npy"

    # 2. The format version this code *writes*. Bump it when the stored layout changes,
    #    and keep decoding every older version (see ``decode``). Version 1 stored the
    #    counts as a JSON list in ``meta``; version 2 stores them as an .npy file.
    version = 2

    # 3. The types handled, by qualified name ("module.QualName"). The registry matches
    #    them along the MRO, so subclasses are handled too, and nothing is imported until
    #    an object of such a type shows up.
    types = ("remote_codecs_example.histogram.Histogram",)

    # 4. The distribution whose version the manifest records next to the data.
    library = "remote-codecs-example"
    #    The loader applies ``version_policy`` from the manifest before ``decode`` runs,
    #    and is the only place that does: ``decode`` never compares versions itself (a
    #    ``verifies = True`` codec checks recorded behaviour when
    #    ``reader.version_mismatch == "verify"``).
    version_policy = "stable"  # numpy arrays as .npy: readable under any version

    # 5. Safe mode: this codec never unpickles, so bundles of histograms load with
    #    allow_pickle=False. (A codec that must pickle sets ``needs_pickle = True``, or
    #    uses ``writer.pickle(...)`` for the odd object, which marks the part.)
    needs_pickle = False

    def can_encode(self, obj: Any) -> bool:
        # 6. Optional: decline an object of a handled type (it is then pickled instead).
        return obj.edges.dtype != object and obj.counts.dtype != object

    def encode(self, obj: Histogram, writer: PartWriter) -> dict[str, Any]:
        # 7. Write files through ``writer``: ``write(suffix, bytes)`` for a whole buffer,
        #    ``open(suffix)`` to stream. To store arrays, reuse the numpy codec under a
        #    prefix of your own: it writes standard .npy files straight from memory.
        numpy_codec = NDArrayCodec()
        edges = numpy_codec.encode(np.ascontiguousarray(obj.edges), Prefixed(writer, ".edges"))
        counts = numpy_codec.encode(np.ascontiguousarray(obj.counts), Prefixed(writer, ".counts"))
        # 8. Return what decoding needs as plain JSON (it lands in the manifest, signed).
        return {"label": obj.label, "meta": dict(obj.meta), "edges": edges, "counts": counts}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Histogram:
        # 9. ``version`` is the format version the part was *written* with: read each.
        numpy_codec = NDArrayCodec()
        edges = numpy_codec.decode(Prefixed(reader, ".edges"), meta["edges"], 1)
        if version == 1:
            counts = np.asarray(meta["counts"], dtype=np.int64)
        else:
            counts = numpy_codec.decode(Prefixed(reader, ".counts"), meta["counts"], 1)
        return Histogram(
            edges=edges, counts=counts, label=meta.get("label", ""), meta=dict(meta.get("meta", {}))
        )
