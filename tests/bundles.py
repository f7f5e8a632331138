"""Test helpers that rewrite single-file bundles (remote_codecs.dumps: a stored zip) the
way an attacker, or another library version, would leave them. Standard library only."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any


def rewrite_member(data: bytes, member: str, change: Callable[[bytes], bytes]) -> bytes:
    """The bundle ``data`` with the bytes of its file ``member`` replaced by
    ``change(bytes)`` (nothing re-signed, nothing re-hashed)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == member:
                body = change(body)
            dst.writestr(info.filename, body)
    return out.getvalue()


def edit_manifest(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """The bundle ``data`` with its manifest changed in place by ``edit(manifest)``."""

    def change(body: bytes) -> bytes:
        manifest = json.loads(body)
        edit(manifest)
        return json.dumps(manifest).encode()

    return rewrite_member(data, "manifest.json", change)


def written_by_xgboost(data: bytes, version: str) -> bytes:
    """The bundle as if xgboost ``version`` had written it (manifest and part meta)."""

    def edit(manifest: dict[str, Any]) -> None:
        manifest["producer"]["libraries"]["xgboost"] = version
        for part in manifest["parts"]:
            part["meta"]["xgboost_version"] = version

    return edit_manifest(data, edit)
