"""What an attacker without the key can do to a bundle: rewrite its files, craft zips by
hand, plant pickles. Shared by the tests of ``tests/security``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

import remote_codecs as rc


class Planted:
    """Unpickling this creates ``path`` (a directory): proof that planted code ran."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


def evil_pickle(path: os.PathLike[str] | str) -> bytes:
    return pickle.dumps(Planted(path))


def digest(data: bytes) -> str:
    """A digest the bundle format reads (README: sha256 is read too)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


def raw_zip(entries: Iterable[tuple[str, bytes] | tuple[str, bytes, int]]) -> bytes:
    """A stored zip written byte by byte, so that names and declared sizes can be anything
    (``zipfile`` would refuse or rewrite some of them). A third item forges the size that
    both the local header and the central directory declare."""
    out = io.BytesIO()
    central = []
    for entry in entries:
        name, data = entry[0], entry[1]
        size = entry[2] if len(entry) == 3 else len(data)  # type: ignore[misc]
        raw_name = name.encode("utf-8")
        crc = zlib.crc32(data)
        offset = out.tell()
        out.write(
            struct.pack(
                "<4s5H3L2H", b"PK\x03\x04", 20, 0x800, 0, 0, 0, crc, size, size, len(raw_name), 0
            )
        )
        out.write(raw_name)
        out.write(data)
        central.append(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0x800,
                0,
                0,
                0,
                crc,
                size,
                size,
                len(raw_name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + raw_name
        )
    start = out.tell()
    for c in central:
        out.write(c)
    end = out.tell()
    out.write(
        struct.pack(
            "<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), end - start, start, 0
        )
    )
    return out.getvalue()


def zip_files(files: dict[str, bytes]) -> bytes:
    """A stored zip of ``files`` made with zipfile, as dumps() makes them."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


def manifest_of(files: dict[str, bytes]) -> dict[str, Any]:
    return json.loads(files["manifest.json"])


def encode_manifest(m: dict[str, Any]) -> bytes:
    return json.dumps(m).encode()


def rename_part_file(m: dict[str, Any], new: str) -> None:
    m["parts"][0]["files"][0]["name"] = new


def read_folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def files_named(root: Path, needle: str) -> list[Path]:
    """Every path under ``root`` whose name contains ``needle`` (symlinks not followed)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            if needle in n:
                found.append(Path(dirpath) / n)
    return found


def refusal(
    fn: Callable[[], Any], *names: str, error: type[BaseException] = rc.DeserializationError
) -> BaseException:
    """Run ``fn``; it must raise ``error`` (a DeserializationError unless told) whose message
    names one of ``names``. Returns the exception."""
    with pytest.raises(BaseException) as info:
        fn()
    exc = info.value
    assert isinstance(exc, error), f"expected {error.__name__}, got {type(exc).__name__}: {exc!r}"
    text = str(exc)
    if names:
        assert any(n in text for n in names), f"the error names none of {names!r}: {text!r}"
    return exc


class Blocked(AssertionError):
    pass


def bounded(fn: Callable[[], Any], fifos: Iterable[Path] = (), limit: float = 10.0) -> Any:
    """Run ``fn`` in a thread; if it is still running after ``limit`` seconds (a hang
    detector, not a timing assertion) open every FIFO in ``fifos`` for writing to unblock
    it and fail. Returns fn's value or re-raises its exception."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    if t.is_alive():
        for f in fifos:
            try:
                fd = os.open(f, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                pass
        t.join(limit)
        raise Blocked(f"blocked for more than {limit}s (a FIFO was read as a file)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def same(a: Any, b: Any) -> bool:
    """Deep equality that understands numpy arrays, pandas objects and plain objects."""
    import numpy as np
    import pandas as pd

    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if isinstance(a, (pd.DataFrame, pd.Series, pd.Index)):
        return bool(a.equals(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if hasattr(a, "__dict__") and not isinstance(a, type):
        return same(vars(a), vars(b))
    return bool(a == b)


class Box:
    """A value no codec handles: it travels in a pickled skeleton, its array as a part."""

    def __init__(self, label: str, array: Any) -> None:
        self.label = label
        self.array = array
