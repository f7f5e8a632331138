"""Plain structures round-trip through a JSON skeleton (no pickle), others through pickle."""

from __future__ import annotations

import collections
import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import remote_codecs as rc

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=64)
    | st.complex_numbers(allow_nan=False)
)
hashables = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(allow_nan=False)
)
plain = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=5)
        | st.dictionaries(hashables, children, max_size=5)
        | st.frozensets(hashables, max_size=5)
        | st.sets(hashables, max_size=5)
    ),
    max_leaves=30,
)


def _same(a, b):
    """Equality that also checks types all the way down (1 == 1.0 == True is not enough)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


@settings(max_examples=200, deadline=None)
@given(plain)
def test_plain_structures_round_trip_without_pickle(value):
    data = rc.dumps(value)
    assert rc.inspect(data).skeleton_kind == "json"
    _same(rc.loads(data, allow_pickle=False), value)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        -float("inf"),
        -0.0,
        {"$part": 1, "$tuple": 2},
        {1: "a", (1, 2): "b", None: "c", 2.5: "d", frozenset({1}): "e"},
        b"\x00" * 10,
        bytearray(b"abc"),
        b"x" * (1 << 20),
        bytearray(b"y" * (1 << 20)),
        "\ud800 lone surrogate",
        2**200,
        -(2**70),
        complex(float("nan"), 1),
    ],
    ids=repr,
)
def test_edge_values(value):
    back = rc.loads(rc.dumps(value), allow_pickle=False)
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)
    elif isinstance(value, complex):
        assert math.isnan(back.real) and back.imag == 1
    else:
        _same(back, value)
        if isinstance(value, float):
            assert math.copysign(1, back) == math.copysign(1, value)


def test_large_bytes_become_a_raw_part():
    m = rc.inspect(rc.dumps({"blob": b"z" * (1 << 20)}))
    assert [p.codec for p in m.parts] == ["bytes/raw"]
    assert m.skeleton_kind == "json"


@dataclasses.dataclass
class Point:
    x: int
    y: list


def test_non_plain_objects_use_a_pickle_skeleton():
    value = {
        "p": Point(1, [2, 3]),
        "od": collections.OrderedDict(a=1),
        "nt": collections.Counter("aab"),
    }
    data = rc.dumps(value)
    assert rc.inspect(data).skeleton_kind == "pickle"
    assert rc.loads(data) == value


def test_cycles_go_through_pickle():
    a: list = [1]
    a.append(a)
    back = rc.loads(rc.dumps(a))
    assert back[1] is back


def test_lambda_and_local_class_travel_by_value():
    factor = 3

    class Local:
        def __init__(self, v):
            self.v = v

    data = rc.dumps({"f": lambda x: x * factor, "obj": Local(4)})
    back = rc.loads(data)
    assert back["f"](2) == 6 and back["obj"].v == 4


def test_subclasses_of_plain_types_keep_their_type():
    class MyDict(dict):
        pass

    back = rc.loads(rc.dumps([MyDict(a=1), True, 1]))
    assert type(back[0]).__name__ == "MyDict" and back[0] == {"a": 1}
    assert back[1] is True and type(back[2]) is int
