"""Behavioural fingerprints of fitted models, and the check that verifies them.

At encode time a model codec records the model's outputs on a small deterministic probe
input (:func:`probe`). Whether a part's library version may be read is decided by the
loader alone (``bundle.check_version_policy``, from the codec's ``version_policy``). When
it refuses the version and the loader passed ``allow_version_mismatch="verify"``, it
tells the codec (``reader.version_mismatch == "verify"``): the codec checks that there is a
fingerprint (:func:`require`) before building anything, rebuilds the model, recomputes
the outputs and compares them (:func:`verify`): equal within float tolerance loads,
different is refused naming the largest difference and both versions. Otherwise
(the same version, one the policy accepts, or ``allow_version_mismatch=True``) nothing
is recomputed.

The probe is arithmetic only (no random generator whose stream could change between
numpy versions): a 2-D low-discrepancy sequence scaled over several magnitudes, so that
tree splits at very different thresholds are all exercised.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import DeserializationError

__all__ = [
    "PROBE_ROWS",
    "decode_values",
    "encode_values",
    "none",
    "probe",
    "require",
    "verify",
]

PROBE_ROWS = 16
MAX_VALUES = 1 << 16  # a fingerprint is small: larger outputs are not recorded
_SCALES = (1.0, 10.0, 0.1, 100.0, 1.0, 1000.0, 0.01, 3.0)
_A1, _A2 = 0.7548776662466927, 0.5698402909980532  # the R2 sequence (plastic number)


def probe(n_features: int, kind: str = "signed") -> Any:
    """A deterministic ``(PROBE_ROWS, n_features)`` float64 probe.

    ``kind``: ``"signed"`` (values of both signs), ``"nonneg"`` (for models that refuse
    negative input), ``"missing"`` (signed, with NaN cells: for models that handle them).
    """
    import numpy as np

    i = np.arange(PROBE_ROWS, dtype=np.float64)[:, None]
    j = np.arange(n_features, dtype=np.float64)[None, :]
    u = np.mod((i + 1.0) * _A1 + (j + 1.0) * _A2, 1.0)
    scale = np.asarray(_SCALES, dtype=np.float64)[np.arange(PROBE_ROWS) % len(_SCALES)][:, None]
    if kind == "nonneg":
        return u * scale
    x = (2.0 * u - 1.0) * scale
    if kind == "missing":
        x[PROBE_ROWS - 1, ::2] = np.nan
        x[PROBE_ROWS - 2, 1::2] = np.nan
    return x


def encode_values(values: Any) -> dict[str, Any]:
    """Model outputs as JSON meta: float64 bytes (base64) and shape, or labels as strings."""
    import numpy as np

    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        arr = np.ascontiguousarray(arr, dtype="<f8")
        return {
            "shape": list(arr.shape),
            "f8": base64.b64encode(arr.tobytes()).decode("ascii"),
        }
    return {"shape": list(arr.shape), "labels": [str(v) for v in arr.ravel().tolist()]}


def decode_values(record: Mapping[str, Any]) -> Any:
    """The outputs recorded by :func:`encode_values` (validated: it comes from an artifact)."""
    import numpy as np

    shape = record.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise DeserializationError(f"fingerprint has an invalid shape {shape!r}")
    count = int(np.prod(shape)) if shape else 1
    if count > MAX_VALUES:
        raise DeserializationError(f"fingerprint is too large ({count} values)")
    if "f8" in record:
        data = base64.b64decode(str(record["f8"]), validate=True)
        if len(data) != 8 * count:
            raise DeserializationError("fingerprint data does not match its shape")
        return np.frombuffer(data, dtype="<f8").reshape(shape)
    labels = record.get("labels")
    if not isinstance(labels, list) or len(labels) != count:
        raise DeserializationError("fingerprint labels do not match their shape")
    return np.asarray([str(v) for v in labels], dtype=object).reshape(shape)


def none(reason: str) -> dict[str, Any]:
    """The record saying that no fingerprint could be made, and why."""
    return {"none": reason[:300]}


def require(record: Any, *, library: str, written: str | None, current: str, what: str) -> None:
    """Refuse before anything is built when there is no fingerprint to verify against."""
    versions = f"written by {library} {written}, read by {library} {current}"
    if not isinstance(record, Mapping):
        raise DeserializationError(
            f"this {what} ({versions}) has no behavioural fingerprint (it was saved before "
            'fingerprints were recorded), so allow_version_mismatch="verify" cannot check '
            f"it. Load it under {library} {written}, or pass allow_version_mismatch=True to "
            "load it unchecked."
        )
    if "none" in record:
        raise DeserializationError(
            f"this {what} ({versions}) has no behavioural fingerprint: {str(record['none'])[:300]}. "
            f'allow_version_mismatch="verify" cannot check it; load it under {library} '
            f"{written}, or pass allow_version_mismatch=True to load it unchecked."
        )
    decode_values(record)


def verify(
    record: Any,
    recompute: Callable[[Mapping[str, Any]], Any],
    *,
    library: str,
    written: str | None,
    current: str,
    what: str,
) -> None:
    """Compare a recorded fingerprint with the rebuilt model's outputs; refuse if different.

    ``recompute(record)`` returns the rebuilt model's outputs on the probe described by the
    record. A missing fingerprint, or one recorded as impossible, is refused with its reason.
    """
    import numpy as np

    require(record, library=library, written=written, current=current, what=what)
    versions = f"written by {library} {written}, read by {library} {current}"
    expected = decode_values(record)
    try:
        actual = np.asarray(recompute(record))
    except DeserializationError:
        raise
    except Exception as exc:
        raise DeserializationError(
            f"this {what} ({versions}) could not recompute its fingerprint: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if expected.dtype == object:
        actual_labels = np.asarray([str(v) for v in actual.ravel().tolist()], dtype=object)
        if actual.shape != expected.shape or not np.array_equal(actual_labels, expected.ravel()):
            raise DeserializationError(
                f"this {what} ({versions}) predicts different labels on the probe input than "
                "when it was saved: refusing to load it. Load it under "
                f"{library} {written}, or refit it."
            )
        return
    if actual.shape != expected.shape:
        raise DeserializationError(
            f"this {what} ({versions}) outputs shape {actual.shape} on the probe input, "
            f"{tuple(expected.shape)} when it was saved: refusing to load it."
        )
    actual = actual.astype(np.float64)
    same_nan = np.isnan(actual) == np.isnan(expected)
    diff = np.where(np.isnan(actual) | np.isnan(expected), 0.0, np.abs(actual - expected))
    worst = float(diff.max()) if diff.size else 0.0
    scale = (
        float(np.nanmax(np.abs(expected)))
        if expected.size and not np.isnan(expected).all()
        else 0.0
    )
    tolerance = 1e-6 + 1e-5 * scale
    if not same_nan.all():
        worst = float("inf")
    if worst > tolerance:
        raise DeserializationError(
            f"this {what} ({versions}) computes different outputs on the probe input than "
            f"when it was saved: largest difference {worst:.6g} (tolerance {tolerance:.3g}). "
            f"Refusing to load it: load it under {library} {written}, or refit it."
        )
