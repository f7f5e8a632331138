from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_job_root(job_root):
    """Every test here gets its own job root (tests/conftest.py)."""
    return job_root


def job_folders(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []
