"""Red-team tests of today's changes, written from the outside (README and the public API):

1. single-file bundles are zips, the library's own zips read by a strict parser and any
   other zip by ``zipfile``;
2. bundles are deterministic, a job's function bundle content-addressed and hard-linked;
3. a warm worker decodes a function once per bundle digest (each job's bundle still read
   and checked), and stops each job at its own ``max_runtime_in_seconds``.

Each test asserts the SAFE behaviour; an ``xfail(strict=True)`` marks a finding that is
still open (its reason says what, how, and how bad)."""

from __future__ import annotations

import io
import math
import os
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import remote_codecs as rc
from remote_codecs import DeserializationError
from remote_codecs import IntegrityError as CodecIntegrityError
from remote_runtime import (
    IntegrityError,
    JobTimeoutError,
    RemoteExecutor,
    get_future,
    remote,
)

KEY = b"red-team-key"
RC_ERRORS = (DeserializationError, CodecIntegrityError)
VALUE = {"a": np.arange(3), "b": [1, "x", b"yy"], "c": np.ones((2, 2))}


def _same(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and v.keys() == VALUE.keys()
        and v["a"].dtype == VALUE["a"].dtype
        and np.array_equal(v["a"], VALUE["a"])
        and np.array_equal(v["c"], VALUE["c"])
        and v["b"] == VALUE["b"]
    )


# ---------------------------------------------------------------------------------------
# zips written by hand, in exactly the shape rc.dumps writes (parts with a zip64 local
# extra, the manifest last and plain), so that one field at a time can be forged
# ---------------------------------------------------------------------------------------


def _entries(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _write(
    entries: list[dict[str, Any]],
    *,
    central: Any = None,
    eocd: dict[str, int] | None = None,
    prefix: bytes = b"",
    suffix: bytes = b"",
) -> bytes:
    """``entries``: dicts with ``name``, ``data`` and optional forged fields ``lname``
    (local name), ``lsize`` (local size), ``lcrc``, ``ccrc``, ``csize`` (central);
    ``central(records) -> records`` rewrites the central directory."""
    out = bytearray(prefix)
    records = []
    for e in entries:
        name, data = e["name"].encode(), e["data"]
        zip64 = e.get("zip64", e["name"] != "manifest.json")
        crc, offset = zlib.crc32(data), len(out)
        lname, lsize, lcrc = e.get("lname", name), e.get("lsize", len(data)), e.get("lcrc", crc)
        if zip64:
            extra = struct.pack("<2H2Q", 1, 16, lsize, lsize)
            out += struct.pack(
                "<4s5H3L2H",
                b"PK\x03\x04",
                45,
                0,
                0,
                0,
                33,
                lcrc,
                0xFFFFFFFF,
                0xFFFFFFFF,
                len(lname),
                len(extra),
            )
            out += lname + extra
        else:
            out += struct.pack(
                "<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 33, lcrc, lsize, lsize, len(lname), 0
            )
            out += lname
        out += data
        records.append(
            {
                "name": name,
                "crc": e.get("ccrc", crc),
                "size": e.get("csize", len(data)),
                "off": offset,
                "zip64": zip64,
            }
        )
    if central is not None:
        records = central(records)
    start = len(out)
    for r in records:
        made, need = (0x32D, 45) if r["zip64"] else (0x314, 20)
        out += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            made,
            need,
            0,
            0,
            0,
            33,
            r["crc"],
            r["size"],
            r["size"],
            len(r["name"]),
            0,
            0,
            0,
            0,
            0x1800000,
            r["off"],
        )
        out += r["name"]
    end = {"n": len(records), "size": len(out) - start, "off": start}
    end.update(eocd or {})
    out += struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, end["n"], end["n"], end["size"], end["off"], 0
    )
    return bytes(out + suffix)


def _e(item: tuple[str, bytes], **forged: Any) -> dict[str, Any]:
    return {"name": item[0], "data": item[1], **forged}


