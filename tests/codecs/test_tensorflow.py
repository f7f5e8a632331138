"""TensorFlow tensors and variables as arrays, Keras 3 models as .keras with safe_mode,
tf.data refused; TensorFlow is imported only when one of its objects is seen."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import remote_codecs as rc  # noqa: E402


def test_tensors_and_variables():
    t = tf.constant([[1.0, 2.0], [3.0, 4.0]], dtype=tf.float16)
    v = tf.Variable(np.arange(3, dtype=np.int32), name="counter", trainable=False)
    data = rc.dumps({"t": t, "v": v, "b": tf.constant([True, False])})
    assert {p.codec for p in rc.inspect(data).parts} == {
        "tensorflow.Tensor/npy",
        "tensorflow.Variable/npy",
    }
    back = rc.loads(data, allow_pickle=False)
    assert back["t"].dtype == tf.float16 and np.array_equal(back["t"].numpy(), t.numpy())
    assert (
        isinstance(back["v"], tf.Variable)
        and back["v"].name.startswith("counter")
        and not back["v"].trainable
    )
    assert back["b"].dtype == tf.bool


def test_keras_model_round_trip_without_pickle():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).random((16, 4)).astype("float32")
    model.fit(x, x.sum(1), epochs=1, verbose=0)
    data = rc.dumps({"model": model})
    assert [p.codec for p in rc.inspect(data).parts] == ["keras.Model/keras"]
    back = rc.loads(data, allow_pickle=False)["model"]
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_keras_lambda_layer_loads_only_when_pickle_is_allowed():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda z: z * 2 + 1)])
    data = rc.dumps({"m": model})
    assert rc.inspect(data).needs_pickle  # the layer's bytecode runs on load, like pickle
    x = np.array([[1.0, 2.0]], dtype="float32")
    back = rc.loads(data, allow_pickle=True)["m"]
    np.testing.assert_array_equal(back.predict(x, verbose=0), [[3.0, 5.0]])
    with pytest.raises(rc.DeserializationError, match="allow_pickle=False"):
        rc.loads(data, allow_pickle=False)


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
def test_keras_lambda_activation_is_refused_at_encode_time():
    """Keras writes a lambda activation in a form its own load_model never reads back:
    refused when written, naming the layer, rather than written but undecodable."""
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, activation=lambda z: z * 0 + 7, name="seven")(inputs)
    model = keras.Model(inputs, outputs)
    with pytest.raises(rc.SerializationError, match="seven.*named function"):
        rc.dumps({"m": model})


def test_keras_code_meta_planted_without_pickle_flag_still_needs_the_loader_s_consent():
    """A bundle that declares code but not the pickle flag is refused without allow_pickle."""
    import io
    import json
    import zipfile

    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda z: z)])
    src = zipfile.ZipFile(io.BytesIO(rc.dumps(model)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            body = src.read(name)
            if name == "manifest.json":
                manifest = json.loads(body)
                part = manifest["parts"][0]
                part.pop("pickle")
                part["files"] = [f for f in part["files"] if f["name"].endswith(".keras")]
                body = json.dumps(manifest).encode()
            dst.writestr(name, body)
    with pytest.raises(rc.DeserializationError, match="allow_pickle=False"):
        rc.loads(out.getvalue(), allow_pickle=False)
    # and with the meta removed too, Keras' safe mode still refuses the bytecode
    src = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    out2 = io.BytesIO()
    with zipfile.ZipFile(out2, "w") as dst:
        for name in src.namelist():
            body = src.read(name)
            if name == "manifest.json":
                manifest = json.loads(body)
                manifest["parts"][0]["meta"].pop("python_code")
                body = json.dumps(manifest).encode()
            dst.writestr(name, body)
    with pytest.raises(rc.DeserializationError, match="(?i)safe_mode|lambda"):
        rc.loads(out2.getvalue(), allow_pickle=True)


def test_tf_data_is_refused():
    ds = tf.data.Dataset.range(10)
    with pytest.raises(rc.SerializationError, match=r"value\['data'\].*Dataset.*path"):
        rc.dumps({"data": ds})


def test_tensorflow_is_imported_only_when_seen():
    code = "import sys, numpy, remote_codecs as rc; rc.dumps(numpy.ones(2)); print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
