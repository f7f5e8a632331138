"""Large parts (tens of MiB, read and hashed in pieces by more than one thread): the
value comes back byte for byte, the manifest's digest is BLAKE3 of the whole file, and a
changed byte anywhere is an IntegrityError naming the file."""

from __future__ import annotations

import json

import blake3
import numpy as np
import pytest

import remote_codecs as rc

SIZE = (40 << 20) + 12_345  # not a multiple of any power-of-two piece size


@pytest.fixture(scope="module")
def big():
    return np.random.default_rng(7).integers(0, 256, SIZE, dtype=np.uint8)


def _record(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    (part,) = manifest["parts"]
    (record,) = part["files"]
    return record


def test_a_large_array_round_trips_and_its_digest_is_blake3_of_the_whole_file(tmp_path, big):
    rc.save(big, tmp_path / "b")
    record = _record(tmp_path / "b")
    raw = (tmp_path / "b" / record["name"]).read_bytes()
    assert record["size"] == len(raw) > SIZE
    assert record["digest"] == "blake3:" + blake3.blake3(raw).hexdigest()
    assert np.array_equal(np.load(tmp_path / "b" / record["name"]), big)
    out = rc.load(tmp_path / "b")
    assert out.dtype == big.dtype and np.array_equal(out, big)


def test_a_large_fortran_array_round_trips(tmp_path):
    a = np.asfortranarray(np.arange(33 << 17, dtype=np.float64).reshape(1 << 10, -1))
    rc.save(a, tmp_path / "b")
    out = rc.load(tmp_path / "b")
    assert out.flags.f_contiguous and np.array_equal(out, a)


@pytest.mark.parametrize("where", [0, 200, (3 << 20) + 7, SIZE // 2, -(1 << 20) - 1, -1])
def test_a_flipped_byte_anywhere_in_a_large_part_is_refused(tmp_path, big, where):
    rc.save(big, tmp_path / "b")
    name = _record(tmp_path / "b")["name"]
    path = tmp_path / "b" / name
    raw = bytearray(path.read_bytes())
    raw[where] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(rc.IntegrityError, match=f"{name}.*digest"):
        rc.load(tmp_path / "b")
    raw[where] ^= 0x40
    path.write_bytes(bytes(raw))
    assert np.array_equal(rc.load(tmp_path / "b"), big)


def test_a_large_part_cut_short_or_extended_is_refused(tmp_path, big):
    rc.save(big, tmp_path / "b")
    name = _record(tmp_path / "b")["name"]
    path = tmp_path / "b" / name
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(rc.IntegrityError, match=f"{name}.*truncated"):
        rc.load(tmp_path / "b")
    path.write_bytes(raw + b"x")
    with pytest.raises(rc.IntegrityError, match=f"{name}.*longer"):
        rc.load(tmp_path / "b")


def test_many_large_loads_at_once_each_get_their_own_bytes(tmp_path, big):
    from concurrent.futures import ThreadPoolExecutor

    arrays = [big[i:] for i in (0, 1, 2, 3)]
    for i, a in enumerate(arrays):
        rc.save(a, tmp_path / f"b{i}")
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda i: rc.load(tmp_path / f"b{i}"), range(4)))
    for a, out in zip(arrays, outs):
        assert np.array_equal(out, a)
