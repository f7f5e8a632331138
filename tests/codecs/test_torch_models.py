"""torch, tested the way people use it: real architectures built here (a CNN in
channels_last, a transformer encoder, batch norm, tied weights), views sharing a base,
strided and expanded tensors, quantized and sparse tensors; generated views (hypothesis);
and crafted parts that try to read out of bounds.

Equal means: same values (bit for bit), dtype, shape, strides, storage offset, storage
sharing, and the same outputs; a resumed optimizer takes identical steps.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import remote_codecs as rc  # noqa: E402
from bundles import edit_manifest  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _round_trip(value, **kwargs):
    return rc.loads(rc.dumps(value), allow_pickle=False, **kwargs)


def _same_tensor(a, b):
    assert type(a) is type(b)
    assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
    assert a.stride() == b.stride() and a.storage_offset() == b.storage_offset()
    assert a.is_conj() == b.is_conj() and a.requires_grad == b.requires_grad
    if a.numel():
        x, y = a.detach().resolve_conj(), b.detach().resolve_conj()
        bits = lambda z: torch.empty(z.shape, dtype=z.dtype).copy_(z).reshape(-1).view(torch.uint8)  # noqa: E731
        assert torch.equal(bits(x), bits(y))


def _shares(a, b):
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


# -- views, strides, expanded tensors -------------------------------------------------------


@pytest.mark.parametrize("order", ["base-first", "view-first"])
def test_views_of_one_base_keep_sharing_storage(order):
    b = torch.arange(16.0)
    value = {"b": b, "v": b[4:10]} if order == "base-first" else {"v": b[4:10], "b": b}
    back = _round_trip(value)
    _same_tensor(back["b"], b)
    _same_tensor(back["v"], b[4:10])
    back["b"][5] = 100.0
    assert back["v"][1] == 100.0  # writing the loaded base shows in the loaded view


def test_state_dict_of_tied_weights_shares_one_storage():
    emb = torch.nn.Embedding(50, 8)
    head = torch.nn.Linear(8, 50, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    sd = model.state_dict()
    data = rc.dumps(sd)
    assert rc.inspect(data).size < 2 * 50 * 8 * 4  # the weight is stored once
    back = rc.loads(data, allow_pickle=False)
    assert _shares(back["emb.weight"], back["head.weight"])
    fresh = torch.nn.ModuleDict(
        {"emb": torch.nn.Embedding(50, 8), "head": torch.nn.Linear(8, 50, bias=False)}
    )
    fresh.load_state_dict(back)
    assert torch.equal(fresh["emb"].weight, emb.weight)


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.arange(12.0).reshape(3, 4).t(),
        lambda: torch.arange(24.0).reshape(2, 3, 4).permute(2, 0, 1),
        lambda: torch.arange(60.0).reshape(3, 4, 5)[1:, ::2, 1::3],
        lambda: torch.randn(2, 3, 5, 5).to(memory_format=torch.channels_last),
        lambda: torch.randn(2, 3, 2, 5, 5).to(memory_format=torch.channels_last_3d),
        lambda: torch.arange(10.0)[3:],
        lambda: torch.randn(4, dtype=torch.complex64).conj(),
        lambda: torch.randn(3, 4, dtype=torch.complex128).t().conj(),
        lambda: torch.arange(8, dtype=torch.int16).view(2, 4)[:, 1:3],
    ],
    ids=[
        "t",
        "permute",
        "stepped",
        "channels_last",
        "channels_last_3d",
        "offset",
        "conj",
        "conj-t",
        "int16",
    ],
)
def test_strides_offsets_and_conj_are_kept(make):
    t = make()
    _same_tensor(_round_trip(t), t)


def test_expanded_tensor_is_not_written_as_a_full_copy():
    position_ids = torch.arange(512).expand((64, -1))
    assert position_ids.stride() == (0, 1)
    data = rc.dumps({"position_ids": position_ids})
    assert rc.inspect(data).size <= 512 * 8  # the storage, not 64 copies of it
    back = rc.loads(data, allow_pickle=False)["position_ids"]
    _same_tensor(back, position_ids)


def test_small_view_of_a_large_storage_is_written_small():
    big = torch.zeros(4 << 20)  # 16 MiB
    piece = big[1000:1010]
    data = rc.dumps(piece)
    assert len(data) < 64 << 10
    back = rc.loads(data, allow_pickle=False)
    assert torch.equal(back, piece) and back.stride() == piece.stride()


def test_view_dtype_reinterpretation_shares_storage():
    f = torch.randn(8)
    raw = f.view(torch.int32)
    back = _round_trip({"f": f, "raw": raw})
    assert _shares(back["f"], back["raw"]) and torch.equal(back["raw"], raw)


def test_map_location_keeps_strides_and_sharing():
    b = torch.arange(20.0).reshape(4, 5)
    value = {"b": b, "t": b.t(), "row": b[2]}
    for target in ("cpu", torch.device("cpu"), {"cpu": "cpu"}):
        back = _round_trip(value, map_location=target)
        _same_tensor(back["t"], b.t())
        assert _shares(back["b"], back["t"]) and _shares(back["b"], back["row"])
    seen = []
    back = _round_trip(value, map_location=lambda t, origin: seen.append(origin) or t)
    assert seen == ["cpu"] * 3 and _shares(back["b"], back["t"])


# -- real architectures ------------------------------------------------------------------------


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, groups=2),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
        )
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def _train(model, steps, make_batch, opt=None):
    opt = opt or torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    model.train()
    for i in range(steps):
        x, y = make_batch(i)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return opt


def _cnn_batch(i):
    g = torch.Generator().manual_seed(i)
    x = torch.randn(6, 3, 12, 12, generator=g).to(memory_format=torch.channels_last)
    return x, torch.randint(0, 4, (6,), generator=g)


def test_channels_last_conv2d_gives_identical_outputs():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
    assert conv.weight.stride() == (27, 1, 9, 3)
    back = rc.loads(rc.dumps(conv))
    assert back.weight.stride() == (27, 1, 9, 3)
    x = torch.randn(2, 3, 9, 9).to(memory_format=torch.channels_last)
    assert torch.equal(back(x), conv(x))
    sd = _round_trip(conv.state_dict())
    assert sd["weight"].stride() == (27, 1, 9, 3)


def test_cnn_in_channels_last_with_batch_norm_round_trips_and_resumes():
    torch.manual_seed(0)
    model = SmallCNN().to(memory_format=torch.channels_last)
    opt = _train(model, 3, _cnn_batch)
    model.eval()
    x, _ = _cnn_batch(99)
    # the module itself (pickled skeleton, typed tensor parts)
    back = rc.loads(rc.dumps(model)).eval()
    for a, b in zip(model.state_dict().values(), back.state_dict().values()):
        _same_tensor(b, a)
    assert int(back.features[1].num_batches_tracked) == 3
    assert torch.equal(back(x), model(x))
    # state dicts without pickle, and training resumed from them takes identical steps
    data = rc.dumps({"model": model.state_dict(), "opt": opt.state_dict()})
    assert not rc.inspect(data).needs_pickle
    loaded = rc.loads(data, allow_pickle=False)
    resumed = SmallCNN().to(memory_format=torch.channels_last)
    resumed.load_state_dict(loaded["model"])
    opt2 = torch.optim.AdamW(resumed.parameters(), lr=1e-2, weight_decay=0.1)
    opt2.load_state_dict(loaded["opt"])
    _train(model, 3, lambda i: _cnn_batch(10 + i), opt)
    _train(resumed, 3, lambda i: _cnn_batch(10 + i), opt2)
    for (name, a), (_, b) in zip(model.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_transformer_encoder_round_trips_and_resumes():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(
        d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, batch_first=True
    )
    model = torch.nn.Sequential(
        torch.nn.TransformerEncoder(layer, num_layers=2), torch.nn.Linear(16, 3)
    )

    def batch(i):
        g = torch.Generator().manual_seed(i)
        return torch.randn(4, 7, 16, generator=g), torch.randint(0, 3, (4, 7), generator=g)

    def loss_model(m):
        class Wrap(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m(x).reshape(-1, 3)

        return Wrap()

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    wrapped = loss_model(model)
    _train(wrapped, 2, lambda i: (batch(i)[0], batch(i)[1].reshape(-1)), opt)
    model.eval()
    x, _ = batch(50)
    back = rc.loads(rc.dumps(model)).eval()
    assert torch.equal(back(x), model(x))
    loaded = _round_trip({"model": model.state_dict(), "opt": opt.state_dict()})
    fresh = torch.nn.Sequential(
        torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True), 2
        ),
        torch.nn.Linear(16, 3),
    )
    fresh.load_state_dict(loaded["model"])
    opt2 = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["opt"])
    fresh.eval()
    assert torch.equal(fresh(x), model(x))
    step = lambda i: (batch(20 + i)[0], batch(20 + i)[1].reshape(-1))  # noqa: E731
    _train(wrapped, 2, step, opt)
    _train(loss_model(fresh), 2, step, opt2)
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name


def test_module_with_expanded_position_ids_buffer():
    class Embeddings(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = torch.nn.Embedding(30, 8)
            self.pos = torch.nn.Embedding(64, 8)
            self.register_buffer("position_ids", torch.arange(64).expand((1, -1)), persistent=False)

        def forward(self, x):
            return self.tok(x) + self.pos(self.position_ids[:, : x.shape[1]])

    model = Embeddings()
    back = rc.loads(rc.dumps(model))
    assert back.position_ids.stride() == model.position_ids.stride()
    x = torch.tensor([[1, 2, 3]])
    assert torch.equal(back(x), model(x))


# -- quantized, sparse, meta ------------------------------------------------------------------


def _quantized():
    x = torch.linspace(-3, 3, 24).reshape(2, 3, 4)
    return {
        "qint8": torch.quantize_per_tensor(x, 0.05, 3, torch.qint8),
        "quint8": torch.quantize_per_tensor(x, 0.1, 128, torch.quint8),
        "qint32": torch.quantize_per_tensor(x, 0.001, 0, torch.qint32),
        "per-channel": torch.quantize_per_channel(
            x, torch.tensor([0.1, 0.2], dtype=torch.float64), torch.tensor([0, 5]), 0, torch.qint8
        ),
        "per-channel-axis2": torch.quantize_per_channel(
            x,
            torch.rand(4, dtype=torch.float64) + 0.01,
            torch.tensor([1, 2, 3, 4]),
            2,
            torch.quint8,
        ),
    }


@pytest.mark.parametrize("name", sorted(_quantized()))
def test_quantized_tensors_without_pickle(name):
    q = _quantized()[name]
    data = rc.dumps({"q": q})
    assert not rc.inspect(data).needs_pickle
    back = rc.loads(data, allow_pickle=False)["q"]
    assert back.dtype == q.dtype and back.shape == q.shape and back.qscheme() == q.qscheme()
    assert torch.equal(back.int_repr(), q.int_repr())
    if q.qscheme() == torch.per_tensor_affine:
        assert back.q_scale() == q.q_scale() and back.q_zero_point() == q.q_zero_point()
    else:
        assert torch.equal(back.q_per_channel_scales(), q.q_per_channel_scales())
        assert torch.equal(back.q_per_channel_zero_points(), q.q_per_channel_zero_points())
        assert back.q_per_channel_axis() == q.q_per_channel_axis()


def _sparse():
    dense = torch.zeros(6, 4)
    dense[0, 1], dense[3, 2], dense[5, 0], dense[5, 3] = 1.5, -2.0, 3.0, 4.0
    uncoalesced = torch.sparse_coo_tensor(
        torch.tensor([[0, 0, 2], [1, 1, 0]]), torch.tensor([1.0, 2.0, 3.0]), (3, 3)
    )
    return {
        "coo": dense.to_sparse(),
        "coo-uncoalesced": uncoalesced,
        "coo-hybrid": torch.randn(5, 3).to_sparse(1),
        "coo-int64-values": dense.long().to_sparse(),
        "csr": dense.to_sparse_csr(),
        "csc": dense.to_sparse_csc(),
        "bsr": dense.to_sparse_bsr((2, 2)),
        "bsc": dense.to_sparse_bsc((2, 2)),
        "coo-grad": dense.to_sparse().requires_grad_(),
    }


@pytest.mark.parametrize("name", sorted(_sparse()))
def test_sparse_tensors_without_pickle(name):
    s = _sparse()[name]
    data = rc.dumps([s])
    assert not rc.inspect(data).needs_pickle
    back = rc.loads(data, allow_pickle=False)[0]
    assert back.layout == s.layout and back.dtype == s.dtype and back.shape == s.shape
    assert back.requires_grad == s.requires_grad
    if s.layout == torch.sparse_coo:
        assert back.is_coalesced() == s.is_coalesced()
        assert torch.equal(back._indices(), s._indices()) and torch.equal(
            back._values(), s._values()
        )
    else:
        assert torch.equal(back.values(), s.values())
    assert torch.equal(back.detach().to_dense(), s.detach().to_dense())


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.empty(3, 4, device="meta"),
        lambda: torch.empty(3, 4, device="meta", dtype=torch.bfloat16).t(),
        lambda: torch.nn.Parameter(torch.empty(2, 2, device="meta")),
    ],
)
def test_meta_tensors_without_pickle(make):
    t = make()
    back = _round_trip(t)
    assert type(back) is type(t) and back.device.type == "meta"
    assert back.dtype == t.dtype and back.shape == t.shape and back.stride() == t.stride()


def test_meta_device_module_skeleton():
    with torch.device("meta"):
        model = torch.nn.Linear(1000, 1000)
    data = rc.dumps(model.state_dict())
    assert rc.inspect(data).size == 0
    back = rc.loads(data, allow_pickle=False)
    assert back["weight"].device.type == "meta" and back["weight"].shape == (1000, 1000)


# -- generated views (hypothesis) ---------------------------------------------------------------

DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int8,
    torch.int64,
    torch.bool,
    torch.complex64,
    torch.uint8,
]


@st.composite
def views(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    base = (torch.arange(int(torch.tensor(shape).prod())) % 7 - 3).to(dtype).reshape(shape)
    out = {"base": base}
    for i in range(draw(st.integers(1, 4))):
        v = base
        for _ in range(draw(st.integers(0, 3))):
            op = draw(st.sampled_from(["slice", "t", "expand", "unsqueeze", "select", "flip-free"]))
            if op == "slice" and v.dim():
                d = draw(st.integers(0, v.dim() - 1))
                start = draw(st.integers(0, max(0, v.shape[d])))
                step = draw(st.integers(1, 3))
                v = v.narrow(d, start, v.shape[d] - start)[
                    (slice(None),) * d + (slice(None, None, step),)
                ]
            elif op == "t" and v.dim() >= 2:
                a, b = draw(st.permutations(range(v.dim())))[:2]
                v = v.transpose(a, b)
            elif op == "expand" and v.dim() and 1 in v.shape:
                d = v.shape.index(1)
                v = v.expand(*[3 if j == d else -1 for j in range(v.dim())])
            elif op == "unsqueeze":
                v = v.unsqueeze(draw(st.integers(0, v.dim())))
            elif op == "select" and v.dim() > 1 and v.shape[0]:
                v = v[draw(st.integers(0, v.shape[0] - 1))]
        out[f"v{i}"] = v
    return out


@settings(max_examples=60, deadline=None)
@given(views())
def test_generated_views_round_trip_exactly(value):
    back = _round_trip(value)
    for k, v in value.items():
        _same_tensor(back[k], v)
        if v.numel():
            assert _shares(back[k], back["base"]), k


# -- crafted parts ------------------------------------------------------------------------------


def _meta(i):
    return lambda edit: lambda manifest: edit(manifest["parts"][i]["meta"])


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(stride=[1 << 40]),
        lambda m: m.update(shape=[1 << 20], stride=[1]),
        lambda m: m.update(offset=15),
        lambda m: m.update(offset=-1),
        lambda m: m.update(stride=[-1]),
        lambda m: m.update(shape=[2, 8], stride=[8]),
        lambda m: m.update(shape=[4, 4], stride=[1 << 62, 1]),
        lambda m: m.update(dtype="float64"),
        lambda m: m.update(dtype="__class__"),
        lambda m: m.update(layout="pickle"),
        lambda m: m.update(shape="16"),
    ],
)
def test_crafted_strides_and_offsets_are_refused_before_reading(edit):
    data = rc.dumps({"b": torch.arange(16.0)})
    bad = edit_manifest(data, lambda manifest: edit(manifest["parts"][0]["meta"]))
    with pytest.raises(rc.DeserializationError):
        rc.loads(bad, allow_pickle=False)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(storage_part=1),  # itself
        lambda m: m.update(storage_part=2),  # a later part
        lambda m: m.update(storage_part="0"),
        lambda m: m.update(storage_part=0, offset=10, shape=[7]),  # past the shared storage
    ],
)
def test_crafted_storage_references_are_refused(edit):
    b = torch.arange(16.0)
    data = rc.dumps([b, b[4:10], torch.ones(2)])
    assert rc.inspect(data).parts[1].meta["storage_part"] == 0
    bad = edit_manifest(data, lambda manifest: edit(manifest["parts"][1]["meta"]))
    with pytest.raises(rc.DeserializationError):
        rc.loads(bad, allow_pickle=False)


def test_reference_to_a_part_that_holds_no_storage_is_refused():
    b = torch.arange(16.0)
    data = rc.dumps([np.zeros(16, np.float32), b, b[4:10]])
    parts = rc.inspect(data).parts
    assert parts[2].meta["storage_part"] == 1

    def edit(manifest):
        manifest["parts"][2]["meta"]["storage_part"] = 0

    with pytest.raises(rc.DeserializationError, match="holds no tensor storage"):
        rc.loads(edit_manifest(data, edit), allow_pickle=False)


def test_crafted_sparse_indices_are_refused():
    s = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 0]]), torch.tensor([1.0, 2.0]), (2, 2))
    data = rc.dumps(s)
    bad = edit_manifest(data, lambda m: m["parts"][0]["meta"].update(shape=[1, 1]))
    with pytest.raises(rc.DeserializationError):
        rc.loads(bad, allow_pickle=False)
    csr = torch.eye(3).to_sparse_csr()
    bad = edit_manifest(rc.dumps(csr), lambda m: m["parts"][0]["meta"].update(shape=[2, 2]))
    with pytest.raises(rc.DeserializationError):
        rc.loads(bad, allow_pickle=False)


def test_parts_written_by_format_v1_still_load():
    t = torch.arange(12.0).reshape(3, 4)

    def as_v1(manifest):
        part = manifest["parts"][0]
        part["codec_version"] = 1
        meta = part["meta"]
        for key in ("layout", "stride", "offset"):
            meta.pop(key)

    back = rc.loads(edit_manifest(rc.dumps(t), as_v1), allow_pickle=False)
    _same_tensor(back, t)
