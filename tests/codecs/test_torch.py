"""torch: every dtype and device, parameters, state dicts without pickle, modules with
tied and non-persistent tensors, optimizer state, and GPU payloads loading on a CPU."""

from __future__ import annotations

import io
from unittest import mock

import pytest

torch = pytest.importorskip("torch")

import remote_codecs as rc  # noqa: E402

DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.complex64,
    torch.complex128,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
    *[
        getattr(torch, n)
        for n in ("uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2")
        if hasattr(torch, n)
    ],
]


def _sample(dtype):
    base = torch.arange(-6, 6, dtype=torch.float32).reshape(3, 4) / 3
    if dtype == torch.bool:
        return base > 0
    if dtype.is_complex:
        return torch.complex(base, -base).to(dtype)
    if dtype in (
        torch.uint8,
        getattr(torch, "uint16", None),
        getattr(torch, "uint32", None),
        getattr(torch, "uint64", None),
    ):
        return (base.abs() * 3).to(dtype)
    return (base * 3).to(dtype)


def _same(a, b):
    assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
    assert torch.equal(
        a.view(torch.uint8) if a.numel() else a, b.view(torch.uint8) if b.numel() else b
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_tensor_dtypes_round_trip_without_pickle(dtype):
    t = _sample(dtype)
    data = rc.dumps({"t": t})
    assert [p.codec for p in rc.inspect(data).parts] == ["torch.Tensor/raw"]
    _same(rc.loads(data, allow_pickle=False)["t"], t)


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.zeros(0, 3),
        lambda: torch.tensor(3.5),
        lambda: torch.arange(24.0).reshape(2, 3, 4)[:, ::2, 1:],
        lambda: torch.arange(12.0).reshape(3, 4).t(),
        lambda: torch.randn(4, 4).conj(),
        lambda: torch.randn(3, dtype=torch.cfloat).conj(),
    ],
    ids=["empty", "0-d", "strided-view", "transposed", "conj-real", "conj-complex"],
)
def test_layouts(make):
    t = make()
    back = rc.loads(rc.dumps(t), allow_pickle=False)
    assert torch.equal(back, t.resolve_conj()) and back.shape == t.shape


def test_requires_grad_and_parameters():
    t = torch.randn(3, requires_grad=True)
    p = torch.nn.Parameter(torch.randn(2, 2))
    frozen = torch.nn.Parameter(torch.randn(2), requires_grad=False)
    back = rc.loads(rc.dumps([t, p, frozen]), allow_pickle=False)
    assert back[0].requires_grad and type(back[0]) is torch.Tensor
    assert type(back[1]) is torch.nn.Parameter and back[1].requires_grad
    assert type(back[2]) is torch.nn.Parameter and not back[2].requires_grad


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.body = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.BatchNorm1d(8)
        )
        self.head = torch.nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.register_buffer("scale", torch.tensor(2.0))
        self.register_buffer("cache", torch.ones(3), persistent=False)

    def forward(self, x):
        return self.head(self.embed(x)) * self.scale


def test_state_dict_loads_without_pickle():
    net = Net()
    sd = net.state_dict()
    data = rc.dumps(sd)
    assert rc.inspect(data).skeleton_kind == "json"
    back = rc.loads(data, allow_pickle=False)
    assert list(back) == list(sd) and back._metadata == sd._metadata
    fresh = Net()
    fresh.load_state_dict(back)
    for k in sd:
        assert torch.equal(fresh.state_dict()[k], sd[k])


def test_module_keeps_structure_ties_and_buffers():
    net = Net().eval()
    net.cache.fill_(7.0)
    back = rc.loads(rc.dumps(net))
    assert type(back).__name__ == "Net"
    assert back.head.weight is back.embed.weight  # still tied
    assert torch.equal(back.cache, torch.full((3,), 7.0))  # non-persistent buffer kept
    assert "cache" not in back.state_dict()
    x = torch.tensor([1, 2, 3])
    assert torch.equal(back(x), net(x))
    parts = rc.inspect(rc.dumps(net)).parts
    assert {p.codec for p in parts} == {"torch.Tensor/raw"}
    assert len(parts) == len({id(t) for t in [*net.parameters(), *net.buffers()]})


def test_optimizer_state_dict_loads_without_pickle():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.8, 0.9))
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    back = rc.loads(rc.dumps(sd), allow_pickle=False)
    assert back["param_groups"] == sd["param_groups"]
    assert back["param_groups"][0]["betas"] == (0.8, 0.9)
    for i in sd["state"]:
        for k, v in sd["state"][i].items():
            assert torch.equal(back["state"][i][k], v)
    opt2 = torch.optim.Adam(net.parameters())
    opt2.load_state_dict(back)


def _as_if_on_cuda():
    """Make torch tag every storage as 'cuda:0' while encoding, as a naive pickle of a CUDA
    model carries (torch.save calls location_tag for every storage). This is how a GPU
    payload is produced on a machine without a GPU."""
    return mock.patch("torch.serialization.location_tag", lambda storage: "cuda:0")


def test_gpu_payload_loads_on_a_cpu_only_client():
    net = Net()
    sd = net.state_dict()
    with _as_if_on_cuda():
        naive = io.BytesIO()
        torch.save(sd, naive)
        data = rc.dumps({"model": net, "state": sd})
    # the naive payload is bound to CUDA: a CPU-only client cannot load it as it is
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(io.BytesIO(naive.getvalue()), weights_only=True)
    devices = {p.meta["device"] for p in rc.inspect(data).parts}
    assert devices == {"cuda:0"}
    back = rc.loads(data)  # the codec path: raw parts, placed on the CPU
    assert all(t.device.type == "cpu" for t in back["state"].values())
    assert all(t.device.type == "cpu" for t in back["model"].parameters())
    assert back["model"].head.weight is back["model"].embed.weight
    x = torch.tensor([4, 5])
    assert torch.equal(back["model"].eval()(x), net.eval()(x))
    back_cpu = rc.loads(data, map_location="cpu")
    assert torch.equal(back_cpu["state"]["scale"], sd["scale"])
    if not torch.cuda.is_available():
        with pytest.raises(rc.DeserializationError, match="no CUDA device"):
            rc.loads(data, map_location="cuda")
        with pytest.raises(rc.DeserializationError, match="no CUDA device"):
            rc.loads(data, map_location={"cuda:0": "cuda:1"})
    remapped = rc.loads(data, map_location={"cuda:0": "cpu"})
    assert remapped["state"]["scale"].device.type == "cpu"


def test_sparse_tensors_travel_without_pickle():
    sparse = torch.eye(3).to_sparse()
    data = rc.dumps(sparse)
    assert rc.inspect(data).skeleton_kind == "json" and not rc.inspect(data).needs_pickle
    assert torch.equal(rc.loads(data, allow_pickle=False).to_dense(), torch.eye(3))


def test_views_share_storage_in_object_store_bundles():
    """Object-store bundles tag their file names; sharing across parts still holds."""
    import uuid

    b = torch.arange(16.0)
    uri = f"memory://torch-share-{uuid.uuid4().hex}/b"
    rc.save({"b": b, "v": b[4:10]}, uri)
    back = rc.load(uri, allow_pickle=False)
    back["b"][5] = -1.0
    assert back["v"][1].item() == -1.0
