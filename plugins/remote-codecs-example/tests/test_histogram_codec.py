"""The tutorial codec passes the conformance kit, and keeps reading its old version."""

from __future__ import annotations

import json

import numpy as np
import pytest
from remote_codecs_example import Histogram
from remote_codecs_example.codec import HistogramCodec

import remote_codecs as rc
from remote_codecs.testing import codec_checks

SAMPLES = [
    Histogram.of(np.random.default_rng(0).normal(size=1000), bins=12, label="noise"),
    Histogram(edges=np.array([0.0, 1.0]), counts=np.array([3], dtype=np.int32), meta={"unit": "s"}),
]


@pytest.mark.parametrize("check", codec_checks(), ids=lambda c: c.__name__.removeprefix("check_"))
def test_conformance(check, tmp_path):
    # The histogram module imports numpy itself, so the light module to check is the
    # registration module's parent package only when numpy is not needed to import it.
    check(
        HistogramCodec,
        SAMPLES,
        tmp_path=tmp_path,
        registration_module="remote_codecs",
        library="remote_codecs_example.codec",
    )


def test_reads_format_version_1(tmp_path):
    """An artifact written by version 1 (counts in the manifest) still loads."""
    folder = tmp_path / "b"
    rc.save(SAMPLES[1], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    part = manifest["parts"][0]
    part["codec_version"] = 1
    part["meta"]["counts"] = [3]
    part["files"] = [f for f in part["files"] if ".counts" not in f["name"]]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    back = rc.load(folder, allow_pickle=False)
    assert back.counts.tolist() == [3] and back.meta == {"unit": "s"}


def test_found_through_the_entry_point():
    (part,) = rc.inspect(rc.dumps(SAMPLES[0])).parts
    assert part.codec == "example.Histogram/npy" and part.codec_version == 2
    assert part.provider == "remote-codecs-example"