def _repack(data: bytes, method: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z:
        for name, payload in _entries(data):
            z.writestr(name, payload)
    return out.getvalue()


def _central_offsets(data: bytes) -> list[int]:
    offsets, i = [], data.find(b"PK\x01\x02")
    while i >= 0:
        offsets.append(i)
        i = data.find(b"PK\x01\x02", i + 4)
    return offsets


def test_the_hand_writer_writes_exactly_what_dumps_writes():
    """Control: the forgeries below differ from a real bundle only where they say."""
    for value in (VALUE, 5, [b"x" * 100], {"z": np.zeros(4)}):
        data = rc.dumps(value, key=KEY)
        assert _write([_e(x) for x in _entries(data)]) == data


def _signed() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    real = _entries(rc.dumps({"v": np.arange(3)}, key=KEY))
    other = _entries(rc.dumps({"v": np.arange(3) * 7}, key=KEY))
    unsigned = _entries(rc.dumps({"v": np.arange(3) * 7}))
    return real, other, unsigned


def _forgeries() -> dict[str, bytes]:
    real, other, unsigned = _signed()
    p, m = real
    return {
        "a second part of the same name after the real one": _write([_e(p), _e(other[0]), _e(m)]),
        "a second part of the same name before the real one": _write([_e(other[0]), _e(p), _e(m)]),
        "an unsigned manifest after the signed one": _write([_e(p), _e(m), _e(unsigned[1])]),
        "an unsigned manifest before the signed one": _write([_e(p), _e(unsigned[1]), _e(m)]),
        "the central directory names a hidden entry": _write(
            [_e(other[0]), _e(p), _e(m)], central=lambda r: [r[0], r[2]]
        ),
        "a local entry left out of the central directory": _write(
            [_e(other[0]), _e(p), _e(m)], central=lambda r: [r[1], r[2]]
        ),
        "two central names for one local entry": _write(
            [_e(p), _e(m)], central=lambda r: [*r, dict(r[0], name=b"1.npy")]
        ),
        "central offsets swapped": _write(
            [_e(p), _e(m)],
            central=lambda r: [dict(r[0], off=r[1]["off"]), dict(r[1], off=r[0]["off"])],
        ),
        "a local name that differs from the central one": _write([_e(p, lname=b"1.npy"), _e(m)]),
        "a wrong CRC of the part": _write([_e(p, ccrc=1, lcrc=1), _e(m)]),
        "a wrong CRC of the manifest": _write([_e(p), _e(m, ccrc=1, lcrc=1)]),
        "a huge central size of the part": _write([_e(p, csize=0xFFFFFFF0), _e(m)]),
        "a huge zip64 local size of the part": _write([_e(p, lsize=2**62), _e(m)]),
        "a huge central size of the manifest": _write([_e(p), _e(m, csize=0xFFFFFFF0)]),
        "a central size shorter than the part": _write([_e(p, csize=100), _e(m)]),
        "an entry count that is too high": _write([_e(p), _e(m)], eocd={"n": 9}),
        "a central directory size that is too high": _write([_e(p), _e(m)], eocd={"size": 10**6}),
        "an unsigned bundle's entries in place of the signed": _write([_e(x) for x in unsigned]),
    }


FORGERIES = _forgeries()


@pytest.mark.parametrize("what", sorted(FORGERIES))
def test_a_forged_zip_never_loads_another_value_than_the_signed_one(what):
    """Duplicate names, overlapping and hidden entries, forged sizes and CRCs: with the
    key, the load gives the signed value or a typed error; ``inspect`` (which decodes
    nothing) gives a manifest or a typed error; both agree on whether what they read is
    signed."""
    data = FORGERIES[what]
    try:
        value = rc.loads(data, key=KEY)
    except RC_ERRORS:
        value = None
    else:
        assert np.array_equal(value["v"], np.arange(3)), what
    try:
        manifest = rc.inspect(data)
    except RC_ERRORS:
        return
    if value is not None:
        assert manifest.signed, f"{what}: loads verified a signature that inspect does not show"


def _z64(data: bytes, **fields: int) -> bytes:
    """``data`` with a zip64 end record and locator before a 0xFFFF.. end record."""
    i = data.rfind(b"PK\x05\x06")
    _, _, _, count, size, offset, _ = struct.unpack_from("<4H2LH", data, i + 4)
    f = {"n": count, "size": size, "off": offset, "disks": 1}
    f.update(fields)
    body = data[:i]
    record = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, f["n"], f["n"], f["size"], f["off"]
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(body), f["disks"])
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + record + locator + end


