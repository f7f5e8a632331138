"""xgboost ``Booster`` as UBJSON, and the scikit-learn wrappers (``XGBClassifier``,
``XGBRegressor``, ``XGBRanker`` ...) as class path + ``get_params()`` + model. No pickle
unless a hyper-parameter is a Python object (a callback, a custom metric).

UBJSON is xgboost's own portable model format: it loads in later xgboost versions and on
any device. ``DMatrix`` is refused (see ``codecs/__init__.py``): pass the data instead.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import tempfile
from typing import Any

import xgboost as xgb

from ..codec import Codec, PartReader, PartWriter


class BoosterCodec(Codec):
    """``xgboost.Booster`` through ``save_raw("ubj")``."""

    id = "xgboost.Booster/ubj"
    version = 1
    types = ("xgboost.core.Booster",)
    library = "xgboost"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        writer.write(".ubj", obj.save_raw("ubj"))
        return {}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        booster = xgb.Booster()
        booster.load_model(bytearray(reader.read(".ubj")))
        return booster


def _json_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split hyper-parameters into JSON ones (nan/inf tagged) and the rest (pickled)."""
    plain, other = {}, {}
    for name, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            plain[name] = {"$float": repr(float(value))}
            continue
        try:
            json.dumps(value, allow_nan=False)
            plain[name] = value
        except (TypeError, ValueError):
            other[name] = value
    return plain, other


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$float"}:
        return float(value["$float"])
    return value


class SklearnModelCodec(Codec):
    """xgboost's scikit-learn estimators: hyper-parameters, fitted model, ``classes_``."""

    id = "xgboost.XGBModel/ubj"
    version = 1
    types = ("xgboost.sklearn.XGBModel",)
    library = "xgboost"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        cls = type(obj)
        plain, other = _json_params(obj.get_params(deep=False))
        meta: dict[str, Any] = {"class": f"{cls.__module__}:{cls.__qualname__}", "params": plain}
        if other:
            writer.pickle(".params.pkl", other)
            meta["pickled_params"] = sorted(other)
        try:
            obj.get_booster()
        except Exception:  # not fitted: the hyper-parameters are all there is
            meta["fitted"] = False
            return meta
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.ubj")
            obj.save_model(path)  # the wrapper's own format: booster + its scikit-learn attributes
            with open(path, "rb") as f:
                writer.write(".ubj", f.read())
        meta["fitted"] = True
        return meta

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        module, _, name = meta["class"].partition(":")
        cls: Any = importlib.import_module(module)
        for attr in name.split("."):
            cls = getattr(cls, attr)
        params = {name: _from_json(value) for name, value in meta["params"].items()}
        if meta.get("pickled_params"):
            params.update(reader.unpickle(".params.pkl"))
        model = cls(**params)
        if meta.get("fitted"):
            model.load_model(bytearray(reader.read(".ubj")))
            for name, value in params.items():  # load_model fills some from the booster's config
                setattr(model, name, value)
        return model
