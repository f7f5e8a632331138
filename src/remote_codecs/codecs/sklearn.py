"""scikit-learn estimators and pipelines through skops (deflate-compressed): no pickle.

Trust comes from the loader, never from the artifact: a part loads only if every type
it names is one of skops' own default trusted types, or is named by the loader's
``load(..., trusted=[...])``. Nothing is added by name prefix. Types that scikit-learn
itself puts in fitted models but that skops deliberately leaves untrusted (a crafted
``sklearn.tree._tree.Tree`` or ``TreePredictor`` is read without bounds checks) are listed
in :data:`SCIKIT_LEARN_INTERNAL_TYPES`: pass them as ``trusted=`` for bundles whose
producer you trust, e.g. one verified with your key (the runtime does this for the
bundles of its own jobs, whose signature it verified). The one exception is the
``functools.partial(sklearn.utils.validation.check_array, ...)`` that
``HistGradientBoosting*(categorical_features="from_dtype")`` stores: accepted when the
schema shows exactly that shape (a partial of that validation function, no positional
arguments), because the loader cannot name it otherwise without trusting every partial.

Where skops cannot represent an estimator, or represents it with a function it could not
find again on load (a lambda, a local function, a function of ``__main__``), the part is
pickled (the manifest marks it, and ``allow_pickle=False`` refuses it).

Versions (``version_policy = "same"``, applied by the loader before ``decode`` runs):
scikit-learn does not promise that a fitted estimator computes the same results in
another version (a RandomForest pipeline from 1.3.2 returns probabilities above 1 under
1.9.1), so a part written by another version is refused naming both versions, unless the
loader passes ``allow_version_mismatch=True`` (loads with a warning) or ``"verify"``:
then the loader tells ``decode`` (``reader.version_mismatch``), which recomputes the
estimator's outputs on a deterministic probe input, recorded at save; they must match.
"""

from __future__ import annotations

import io
import json
import sys
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any, ClassVar

from ..codec import Codec, PartReader, PartWriter
from ..errors import DeserializationError
from . import fingerprint

__all__ = ["SCIKIT_LEARN_INTERNAL_TYPES", "EstimatorCodec"]

_DISTANCES = (
    "BrayCurtis",
    "Canberra",
    "Chebyshev",
    "Dice",
    "Euclidean",
    "Hamming",
    "Haversine",
    "Jaccard",
    "Kulsinski",
    "Mahalanobis",
    "Manhattan",
    "Matching",
    "Minkowski",
    "RogersTanimoto",
    "RussellRao",
    "SEuclidean",
    "SokalMichener",
    "SokalSneath",
)

# scikit-learn's own internal types that fitted estimators hold and that skops does not
# trust by default because it cannot check their content. Safe to trust for a bundle
# whose producer is trusted (a signature verified with your key); never for a stranger's.
SCIKIT_LEARN_INTERNAL_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.utils._bunch.Bunch",
    *(
        f"sklearn.metrics._dist_metrics.{name}Distance{bits}"
        for name in _DISTANCES
        for bits in ("64", "32")
    ),
)

# What `HistGradientBoosting*(categorical_features="from_dtype")` stores.
_PARTIAL = "functools.partial"
_CHECK_ARRAY = "sklearn.utils.validation.check_array"

# `import skops.io` lists every scikit-learn estimator (sklearn.utils.all_estimators),
# which walks every sub-package of scikit-learn, including the array-API adapters for
# other array libraries: importing those imports torch (2.4 s), dask, cupy. They hold no
# estimator; they are blocked while skops.io is imported (an ImportError that the walk
# skips), then unblocked.
_UNRELATED = (
    "sklearn.externals.array_api_compat.torch",
    "sklearn.externals.array_api_compat.dask",
    "sklearn.externals.array_api_compat.cupy",
)