@pytest.mark.parametrize(
    "how",
    [
        "appended bytes",
        "prepended bytes",
        "a zip comment",
        "repacked stored by zipfile",
        "repacked deflated by zipfile",
        "repacked with bzip2",
        "repacked with lzma",
        "a zip64 end record",
        "a zip64 end record with 2**63 entries",
        "a zip64 end record with a huge directory size",
        "a zip64 end record with a huge offset",
        "a zip64 end record spanning disks",
    ],
)
def test_a_rewrapped_bundle_loads_the_signed_value_or_is_refused(how):
    data = rc.dumps(VALUE, key=KEY)
    forged = {
        "appended bytes": lambda: data + b"trailing" * 8,
        "prepended bytes": lambda: b"#!/bin/sh\nexit 0\n" + data,
        "a zip comment": lambda: data[:-2] + struct.pack("<H", 5) + b"hello",
        "repacked stored by zipfile": lambda: _repack(data, zipfile.ZIP_STORED),
        "repacked deflated by zipfile": lambda: _repack(data, zipfile.ZIP_DEFLATED),
        "repacked with bzip2": lambda: _repack(data, zipfile.ZIP_BZIP2),
        "repacked with lzma": lambda: _repack(data, zipfile.ZIP_LZMA),
        "a zip64 end record": lambda: _z64(data),
        "a zip64 end record with 2**63 entries": lambda: _z64(data, n=2**63),
        "a zip64 end record with a huge directory size": lambda: _z64(data, size=2**62),
        "a zip64 end record with a huge offset": lambda: _z64(data, off=2**62),
        "a zip64 end record spanning disks": lambda: _z64(data, disks=2),
    }[how]()
    try:
        value = rc.loads(forged, key=KEY)
    except RC_ERRORS:
        return
    assert _same(value), how


def _manifest_forgery(data: bytes, how: str) -> bytes:
    """The manifest's central entry marked encrypted; its plain bytes declared deflated;
    or one byte of its stream flipped in an lzma repack of the bundle."""
    if how == "lzma":  # a real lzma repack, one byte of the manifest's stream flipped
        data = _repack(data, zipfile.ZIP_LZMA)
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            info = z.getinfo("manifest.json")
        m = bytearray(data)
        m[info.header_offset + 30 + len(info.filename) + len(info.extra) + 20] ^= 0xFF
        return bytes(m)
    m = bytearray(data)
    central = _central_offsets(data)[-1]
    local = struct.unpack_from("<L", m, central + 42)[0]
    if how == "encrypted":
        struct.pack_into("<H", m, central + 8, 1)
    else:  # the manifest's plain bytes declared deflated
        struct.pack_into("<H", m, central + 10, 8)
        struct.pack_into("<H", m, local + 8, 8)
    return bytes(m)


@pytest.mark.parametrize("how", ["encrypted", "deflate", "lzma"])
@pytest.mark.parametrize("reader", ["loads", "inspect"])
def test_a_manifest_entry_marked_encrypted_or_compressed_is_a_typed_error(how, reader):
    forged = _manifest_forgery(rc.dumps(VALUE, key=KEY), how)
    with pytest.raises(RC_ERRORS):
        if reader == "loads":
            rc.loads(forged, key=KEY)
        else:
            rc.inspect(forged)


