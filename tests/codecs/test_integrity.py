"""Bad input: every broken bundle is a clear DeserializationError / IntegrityError,
and nothing is unpickled before verification (or ever, with allow_pickle=False)."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

import remote_codecs as rc

KEY = b"k" * 32


class Planted:
    """Unpickling this creates a file: proof that pickle ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def marker(tmp_path):
    return str(tmp_path / "pwned")


def _rezip(data: bytes, edit) -> bytes:
    """Rewrite a single-file bundle, passing each (name, bytes) through ``edit``."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            content = edit(name, src.read(name))
            if content is not None:
                dst.writestr(name, content)
    return out.getvalue()


def test_allow_pickle_false_never_unpickles(marker):
    data = rc.dumps({"x": Planted(marker)})
    with pytest.raises(rc.DeserializationError, match="allow_pickle=False"):
        rc.loads(data, allow_pickle=False)
    assert not os.path.exists(marker)


def test_pickle_part_inside_typed_codec_refused_in_safe_mode(marker):
    class PickleCodec(rc.Codec):
        id = "test.Planted/pickle"
        types = (rc.type_name(Planted),)

        def encode(self, obj, writer):
            writer.pickle(".pkl", obj)

        def decode(self, reader, meta, version):
            return reader.unpickle(".pkl")

    reg = rc.Registry(entry_points=False)
    reg.register(PickleCodec)
    data = rc.dumps([Planted(marker)], registry=reg)
    assert rc.inspect(data).parts[0].pickle
    with pytest.raises(rc.DeserializationError, match="stored with pickle"):
        rc.loads(data, allow_pickle=False, registry=reg)
    assert not os.path.exists(marker)


def test_tampered_pickle_skeleton_is_not_unpickled(marker):
    data = rc.dumps({"x": Planted(marker + "-original")})
    import pickle

    evil = pickle.dumps(Planted(marker))
    tampered = _rezip(data, lambda n, b: evil if n == "skeleton.pkl" else b)
    with pytest.raises(rc.IntegrityError):
        rc.loads(tampered)
    assert not os.path.exists(marker)


def test_manifest_rewritten_to_match_tampered_part_fails_with_key(marker):
    import hashlib
    import pickle

    data = rc.dumps({"x": Planted(marker + "-original")}, key=KEY)
    evil = pickle.dumps(Planted(marker))

    def edit(name, content):
        if name == "skeleton.pkl":
            return evil
        if name == "manifest.json":
            m = json.loads(content)
            m["skeleton"].update(
                size=len(evil), digest="sha256:" + hashlib.sha256(evil).hexdigest()
            )
            return json.dumps(m).encode()
        return content

    with pytest.raises(rc.IntegrityError, match="signature"):
        rc.loads(_rezip(data, edit), key=KEY)
    assert not os.path.exists(marker)


def test_wrong_key_and_missing_signature():
    signed = rc.dumps([1, 2], key=KEY)
    assert rc.loads(signed, key=KEY) == [1, 2]
    assert rc.inspect(signed).signed
    with pytest.raises(rc.IntegrityError, match="signature mismatch"):
        rc.loads(signed, key=b"other")
    with pytest.raises(rc.IntegrityError, match="not signed"):
        rc.loads(rc.dumps([1, 2]), key=KEY)
    assert rc.loads(signed, key=KEY.decode()) == [1, 2]  # str keys are utf-8 bytes


def test_manifest_edit_breaks_signature():
    data = rc.dumps({"lr": 0.1}, key=KEY)

    def edit(name, content):
        if name == "manifest.json":
            return content.replace(b"0.1", b"0.2")
        return content

    with pytest.raises(rc.IntegrityError):
        rc.loads(_rezip(data, edit), key=KEY)


@pytest.mark.parametrize("offset", [0, 100, -1])
def test_flipped_byte_in_any_part(tmp_path, offset):
    rc.save({"a": np.arange(1000.0), "b": b"q" * 100_000}, tmp_path / "b")
    for part in ("0.npy", "1.bin"):
        path = tmp_path / "b" / part
        raw = bytearray(path.read_bytes())
        raw[offset] ^= 0x01
        path.write_bytes(bytes(raw))
        with pytest.raises(rc.IntegrityError, match="digest"):
            rc.load(tmp_path / "b")
        raw[offset] ^= 0x01
        path.write_bytes(bytes(raw))
    rc.load(tmp_path / "b")


def test_truncated_and_extended_part(tmp_path):
    rc.save(np.arange(1000.0), tmp_path / "b")
    path = tmp_path / "b" / "0.npy"
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(rc.IntegrityError, match="truncated"):
        rc.load(tmp_path / "b")
    path.write_bytes(raw + b"extra")
    with pytest.raises(rc.IntegrityError, match="longer"):
        rc.load(tmp_path / "b")
    path.unlink()
    with pytest.raises(rc.IntegrityError, match="missing"):
        rc.load(tmp_path / "b")


def test_truncated_single_file_bundle():
    data = rc.dumps(np.arange(1000.0))
    for cut in (10, len(data) // 2, len(data) - 5):
        with pytest.raises(rc.DeserializationError):
            rc.loads(data[:cut])
    with pytest.raises(rc.DeserializationError, match="not a bundle"):
        rc.loads(b"hello")


def test_corrupt_byte_in_single_file_bundle():
    data = bytearray(rc.dumps(np.arange(1000.0)))
    data[500] ^= 0xFF
    with pytest.raises(rc.IntegrityError):
        rc.loads(bytes(data))


def test_missing_manifest(tmp_path):
    rc.save(np.arange(10), tmp_path / "b")
    (tmp_path / "b" / "manifest.json").unlink()
    with pytest.raises(rc.DeserializationError, match="manifest.json is missing"):
        rc.load(tmp_path / "b")
    with pytest.raises(rc.DeserializationError, match="missing"):
        rc.load(tmp_path / "nothing-here")


def test_corrupt_manifest(tmp_path):
    rc.save([1], tmp_path / "b")
    (tmp_path / "b" / "manifest.json").write_text("{not json")
    with pytest.raises(rc.DeserializationError, match="not valid JSON"):
        rc.load(tmp_path / "b")
    (tmp_path / "b" / "manifest.json").write_text('{"format": 1, "skeleton": {}}')
    with pytest.raises(rc.DeserializationError, match="malformed"):
        rc.load(tmp_path / "b")


def _edit_manifest(folder, fn):
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    fn(m)
    path.write_text(json.dumps(m))


def test_unknown_format_version(tmp_path):
    rc.save([1], tmp_path / "b")
    _edit_manifest(tmp_path / "b", lambda m: m.update(format=99))
    with pytest.raises(rc.DeserializationError, match="format 99 is not supported.*upgrade"):
        rc.load(tmp_path / "b")


def test_unknown_codec_names_its_package(tmp_path):
    rc.save([np.arange(3)], tmp_path / "b")

    def edit(m):
        m["parts"][0]["codec"] = "acme.Widget/blob"
        m["parts"][0]["provider"] = "acme-codecs"

    _edit_manifest(tmp_path / "b", edit)
    with pytest.raises(
        rc.DeserializationError,
        match="unknown codec .acme.Widget/blob.*install the plugin.*'acme-codecs'",
    ) as caught:
        rc.load(tmp_path / "b")
    assert "pip install" not in str(caught.value)  # the bundle's word is not a command


def test_newer_codec_version_is_refused(tmp_path):
    rc.save([np.arange(3)], tmp_path / "b")
    _edit_manifest(tmp_path / "b", lambda m: m["parts"][0].update(codec_version=7))
    with pytest.raises(rc.DeserializationError, match="v7.*reads up to v1"):
        rc.load(tmp_path / "b")


def test_reference_to_unknown_part(tmp_path):
    rc.save({"a": np.arange(3)}, tmp_path / "b")
    _edit_manifest(tmp_path / "b", lambda m: m["skeleton"]["value"].update(a={"$part": 5}))
    with pytest.raises(rc.DeserializationError, match="unknown part"):
        rc.load(tmp_path / "b")


def test_save_replaces_a_bundle_but_not_a_foreign_folder(tmp_path):
    rc.save(np.arange(3), tmp_path / "b")
    rc.save({"x": 1}, tmp_path / "b")
    assert rc.load(tmp_path / "b") == {"x": 1}
    assert sorted(os.listdir(tmp_path / "b")) == ["manifest.json"]
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not part of a bundle"):
        rc.save([1], tmp_path / "home")
    assert (tmp_path / "home" / "notes.txt").read_text() == "keep me"


def test_failed_encode_leaves_no_bundle(tmp_path):
    import threading

    with pytest.raises(rc.SerializationError):
        rc.save({"a": np.arange(10), "lock": threading.Lock()}, tmp_path / "b")
    with pytest.raises(rc.DeserializationError, match="missing"):
        rc.load(tmp_path / "b")
    assert not [p for p in (tmp_path / "b").iterdir()] if (tmp_path / "b").exists() else True
