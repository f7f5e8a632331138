"""Single-file bundles are stored zips. This library reads the zips it writes with a
small parser of its own (a job reads several per call), and every other zip with
:mod:`zipfile`. The parser may only ever accept a zip that zipfile reads the same way:
checked against zipfile on every byte flip, truncation and extension of real bundles.
And the bytes of a bundle depend on its value only, not on the clock (content-addressed
function bundles rely on it)."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import remote_codecs as rc
from remote_codecs.api import dumps_if_small
from remote_codecs.storage import _stored_entries


def _small(value, **kw):
    data = dumps_if_small(value, 1 << 20, **kw)
    assert data is not None
    return data


def _zipfile_members(data: bytes) -> dict[str, bytes] | None:
    """What zipfile reads from ``data`` (None when it refuses it or a CRC fails)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return {i.filename: z.read(i) for i in z.infolist()}
    except Exception:
        return None


def _ours(data: bytes) -> dict[str, bytes] | None:
    entries = _stored_entries(memoryview(data))
    if entries is None:
        return None
    return {name: data[start : start + size] for name, (start, size, _crc) in entries.items()}


SAMPLES = [
    _small({"args": [1, "two", 3.0], "kwargs": {"k": None}}),
    _small(np.arange(12, dtype=np.int16).reshape(3, 4), key=b"k" * 32, purpose="job/arguments"),
    _small(len),
]


@pytest.mark.parametrize("data", SAMPLES, ids=["plain", "signed-array", "function"])
def test_what_this_library_writes_reads_the_same_in_zipfile_and_in_its_own_reader(data):
    ours = _ours(data)
    assert ours is not None and ours == _zipfile_members(data)
    assert list(ours)[-1] == "manifest.json"


@pytest.mark.parametrize("data", SAMPLES, ids=["plain", "signed-array", "function"])
def test_every_byte_flip_the_own_reader_accepts_zipfile_reads_the_same(data):
    for i in range(len(data)):
        for flip in (0x01, 0x80):
            mutated = bytearray(data)
            mutated[i] ^= flip
            ours = _ours(bytes(mutated))
            if ours is None:
                continue
            theirs = _zipfile_members(bytes(mutated))
            # accepted by the own parser: then zipfile reads the very same entries, or
            # the flipped byte is one the CRC catches when the entry is read
            assert theirs is None or theirs == ours, i
            if theirs is None:
                with pytest.raises((rc.IntegrityError, rc.DeserializationError)):
                    rc.loads(bytes(mutated), key=b"k" * 32, purpose="job/arguments")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_truncated_extended_or_spliced_bundles_are_never_read_differently(data):
    original = data.draw(st.sampled_from(SAMPLES))
    cut = data.draw(st.integers(0, len(original)))
    junk = data.draw(st.binary(max_size=64))
    at_start = data.draw(st.booleans())
    mutated = junk + original[cut:] if at_start else original[:cut] + junk
    ours = _ours(mutated)
    if ours is not None:
        assert _zipfile_members(mutated) == ours


def test_a_zip_of_another_shape_is_still_read_by_zipfile():
    value = {"a": 1}
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z,  # compressed, other dates
        zipfile.ZipFile(io.BytesIO(_small(value))) as ours,
    ):
        for info in ours.infolist():
            z.writestr(info.filename, ours.read(info))
    assert _ours(buf.getvalue()) is None
    assert rc.loads(buf.getvalue()) == value


def test_a_bundle_depends_on_its_value_not_on_the_clock(monkeypatch):
    value = {"weights": np.ones(3), "name": "m"}
    first, first_small = rc.dumps(value, purpose="p"), _small(value, purpose="p")
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # another day and second
    monkeypatch.setattr(time, "localtime", lambda *a: time.gmtime(2_000_000_000))
    assert rc.dumps(value, purpose="p") == first
    assert _small(value, purpose="p") == first_small