@pytest.mark.parametrize("how", ["encrypted", "deflate", "lzma"])
def test_a_part_entry_marked_encrypted_or_compressed_is_a_typed_error(how):
    """Control of the finding above: the same forgeries on a part are typed errors."""
    data = rc.dumps(VALUE, key=KEY)
    m = bytearray(data)
    central = _central_offsets(data)[0]
    if how == "encrypted":
        struct.pack_into("<H", m, central + 8, 1)
    else:
        struct.pack_into("<H", m, central + 10, {"deflate": 8, "lzma": 14}[how])
        struct.pack_into("<H", m, 8, {"deflate": 8, "lzma": 14}[how])
    with pytest.raises(RC_ERRORS):
        rc.loads(bytes(m), key=KEY)


def test_a_results_bundle_with_an_encrypted_manifest_flag_is_a_typed_error(job_root):
    call = remote(stream_logs=False)(_square)
    assert call(3) == 9
    (name,) = os.listdir(job_root)
    path = job_root / name / "results.bundle"
    path.write_bytes(_manifest_forgery(path.read_bytes(), "encrypted"))
    with pytest.raises((IntegrityError, *RC_ERRORS)):
        get_future(name).result()
    shown = subprocess.run(
        [sys.executable, "-m", "remote_runtime", "jobs", "show", name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in shown.stderr, shown.stderr[-2000:]


KNOWN_UNTYPED: tuple[type[Exception], ...] = ()  # (zipfile's errors escaped until fixed)
SEEDS = {
    "own": rc.dumps(VALUE, key=KEY),
    "deflated": _repack(rc.dumps(VALUE, key=KEY), zipfile.ZIP_DEFLATED),
}


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["set", "delete", "insert", "word", "cut"]),
            st.floats(0, 1, exclude_max=True),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutations_of_a_real_bundle_never_load_another_value(seed, edits):
    """Hypothesis edits of real signed bundles (our zip, and a deflated zipfile repack):
    with the key, a mutated bundle loads the signed value or fails with a typed error
    (DeserializationError/IntegrityError; KNOWN_UNTYPED are the finding above), never a
    struct.error, IndexError, MemoryError, OverflowError..."""
    m = bytearray(SEEDS[seed])
    for op, where, blob in edits:
        i = int(where * len(m)) if m else 0
        if op == "set" and m:
            m[i] = blob[0]
        elif op == "delete":
            del m[i : i + len(blob)]
        elif op == "insert":
            m[i:i] = blob
        elif op == "word":
            m[i : i + 4] = [b"\xff\xff\xff\xff", b"\0\0\0\0", b"\xff\xff\xff\x7f", b"\1\0\0\0"][
                blob[0] % 4
            ]
        else:
            del m[i:]
    data = bytes(m)
    try:
        value = rc.loads(data, key=KEY)
    except (*RC_ERRORS, *KNOWN_UNTYPED):
        pass
    else:
        assert _same(value)
    try:
        rc.inspect(data)
    except (*RC_ERRORS, *KNOWN_UNTYPED):
        pass


def test_every_single_byte_change_of_a_signed_bundle_loads_the_value_or_a_typed_error():
    """Exhaustive over positions (a few values each): no byte of our own zip can be
    changed into another value or an untyped crash, except the one flag bit of the
    finding above."""
    data = rc.dumps(VALUE, key=KEY)
    for i in range(len(data)):
        for new in {0, 0xFF, (data[i] + 1) & 0xFF, data[i] ^ 0x80} - {data[i]}:
            m = bytearray(data)
            m[i] = new
            try:
                value = rc.loads(bytes(m), key=KEY)
            except (*RC_ERRORS, *KNOWN_UNTYPED):
                continue
            assert _same(value), f"byte {i} set to {new}"


# ---------------------------------------------------------------------------------------
# bytes handed over as bytearray / memoryview
# ---------------------------------------------------------------------------------------


def _values() -> dict[str, Any]:
    import pandas as pd
    import pyarrow as pa

    n = np.arange(1000, dtype=np.int64)
    return {
        "numpy": n,
        "bytes": b"\x07" * 100_000,
        "DataFrame": pd.DataFrame({"x": n}),
        "arrow Table": pa.table({"x": n}),
    }


def _snapshot(v: Any) -> bytes:
    import pandas as pd
    import pyarrow as pa

    if isinstance(v, pa.Table):
        return v.column("x").to_numpy().tobytes()
    if isinstance(v, pd.DataFrame):
        return v["x"].to_numpy().tobytes()
    if isinstance(v, np.ndarray):
        return v.tobytes()
    return bytes(v)


@pytest.mark.parametrize("kind", ["numpy", "bytes", "DataFrame", "arrow Table"])
def test_a_value_loaded_from_a_bytearray_does_not_change_with_it(kind):
    """A loaded value shares no memory with the buffer it came from: scribbling over the
    bytearray (or resizing it) afterwards changes nothing in the value."""
    value = _values()[kind]
    buffer = bytearray(rc.dumps(value, key=KEY))
    for source in (buffer, memoryview(buffer)):
        loaded = rc.loads(source, key=KEY)
        before = _snapshot(loaded)
        assert before == _snapshot(value)
        buffer[:] = b"\xab" * len(buffer)
        assert _snapshot(loaded) == before
        buffer[:] = rc.dumps(value, key=KEY)
    del source
    buffer.extend(b"more")  # no export of the buffer is left alive by the loads


def test_a_bytearray_changed_while_it_is_loaded_never_gives_another_value():
    """A thread flips a byte of the array data while the bytearray is loaded again and
    again: each load is the signed value or an IntegrityError (what is verified is what is
    decoded)."""
    arr = np.zeros(100_000, dtype=np.int64)
    buffer = bytearray(rc.dumps(arr, key=KEY))
    where = bytes(buffer).find(b"\x93NUMPY") + 128 + 8 * 50_000
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            buffer[where] = 1
            buffer[where] = 0

    thread = threading.Thread(target=flip)
    thread.start()
    try:
        for _ in range(60):
            try:
                loaded = rc.loads(buffer, key=KEY)
            except RC_ERRORS:
                continue
            assert not loaded.any()
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("cast", ["I", "Q"])
def test_a_memoryview_of_wider_items_loads_the_same_value(cast):
    """``len()`` of such a view counts items, not bytes: the value is still whole."""
    data = rc.dumps(VALUE, key=KEY)
    padded = bytearray(data + b"\0" * (-len(data) % 8))
    assert _same(rc.loads(memoryview(padded).cast(cast), key=KEY))


def test_a_strided_memoryview_loads_or_is_refused_clearly():
    data = rc.dumps(VALUE, key=KEY)
    spread = bytearray(len(data) * 2)
    spread[::2] = data
    view = memoryview(spread)[::2]
    try:
        value = rc.loads(view, key=KEY)
    except RC_ERRORS:
        return
    assert _same(value)


def test_a_negative_nan_keeps_its_sign():
    negative = -float("nan")
    assert math.copysign(1.0, rc.loads(rc.dumps(negative))) == -1.0
    assert math.copysign(1.0, rc.loads(rc.dumps({"k": [negative]}))["k"][0]) == -1.0


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, True),
        (1, 1.0),
        (0.0, -0.0),
        ([1], (1,)),
        ({1: "a"}, {True: "a"}),
        ({1: "a"}, {"1": "a"}),
        ({"b": 1, "a": 2}, {"a": 2, "b": 1}),
        (b"x", bytearray(b"x")),
        ({1}, frozenset({1})),
        ({"$tuple": [1]}, (1,)),
        ({"$bytes": "eA=="}, b"x"),
        ((), []),
        (np.int64(1), 1),
        (10**30, float(10**30)),
    ],
)
def test_deterministic_bundles_of_different_values_differ(a, b):
    """Determinism never merges two values that Python tells apart (type, key type,
    insertion order, sign of zero, look-alike markers)."""
    assert rc.dumps(a) != rc.dumps(b)
    for v in (a, b):
        back = rc.loads(rc.dumps(v))
        assert type(back) is type(v) and repr(back) == repr(v)


