"""scikit-learn estimators and pipelines through skops: no pickle, and the types an
artifact may contain are trusted by the loader (``load(..., trusted=[...])``), never by
the artifact. Where skops cannot represent an estimator, it is pickled (the manifest
marks the part, and ``allow_pickle=False`` refuses it).

The manifest records the scikit-learn version. An estimator written by another version
is refused, naming both versions, unless the loader passes
``allow_version_mismatch=True`` (then it loads with a warning): scikit-learn does not
promise that a fitted estimator computes the same results across versions (a
RandomForest pipeline pickled under 1.3.2 loads under 1.9.1 with only a warning and
returns probabilities off by up to 55), and a silent wrong answer is worse than a refusal.
"""

from __future__ import annotations

import warnings
from typing import Any

import sklearn

from ..codec import Codec, PartReader, PartWriter
from ..errors import DeserializationError

# The loader's policy (this code, never the artifact): types defined by the libraries this
# codec is for are trusted; any other type (a user's function or class) must be named by
# the caller in load(..., trusted=[...]).
TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.")


class EstimatorCodec(Codec):
    """``sklearn.base.BaseEstimator`` (estimators, pipelines, transformers) via skops."""

    id = "sklearn.BaseEstimator/skops"
    version = 1
    types = ("sklearn.base.BaseEstimator",)
    library = "scikit-learn"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "sklearn_version": sklearn.__version__,
            "class": type(obj).__qualname__,
        }
        try:
            import skops.io as sio

            data = sio.dumps(obj)
        except Exception as exc:  # skops cannot represent it: pickle is the last resort
            writer.pickle(".pkl", obj)
            meta["format"] = "pickle"
            meta["why_pickle"] = f"{type(exc).__name__}: {exc}"[:500]
            return meta
        writer.write(".skops", data)
        meta["format"] = "skops"
        meta["skops_version"] = sio.__version__ if hasattr(sio, "__version__") else None
        return meta

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        written = meta.get("sklearn_version")
        if written != sklearn.__version__:
            message = (
                f"this {meta.get('class', 'estimator')} was written by scikit-learn {written}, and this is "
                f"scikit-learn {sklearn.__version__}: a fitted estimator may compute different results "
                "across versions"
            )
            if not reader.options.get("allow_version_mismatch"):
                raise DeserializationError(
                    f"{message}. Refit it under scikit-learn {sklearn.__version__}, install scikit-learn "
                    f"{written} to load it, or pass allow_version_mismatch=True to load it anyway."
                )
            warnings.warn(
                message + "; loading anyway (allow_version_mismatch=True)",
                UserWarning,
                stacklevel=2,
            )
        if meta.get("format") == "pickle":
            return reader.unpickle(".pkl")
        import skops.io as sio

        data = reader.read(".skops")
        trusted = set(reader.options.get("trusted") or [])
        found = sio.get_untrusted_types(data=data)
        untrusted = [t for t in found if t not in trusted and not t.startswith(TRUSTED_MODULES)]
        if untrusted:
            raise DeserializationError(
                f"the estimator contains types that are not trusted: {', '.join(untrusted)}. If you trust "
                "them, pass trusted=[...] with these names to load()"
            )
        return sio.loads(data, trusted=list(found))
