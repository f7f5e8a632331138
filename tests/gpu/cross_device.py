"""The real cross-device check: train on CUDA in one process, load in another process
that sees no GPU (CUDA_VISIBLE_DEVICES=""). Skipped where CUDA is not available.

    python tests/gpu/cross_device.py        # or: pytest tests/gpu/cross_device.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

torch = pytest.importorskip("torch")

TRAIN = textwrap.dedent(
    """
    import sys, torch, remote_codecs as rc
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)).cuda()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(64, 8, device="cuda"); y = x.sum(1, keepdim=True)
    for _ in range(20):
        opt.zero_grad(); loss = ((net(x) - y) ** 2).mean(); loss.backward(); opt.step()
    probe = torch.ones(2, 8, device="cuda")
    rc.save({"model": net, "state": net.state_dict(), "expected": net(probe).detach().cpu()}, sys.argv[1])
    print("trained on", next(net.parameters()).device)
    """
)

LOAD = textwrap.dedent(
    """
    import sys, torch, remote_codecs as rc
    assert not torch.cuda.is_available()
    value = rc.load(sys.argv[1])
    model = value["model"]
    assert all(p.device.type == "cpu" for p in model.parameters())
    out = model(torch.ones(2, 8)).detach()
    assert torch.allclose(out, value["expected"], atol=1e-5), (out, value["expected"])
    fresh = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    fresh.load_state_dict(value["state"])
    assert torch.allclose(fresh(torch.ones(2, 8)).detach(), value["expected"], atol=1e-5)
    print("loaded on cpu; parts were on", {p.meta["device"] for p in rc.inspect(sys.argv[1]).parts})
    """
)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_on_cuda_load_on_cpu():
    with tempfile.TemporaryDirectory() as tmp:
        bundle = os.path.join(tmp, "model")
        out = subprocess.run(
            [sys.executable, "-c", TRAIN, bundle], capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, out.stderr
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        out = subprocess.run(
            [sys.executable, "-c", LOAD, bundle],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr
        assert "cuda:0" in out.stdout


if __name__ == "__main__":
    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        sys.exit(0)
    test_train_on_cuda_load_on_cpu()
    print("ok: trained on CUDA, loaded on a CPU-only process")