# ---------------------------------------------------------------------------------------
# content-addressed function bundles and warm workers
# ---------------------------------------------------------------------------------------


def _square(x):
    return x * x


def _nap(seconds):
    import time

    time.sleep(seconds)
    return "nap"


def _other():
    return "OTHER"


_K = 1


def _bump():
    global _K
    _K += 1
    return _K


def _defaults(x, y=1):
    return x + y


def _self_rewriting(x, y=1):
    _self_rewriting.__defaults__ = (100,)
    return x + y


class _Box:
    k = 1


def _box():
    return _Box.k


def _make_closure(v):
    def inner():
        return v

    return inner


def _attribute():
    return getattr(_attribute, "tag", None)


def _bundle_bytes_of(fn, root: Path) -> bytes:
    before = set(os.listdir(root)) if root.exists() else set()
    remote(s3_root_uri=str(root), stream_logs=False)(fn)()
    (name,) = set(os.listdir(root)) - before
    return (root / name / "function.bundle").read_bytes()


def test_every_client_side_change_of_a_function_is_seen_by_the_next_warm_call(job_root):
    """A warm worker reuses a decoded function only for the very same bytes: a change of
    a captured global, a default, a class attribute, a closure value or a function
    attribute on the client is seen by the next call of the same worker."""
    module = sys.modules[__name__]
    with RemoteExecutor(keep_alive_period_in_seconds=30) as ex:
        assert ex.submit(_defaults, 1).result() == 2
        _defaults.__defaults__ = (10,)
        try:
            assert ex.submit(_defaults, 1).result() == 11
        finally:
            _defaults.__defaults__ = (1,)
        assert ex.submit(_box).result() == 1
        _Box.k = 7
        try:
            assert ex.submit(_box).result() == 7
        finally:
            _Box.k = 1
        assert ex.submit(_make_closure(1)).result() == 1
        assert ex.submit(_make_closure(2)).result() == 2
        assert ex.submit(_attribute).result() is None
        _attribute.tag = "t"  # type: ignore[attr-defined]
        try:
            assert ex.submit(_attribute).result() == "t"
        finally:
            del _attribute.tag  # type: ignore[attr-defined]
        module._K = 40
        try:
            assert ex.submit(_bump).result() == 41
            module._K = 50
            assert ex.submit(_bump).result() == 51
        finally:
            module._K = 1


