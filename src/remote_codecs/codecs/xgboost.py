"""xgboost ``Booster`` as UBJSON plus its training configuration, and the scikit-learn
wrappers (``XGBClassifier``, ``XGBRegressor``, ``XGBRanker`` ...) as class name +
``get_params()`` + model + ``evals_result()``. No pickle unless a hyper-parameter is a
Python object (a callback, a custom metric).

UBJSON is xgboost's own portable model format: it loads in later xgboost versions and on
any device. It does not hold the training configuration (``max_depth``, ``eta``, seed,
metrics ...), so that is stored beside it (``save_config``) and restored
(``load_config``): training continued from a loaded booster grows the same trees as from
the original. (Row/column sampling draws from xgboost's process-wide random generator,
whose state no xgboost format keeps.)

Safety: the wrapper class is named in the part's meta, so only the classes on
:data:`WRAPPER_CLASSES` are ever resolved, and only after the name is checked; the
hyper-parameters must be plain JSON values. ``DMatrix`` is refused (see
``codecs/__init__.py``): pass the data instead.

Versions (``version_policy = "no-newer"``, applied by the loader before ``decode`` runs):
a model written by an older xgboost loads; one written by a newer xgboost is refused
naming both versions (xgboost 2.1 reads a 3.2 model and predicts different
probabilities), unless the loader passes ``allow_version_mismatch=True`` (a warning) or
``"verify"``: then the loader tells ``decode`` (``reader.version_mismatch``), which
recomputes the model's outputs on a probe input recorded at save; they must match. The
codec reads the writer's version only to name it, and to warn rather than fail when a
training configuration written by another xgboost cannot be restored.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from typing import Any, ClassVar

import xgboost as xgb

from ..codec import Codec, PartReader, PartWriter
from ..errors import DeserializationError
from . import fingerprint

__all__ = ["WRAPPER_CLASSES", "BoosterCodec", "SklearnModelCodec"]

# The loader's policy: the only classes a part may name ("module:QualName" as written by
# encode). Checked before anything is imported or resolved.
WRAPPER_CLASSES: frozenset[str] = frozenset(
    f"xgboost.sklearn:{name}"
    for name in (
        "XGBModel",
        "XGBClassifier",
        "XGBRegressor",
        "XGBRanker",
        "XGBRFClassifier",
        "XGBRFRegressor",
    )
)

_MAX_JSON_DEPTH = 32


def _check_plain(value: Any, where: str, depth: int = 0) -> None:
    """Refuse anything but plain JSON values (``{"$float": "nan"|"inf"|"-inf"}`` allowed)."""
    if depth > _MAX_JSON_DEPTH:
        raise DeserializationError(f"{where} is nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        if set(value) == {"$float"}:
            if value["$float"] not in ("nan", "inf", "-inf"):
                raise DeserializationError(f"{where} is not a float: {value['$float']!r}")
            return
        for key, item in value.items():
            if not isinstance(key, str):
                raise DeserializationError(f"{where} has a key that is not a string")
            _check_plain(item, f"{where}[{key!r}]", depth + 1)
        return
    raise DeserializationError(f"{where} is not a plain JSON value: {type(value).__name__}")


def _to_json(value: Any) -> Any:
    """Floats that JSON cannot hold become ``{"$float": ...}`` (nested too)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(float(value))}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$float"}:
            return float(value["$float"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _json_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split hyper-parameters into JSON ones (nan/inf tagged) and the rest (pickled)."""
    plain, other = {}, {}
    for name, value in params.items():
        try:
            tagged = _to_json(value)
            json.dumps(tagged, allow_nan=False)
            plain[name] = tagged
        except (TypeError, ValueError):
            other[name] = value
    return plain, other


# -- fingerprints ------------------------------------------------------------------------


def _booster_fingerprint(booster: Any) -> dict[str, Any]:
    """Margins of ``booster`` on the probe input, or the reason there are none."""
    try:
        n_features = int(booster.num_features())
    except xgb.core.XGBoostError as exc:
        return fingerprint.none(f"the booster has no model ({exc})")
    if n_features <= 0:
        return fingerprint.none("the booster has no features (not trained)")
    types = booster.feature_types or []
    if any(t == "c" for t in types):
        return fingerprint.none("it has categorical features: a numeric probe cannot be built")
    record: dict[str, Any] = {"probe": "missing", "features": n_features}
    try:
        outputs = _booster_outputs(booster, record)
    except Exception as exc:
        return fingerprint.none(f"predicting on the probe failed: {type(exc).__name__}: {exc}")
    if outputs.size > fingerprint.MAX_VALUES:
        return fingerprint.none(f"its outputs on the probe are too large ({outputs.size} values)")
    record.update(fingerprint.encode_values(outputs))
    return record


def _booster_outputs(booster: Any, record: Mapping[str, Any]) -> Any:
    n_features = record.get("features")
    if not isinstance(n_features, int) or not 0 < n_features <= 1 << 20:
        raise DeserializationError(f"fingerprint names an invalid feature count {n_features!r}")
    if n_features != booster.num_features():
        raise DeserializationError(
            f"the model has {booster.num_features()} features, its fingerprint {n_features}"
        )
    x = fingerprint.probe(n_features, str(record.get("probe", "missing")))
    dmatrix = xgb.DMatrix(
        x, feature_names=booster.feature_names, feature_types=booster.feature_types
    )
    return booster.predict(dmatrix, output_margin=True)


def _loaded_version(reader: PartReader, meta: Mapping[str, Any]) -> str | None:
    """The xgboost version that wrote the part (the manifest's, else the part's own record):
    for messages and for choosing how to decode, never to refuse it (the loader did that)."""
    written = getattr(reader, "written_version", None)
    if written is None:
        recorded = meta.get("xgboost_version")
        written = recorded if isinstance(recorded, str) else None
    return written


def _version_gate(
    reader: PartReader, meta: Mapping[str, Any], what: str
) -> tuple[bool, str | None]:
    """Whether the loader asked this codec to verify the part's fingerprint (its
    ``version_policy`` refused the writer's xgboost version, and the loader passed
    ``allow_version_mismatch="verify"``), and the writer's version. When it must verify,
    a part without a fingerprint is refused before anything is built."""
    written = _loaded_version(reader, meta)
    must_verify = getattr(reader, "version_mismatch", None) == "verify"
    if must_verify:
        fingerprint.require(
            meta.get("fingerprint"),
            library="xgboost",
            written=written,
            current=xgb.__version__,
            what=what,
        )
    return must_verify, written


def _restore_config(booster: Any, config: bytes, written: str | None) -> None:
    """``load_config`` with a config written by ``encode`` (JSON object checked first)."""
    text = config.decode("utf-8")
    if not isinstance(json.loads(text), dict):
        raise DeserializationError("the booster's training configuration is not a JSON object")
    try:
        booster.load_config(text)
    except xgb.core.XGBoostError as exc:
        if written is None or written == xgb.__version__:
            raise
        import warnings

        warnings.warn(
            f"the training configuration written by xgboost {written} could not be restored "
            f"under xgboost {xgb.__version__} ({exc}); the model itself is loaded, but training "
            "continued from it uses xgboost's defaults where you do not pass parameters",
            UserWarning,
            stacklevel=5,
        )


class BoosterCodec(Codec):
    """``xgboost.Booster`` through ``save_raw("ubj")`` and ``save_config()``."""

    id = "xgboost.Booster/ubj"
    version = 2  # v2: + training configuration, xgboost version, fingerprint
    types = ("xgboost.core.Booster",)
    library = "xgboost"
    version_policy: ClassVar[str] = "no-newer"
    verifies: ClassVar[bool] = True

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        writer.write(".ubj", obj.save_raw("ubj"))
        writer.write(".config.json", obj.save_config().encode("utf-8"))
        return {"xgboost_version": xgb.__version__, "fingerprint": _booster_fingerprint(obj)}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        meta = meta or {}
        must_verify, written = _version_gate(reader, meta, "xgboost Booster")
        booster = xgb.Booster()
        booster.load_model(bytearray(reader.read(".ubj")))
        if version >= 2:
            _restore_config(booster, reader.read(".config.json"), written)
        if must_verify:
            fingerprint.verify(
                meta.get("fingerprint"),
                lambda record: _booster_outputs(booster, record),
                library="xgboost",
                written=written,
                current=xgb.__version__,
                what="xgboost Booster",
            )
        return booster


class SklearnModelCodec(Codec):
    """xgboost's scikit-learn estimators: hyper-parameters, fitted model, ``classes_``,
    training configuration and ``evals_result()``."""

    id = "xgboost.XGBModel/ubj"
    version = 2  # v2: + training configuration, evals_result, xgboost version, fingerprint
    types = ("xgboost.sklearn.XGBModel",)
    library = "xgboost"
    version_policy: ClassVar[str] = "no-newer"
    verifies: ClassVar[bool] = True

    def can_encode(self, obj: Any) -> bool:
        """Only xgboost's own wrapper classes; a user's subclass is pickled."""
        cls = type(obj)
        return f"{cls.__module__}:{cls.__qualname__}" in WRAPPER_CLASSES

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        cls = type(obj)
        plain, other = _json_params(obj.get_params(deep=False))
        meta: dict[str, Any] = {
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "params": plain,
            "xgboost_version": xgb.__version__,
        }
        if other:
            writer.pickle(".params.pkl", other)
            meta["pickled_params"] = sorted(other)
        try:
            booster = obj.get_booster()
        except Exception:  # not fitted: the hyper-parameters are all there is
            meta["fitted"] = False
            return meta
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.ubj")
            obj.save_model(path)  # the wrapper's own format: booster + its scikit-learn attributes
            with open(path, "rb") as f:
                writer.write(".ubj", f.read())
        writer.write(".config.json", booster.save_config().encode("utf-8"))
        evals = getattr(obj, "evals_result_", None)
        if isinstance(evals, dict) and evals:
            meta["evals_result"] = _to_json(evals)
        meta["fitted"] = True
        meta["fingerprint"] = _booster_fingerprint(booster)
        return meta

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        name = meta.get("class")
        if not isinstance(name, str) or name not in WRAPPER_CLASSES:
            raise DeserializationError(
                f"the part names the class {name!r}, which is not one of xgboost's scikit-learn "
                f"wrappers ({', '.join(sorted(WRAPPER_CLASSES))}): refusing to resolve it"
            )
        params_meta = meta.get("params", {})
        if not isinstance(params_meta, dict):
            raise DeserializationError("the part's hyper-parameters are not a JSON object")
        _check_plain(params_meta, "params")
        fitted = meta.get("fitted")
        if not isinstance(fitted, bool):
            raise DeserializationError(f"the part's 'fitted' is not true or false: {fitted!r}")
        evals_meta = meta.get("evals_result")
        if evals_meta is not None:
            if not isinstance(evals_meta, dict):
                raise DeserializationError("the part's evals_result is not a JSON object")
            _check_plain(evals_meta, "evals_result")
        pickled = meta.get("pickled_params")
        if pickled is not None and not (
            isinstance(pickled, list) and all(isinstance(p, str) for p in pickled)
        ):
            raise DeserializationError("the part's pickled_params is not a list of names")
        short = name.partition(":")[2]
        must_verify, written = _version_gate(reader, meta, f"xgboost {short}")
        from xgboost import sklearn as xgb_sklearn

        cls = getattr(xgb_sklearn, short)
        params = {key: _from_json(value) for key, value in params_meta.items()}
        if pickled:
            params.update(reader.unpickle(".params.pkl"))
        model = cls(**params)
        if not fitted:
            return model
        model.load_model(bytearray(reader.read(".ubj")))
        for key, value in params.items():  # load_model fills some from the booster's config
            setattr(model, key, value)
        if version >= 2:
            _restore_config(model.get_booster(), reader.read(".config.json"), written)
        if evals_meta is not None:
            model.evals_result_ = _from_json(evals_meta)
        if must_verify:
            fingerprint.verify(
                meta.get("fingerprint"),
                lambda record: _booster_outputs(model.get_booster(), record),
                library="xgboost",
                written=written,
                current=xgb.__version__,
                what=f"xgboost {short}",
            )
        return model