def _skops_io() -> Any:
    """``skops.io``, imported without the unrelated array libraries."""
    module = sys.modules.get("skops.io")
    if module is not None:
        return module
    blocked = [name for name in _UNRELATED if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import skops.io as sio
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return sio


def _resolvable(type_name: str) -> bool:
    """Whether a type or function named by skops can be found again by name elsewhere:
    a module already imported here (not ``__main__``) holding it under that qualname."""
    if "<" in type_name:  # <lambda>, <locals>
        return False
    parts = type_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        module = sys.modules.get(module_name)
        if module is None:
            continue
        if module_name == "__main__":
            return False
        obj: Any = module
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return False
        return True
    return False


def _unfindable_functions(estimator: Any) -> list[str]:
    """Functions among the hyper-parameters (``FunctionTransformer(func=...)``,
    ``SelectKBest(score_func=...)`` ...) that skops would store as ``module.name`` but that
    cannot be found again by that name: lambdas, local functions, functions of ``__main__``
    (a local function named like a module-level one would silently come back as the other)."""
    import functools
    import types

    try:
        params = estimator.get_params(deep=True)
    except Exception:
        return []
    lost = []
    for value in params.values():
        while isinstance(value, functools.partial):
            value = value.func
        if isinstance(value, types.FunctionType) and (
            value.__qualname__ != value.__name__ or value.__module__ == "__main__"
        ):
            lost.append(f"{value.__module__}.{value.__qualname__}")
    return lost


def _loader_trusted(options: Mapping[str, Any]) -> set[str]:
    trusted = options.get("trusted") or ()
    if isinstance(trusted, str):
        trusted = (trusted,)
    names = set()
    for item in trusted:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, type):
            names.add(f"{item.__module__}.{item.__qualname__}")
        else:
            raise DeserializationError(f"trusted= must name types as strings, got {item!r}")
    return names


def _schema(data: bytes) -> Any:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read("schema.json"))


def _schema_types(schema: Any) -> set[str]:
    """Every ``module.class`` that a skops schema names."""
    names: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
            module, cls = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(cls, str):
                names.add(f"{module}.{cls}")
    return names


def _only_known_partials(data: bytes) -> bool:
    """Whether every ``functools.partial`` in the skops schema is
    ``partial(sklearn.utils.validation.check_array, **kwds)``, and ``check_array`` appears
    nowhere else: what scikit-learn's HistGradientBoosting stores."""
    schema = _schema(data)
    partial_funcs: set[int] = set()
    check_arrays: list[int] = []
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        name = f"{node.get('__module__')}.{node.get('__class__')}"
        if name == _CHECK_ARRAY:
            check_arrays.append(id(node))
        if name != _PARTIAL:
            continue
        content = node.get("content")
        if node.get("__loader__") != "PartialNode" or not isinstance(content, dict):
            return False
        func, args, kwds = content.get("func"), content.get("args"), content.get("kwds")
        if not (
            isinstance(func, dict)
            and f"{func.get('__module__')}.{func.get('__class__')}" == _CHECK_ARRAY
            and func.get("__loader__") == "FunctionNode"
            and isinstance(args, dict)
            and args.get("__loader__") == "TupleNode"
            and args.get("content") == []
            and isinstance(kwds, dict)
            and kwds.get("__loader__") == "DictNode"
        ):
            return False
        partial_funcs.add(id(func))
    return all(node in partial_funcs for node in check_arrays)


# -- fingerprints ------------------------------------------------------------------------


def _method(estimator: Any) -> str | None:
    for name in ("predict_proba", "decision_function", "predict", "transform"):
        if hasattr(estimator, name):
            return name
    return None