def test_a_job_rewriting_its_function_does_not_outlive_a_client_side_change(job_root):
    """A warm job may rewrite its own function's defaults (they stay in the worker, like
    module state); a client that then sets new defaults gets them in the next call."""
    with RemoteExecutor(keep_alive_period_in_seconds=30) as ex:
        assert ex.submit(_self_rewriting, 1).result() == 2
        _self_rewriting.__defaults__ = (5,)
        try:
            assert ex.submit(_self_rewriting, 1).result() == 6
        finally:
            _self_rewriting.__defaults__ = (1,)


def test_a_global_set_back_to_an_earlier_value_by_the_client_is_seen(job_root):
    module = sys.modules[__name__]
    module._K = 1
    try:
        with RemoteExecutor(keep_alive_period_in_seconds=30) as ex:
            assert ex.submit(_bump).result() == 2
            module._K = 5
            assert ex.submit(_bump).result() == 6
            module._K = 1
            assert ex.submit(_bump).result() == 2
    finally:
        module._K = 1


def test_different_captured_values_never_share_a_function_bundle(job_root, tmp_path):
    """Content addressing: the same function with another default, closure value, class
    attribute or global has other bundle bytes; the same one has the same bytes."""
    root = tmp_path / "addressing"
    seen = {"same": _bundle_bytes_of(_box, root)}
    assert _bundle_bytes_of(_box, root) == seen["same"]
    _Box.k = 2
    try:
        seen["class attribute"] = _bundle_bytes_of(_box, root)
    finally:
        _Box.k = 1
    seen["closure 1"] = _bundle_bytes_of(_make_closure(1), root)
    seen["closure 1.0"] = _bundle_bytes_of(_make_closure(1.0), root)
    seen["closure True"] = _bundle_bytes_of(_make_closure(True), root)
    _defaults.__defaults__ = (1.0,)
    try:
        seen["default 1.0"] = _bundle_bytes_of(lambda: _defaults(1), root)
    finally:
        _defaults.__defaults__ = (1,)
    seen["default 1"] = _bundle_bytes_of(lambda: _defaults(1), root)
    assert len(set(seen.values())) == len(seen)


