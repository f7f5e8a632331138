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


def test_keras_lambda_layers_are_refused_by_safe_mode():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda z: z * 2)])
    data = rc.dumps(model)
    with pytest.raises(rc.DeserializationError, match="(?i)safe_mode|lambda"):
        rc.loads(data)


def test_tf_data_is_refused():
    ds = tf.data.Dataset.range(10)
    with pytest.raises(rc.SerializationError, match=r"value\['data'\].*Dataset.*path"):
        rc.dumps({"data": ds})


def test_tensorflow_is_imported_only_when_seen():
    code = "import sys, numpy, remote_codecs as rc; rc.dumps(numpy.ones(2)); print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