def _outputs(estimator: Any, record: Mapping[str, Any]) -> Any:
    import numpy as np

    method, kind, n_features = record.get("method"), record.get("probe"), record.get("features")
    if method not in ("predict_proba", "decision_function", "predict", "transform"):
        raise DeserializationError(f"fingerprint names an unknown method {method!r}")
    if kind not in ("signed", "nonneg"):
        raise DeserializationError(f"fingerprint names an unknown probe {kind!r}")
    if not isinstance(n_features, int) or not 0 < n_features <= 1 << 20:
        raise DeserializationError(f"fingerprint names an invalid feature count {n_features!r}")
    x: Any = fingerprint.probe(n_features, kind)
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        import pandas as pd

        x = pd.DataFrame(x, columns=list(names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = getattr(estimator, method)(x)
    if hasattr(out, "toarray"):
        out = out.toarray()
    return np.asarray(out)


def _estimator_fingerprint(estimator: Any) -> dict[str, Any]:
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, int) or n_features <= 0:
        return fingerprint.none(
            "it has no n_features_in_ (not fitted, or it takes no fixed-width numeric input)"
        )
    method = _method(estimator)
    if method is None:
        return fingerprint.none("it has no predict_proba, decision_function, predict or transform")
    failure = ""
    for kind in ("signed", "nonneg"):
        record: dict[str, Any] = {"method": method, "probe": kind, "features": n_features}
        try:
            outputs = _outputs(estimator, record)
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
            continue
        if outputs.size > fingerprint.MAX_VALUES:
            return fingerprint.none(f"its outputs on the probe are too large ({outputs.size})")
        if outputs.dtype.kind not in "biufUSO":
            return fingerprint.none(f"{method} returns {outputs.dtype} values")
        record.update(fingerprint.encode_values(outputs))
        return record
    return fingerprint.none(
        f"{method} fails on a numeric probe input (categorical or other non-numeric input?): "
        + failure
    )


class EstimatorCodec(Codec):
    """``sklearn.base.BaseEstimator`` (estimators, pipelines, transformers) via skops."""

    id = "sklearn.BaseEstimator/skops"
    version = 1
    types = ("sklearn.base.BaseEstimator",)
    library = "scikit-learn"
    version_policy: ClassVar[str] = "same"
    verifies: ClassVar[bool] = True  # outputs on a recorded probe (fingerprint.py)

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        import sklearn

        meta: dict[str, Any] = {
            "sklearn_version": sklearn.__version__,
            "class": type(obj).__qualname__,
        }
        why_pickle = None
        try:
            sio = _skops_io()
            data = sio.dumps(obj, compression=zipfile.ZIP_DEFLATED)
            lost = _unfindable_functions(obj)
            lost += [t for t in sio.get_untrusted_types(data=data) if not _resolvable(t)]
            if lost:
                why_pickle = (
                    "skops stores these by name, and they cannot be found by name on load: "
                    + ", ".join(dict.fromkeys(lost))
                )
        except Exception as exc:  # skops cannot represent it: pickle is the last resort
            why_pickle = f"{type(exc).__name__}: {exc}"
        if why_pickle is None:
            writer.write(".skops", data)
            meta["format"] = "skops"
            meta["skops_version"] = _skops_version()
        else:
            writer.pickle(".pkl", obj)
            meta["format"] = "pickle"
            meta["why_pickle"] = why_pickle[:500]
        meta["fingerprint"] = _estimator_fingerprint(obj)
        return meta

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        import sklearn

        what = str(meta.get("class", "estimator"))[:100]
        # the writer's version, to name it: whether it may be read was decided by the
        # loader (version_policy "same"), which says whether to verify the fingerprint
        written = getattr(reader, "written_version", None)
        if written is None:
            recorded = meta.get("sklearn_version")
            written = recorded if isinstance(recorded, str) else None
        must_verify = getattr(reader, "version_mismatch", None) == "verify"
        if must_verify:  # refuse before building anything when there is nothing to verify
            fingerprint.require(
                meta.get("fingerprint"),
                library="scikit-learn",
                written=written,
                current=sklearn.__version__,
                what=what,
            )
        trusted = _loader_trusted(reader.options)
        if meta.get("format") == "pickle":
            model = reader.unpickle(".pkl")
        elif meta.get("format") == "skops":
            model = self._load_skops(reader.read(".skops"), trusted)
        else:
            raise DeserializationError(f"unknown scikit-learn part format {meta.get('format')!r}")
        if must_verify:
            fingerprint.verify(
                meta.get("fingerprint"),
                lambda record: _outputs(model, record),
                library="scikit-learn",
                written=written,
                current=sklearn.__version__,
                what=what,
            )
        return model

    @staticmethod
    def _load_skops(data: bytes, trusted: set[str]) -> Any:
        sio = _skops_io()
        found = set(sio.get_untrusted_types(data=data))  # builds the tree: imports nothing
        # scikit-learn's internal types need the loader's trust whatever this skops trusts
        # by default (skops before 0.10 trusts a Tree, whose arrays are read unchecked)
        found |= _schema_types(_schema(data)) & set(SCIKIT_LEARN_INTERNAL_TYPES)
        allowed = found & trusted
        if _PARTIAL in found - allowed and _only_known_partials(data):
            allowed |= found & {_PARTIAL, _CHECK_ARRAY}
        untrusted = sorted(found - allowed)
        if untrusted:
            internal = [t for t in untrusted if t in SCIKIT_LEARN_INTERNAL_TYPES]
            hint = (
                " (scikit-learn's own internal types, which skops does not trust from a "
                "stranger: a crafted one is read without bounds checks; if the bundle's "
                "producer is trusted, e.g. it was verified with your key, pass "
                "trusted=remote_codecs.codecs.sklearn.SCIKIT_LEARN_INTERNAL_TYPES)"
                if internal
                else ""
            )
            raise DeserializationError(
                f"the estimator contains types that are not trusted: {', '.join(untrusted)}{hint}. "
                "If you trust them, pass trusted=[...] with these names to load()"
            )
        return sio.loads(data, trusted=sorted(allowed))


def _skops_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("skops")
    except Exception:
        return None