@pytest.mark.parametrize("warm", [0, 30])
def test_a_function_bundle_swapped_while_the_job_starts_never_runs_the_other_function(
    job_root, tmp_path, warm
):
    """A thread keeps replacing a queued job's function.bundle by another function's
    bundle and back while the job starts (a function the worker has not decoded yet):
    the job runs its own function or is refused, never the other one."""
    marker = tmp_path / "PWNED"
    other_root = tmp_path / "other"
    evil = _bundle_bytes_of(lambda: (marker.write_text("x"), "EVIL")[1], other_root)
    marker.unlink()
    outcomes = set()
    with RemoteExecutor(max_parallel_jobs=1, keep_alive_period_in_seconds=warm) as ex:
        for i in range(4):
            own = _make_closure(f"own{i}")
            ex.submit(_nap, 0.2)
            future = ex.submit(own)
            path = job_root / future.job_name / "function.bundle"
            legit = path.read_bytes()
            stop = threading.Event()

            def swap(path: Path = path, legit: bytes = legit, stop: threading.Event = stop):
                k = 0
                while not stop.is_set():
                    tmp = path.with_name(f"swap{k % 2}")
                    tmp.write_bytes(evil if k % 2 == 0 else legit)
                    try:
                        os.replace(tmp, path)
                    except OSError:
                        pass
                    k += 1

            thread = threading.Thread(target=swap)
            thread.start()
            try:
                outcomes.add(future.result(timeout=60))
            except IntegrityError:
                outcomes.add("refused")
            finally:
                stop.set()
                thread.join()
            assert not marker.exists(), "the other function ran"
    assert "EVIL" not in outcomes


@pytest.mark.parametrize(
    "how",
    [
        "removed",
        "garbage",
        "another function's bundle",
        "one byte appended",
        "empty",
        "a symlink to a copy",
        "a FIFO",
    ],
)
def test_a_warm_worker_that_decoded_the_function_refuses_a_later_jobs_changed_bundle(
    job_root, tmp_path, how
):
    """The worker already holds the decoded function (same digest); a later queued job of
    it whose function.bundle was replaced is refused, not run from the cache, and the job
    after it still runs."""
    other = _bundle_bytes_of(_other, tmp_path / "other")
    with RemoteExecutor(max_parallel_jobs=1, keep_alive_period_in_seconds=30) as ex:
        assert ex.submit(_nap, 0).result() == "nap"
        first = ex.submit(_nap, 0.3)
        tampered = ex.submit(_nap, 0)
        after = ex.submit(_nap, 0)
        path = job_root / tampered.job_name / "function.bundle"
        content = path.read_bytes()
        path.unlink()  # never the shared inode: the other jobs keep theirs
        if how == "garbage":
            path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
        elif how == "another function's bundle":
            path.write_bytes(other)
        elif how == "one byte appended":
            path.write_bytes(content + b"\0")
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "a symlink to a copy":
            (tmp_path / "copy.bundle").write_bytes(content)
            path.symlink_to(tmp_path / "copy.bundle")
        elif how == "a FIFO":
            os.mkfifo(path)
        assert first.result(timeout=60) == "nap"
        with pytest.raises(IntegrityError):
            tampered.result(timeout=60)
        assert after.result(timeout=60) == "nap"


