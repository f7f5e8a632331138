"""remote_runtime: run a Python function somewhere else and get back its value or exception."""

from __future__ import annotations
