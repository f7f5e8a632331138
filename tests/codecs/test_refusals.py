"""Values that cannot travel are refused at encode time, naming where they sit."""

from __future__ import annotations

import socket
import sqlite3
import threading

import pytest

import remote_codecs as rc


class Config:
    def __init__(self, **kw):
        self.__dict__.update(kw)


@pytest.mark.parametrize(
    ("make", "hint"),
    [
        (threading.Lock, "lock"),
        (threading.RLock, "lock"),
        (lambda: (i for i in range(3)), "list"),
        (lambda: socket.socket(), "inside the function"),
        (lambda: sqlite3.connect(":memory:"), "inside the function"),
        (lambda: open(__file__), "path"),  # noqa: SIM115
    ],
    ids=["lock", "rlock", "generator", "socket", "sqlite", "file"],
)
def test_refused_with_path_and_hint(make, hint):
    obj = make()
    try:
        with pytest.raises(rc.SerializationError) as info:
            rc.dumps({"cfg": [1, {"x": obj}]})
        msg = str(info.value)
        assert "value['cfg'][1]['x']" in msg and hint in msg
        with pytest.raises(rc.SerializationError, match=r"value\['cfg'\]\.handle"):
            rc.dumps({"cfg": Config(name="n", handle=obj)})
    finally:
        close = getattr(obj, "close", None)
        if close:
            close()


def test_unpicklable_object_error_names_its_path():
    import weakref

    class Target:
        pass

    target = Target()

    class Holder:
        def __init__(self):
            self.inner = {"weird": weakref.ref(target)}
            self.ok = 1

    with pytest.raises(rc.SerializationError, match=r"value\['h'\]\.inner\['weird'\]"):
        rc.dumps({"h": Holder()})


def test_user_rejection():
    class Handle:
        pass

    reg = rc.Registry(entry_points=False)
    reg.reject(rc.type_name(Handle), "pass its id instead")
    with pytest.raises(
        rc.SerializationError, match=r"value\[0\] is a .*Handle.*pass its id instead"
    ):
        rc.dumps([Handle()], registry=reg)
    assert rc.loads(rc.dumps([1]), allow_pickle=False) == [1]


def test_bytes_and_paths_swapped_between_load_and_loads_say_which_to_use(tmp_path):
    data = rc.dumps({"a": 1})
    with pytest.raises(TypeError, match=r"not a str; for a bundle folder use remote_codecs.load"):
        rc.loads(str(tmp_path / "bundle"))
    with pytest.raises(TypeError, match=r"not a bytes; .*use remote_codecs.loads"):
        rc.load(data)
    with pytest.raises(TypeError, match=r"not a bytes; .*remote_codecs.loads / dumps"):
        rc.save({"a": 1}, str(tmp_path).encode())
    with pytest.raises(TypeError, match=r"inspect\(\) takes .* not a int; or the path or URI"):
        rc.inspect(5)
    assert rc.loads(bytearray(data)) == rc.loads(memoryview(data)) == {"a": 1}