def test_a_warm_workers_function_state_does_not_cross_job_roots(job_root, tmp_path):
    """The same function (same bundle bytes) in two roots: a global that a job changes in
    its worker is seen neither by the other root's jobs nor by its own root's next job
    (each sees the client's value, as a cold job does)."""
    module = sys.modules[__name__]
    module._K = 1
    try:
        one = remote(
            s3_root_uri=str(tmp_path / "one"), keep_alive_period_in_seconds=30, stream_logs=False
        )(_bump)
        two = remote(
            s3_root_uri=str(tmp_path / "two"), keep_alive_period_in_seconds=30, stream_logs=False
        )(_bump)
        assert (one(), one(), two(), one(), two()) == (2, 2, 2, 2, 2)
    finally:
        module._K = 1


@pytest.mark.parametrize(
    "runs",
    [
        # (max_runtime_in_seconds, sleep) in order on one warm worker; None is no limit
        ((60, 0.1), (2, 30)),  # a long limit, then a short one: the short one is stopped
        ((None, 0.1), (2, 30)),
        ((2, 1.5), (2, 30)),  # the same limit again, the watchdog already armed for the first
        ((60, 0.1), (2, 0.1), (3, 30)),  # the stale earlier deadline must not hide the later
        ((2, 0.1), (60, 3)),  # a short limit's old deadline does not stop a long job
        ((2, 0.1), (None, 3)),
    ],
    ids=["long-short", "none-short", "same-same", "long-short-longer", "short-long", "short-none"],
)
def test_a_warm_worker_stops_each_job_at_its_own_max_runtime(job_root, runs):
    """Jobs with different limits in a row on one warm worker (each call its own
    decorator, same root and environment): a job sleeping past its limit raises
    JobTimeoutError (it would return after 30 s otherwise), a job within its limit
    returns, whatever the jobs before it had."""
    pids = set()
    for limit, sleep in runs:
        call = remote(
            keep_alive_period_in_seconds=30, max_runtime_in_seconds=limit, stream_logs=False
        )(_pid_after)
        if limit is not None and sleep > limit:
            with pytest.raises(JobTimeoutError):
                call(sleep)
        else:
            pids.add(call(sleep))
    assert len(pids) == 1, "the jobs that finished did not share one warm worker"


def _pid_after(seconds):
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


def test_a_queued_jobs_arguments_with_an_encrypted_manifest_flag_are_refused_typed(job_root):
    """Control of the finding above on the job side: the job wraps the zipfile error, so
    the caller gets a typed refusal of the inputs, not the RuntimeError."""
    with RemoteExecutor(max_parallel_jobs=1) as ex:
        first = ex.submit(_nap, 0.5)
        tampered = ex.submit(_nap, 0)
        path = job_root / tampered.job_name / "arguments.bundle"
        forged = _manifest_forgery(path.read_bytes(), "encrypted")
        path.unlink()
        path.write_bytes(forged)
        assert first.result(timeout=60) == "nap"
        with pytest.raises((IntegrityError, *RC_ERRORS), match="refused its inputs"):
            tampered.result(timeout=60)


_DETERMINISM = """
import hashlib, sys
import numpy as np
import remote_codecs as rc
value = {"a": np.arange(5), "b": [1.5, "x", b"y", None, (1, 2)], "c": {3: "k"}}
sys.stdout.write(hashlib.sha256(rc.dumps(value, key=b"k", purpose="p")).hexdigest())
"""


def test_the_same_value_gives_the_same_bytes_in_another_process_and_at_another_time(
    monkeypatch,
):
    """Determinism: two interpreters with other hash seeds, and this one with its clock a
    day later, write the same bytes (sets of strings excepted: their order follows the
    hash seed)."""
    import hashlib
    import time

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    digests = {
        subprocess.run(
            [sys.executable, "-c", _DETERMINISM],
            env=dict(env, PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    value = {"a": np.arange(5), "b": [1.5, "x", b"y", None, (1, 2)], "c": {3: "k"}}
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 86_400 + 3.7)
    digests.add(hashlib.sha256(rc.dumps(value, key=b"k", purpose="p")).hexdigest())
    assert len(digests) == 1
