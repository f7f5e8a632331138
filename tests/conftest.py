from __future__ import annotations

import pytest


@pytest.fixture
def bundle_dir(tmp_path):
    return tmp_path / "bundle"
