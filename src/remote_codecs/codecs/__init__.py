"""Built-in codecs, one module per library, and the types refused at encode time.

The tables below are all that is imported at start-up: a codec's module (and its
library) is imported the first time an object of one of its types is seen, or the
first time a manifest names its id.
"""

from __future__ import annotations

# (codec id, "module:Class", qualified type names handled)
BUILTIN_CODECS: list[tuple[str, str, tuple[str, ...]]] = [
    ("bytes/raw", "remote_codecs.codecs.raw:BytesCodec", ("builtins.bytes", "builtins.bytearray")),
    ("numpy.ndarray/npy", "remote_codecs.codecs.numpy:NDArrayCodec", ("numpy.ndarray",)),
    # numpy.bytes_ is named too: its MRO reaches builtins.bytes before numpy.generic
    (
        "numpy.generic/raw",
        "remote_codecs.codecs.numpy:ScalarCodec",
        ("numpy.generic", "numpy.bytes_"),
    ),
    (
        "numpy.ma.MaskedArray/npy",
        "remote_codecs.codecs.numpy:MaskedArrayCodec",
        ("numpy.ma.MaskedArray", "numpy.ma.core.MaskedArray"),
    ),
    ("numpy.dtype/descr", "remote_codecs.codecs.numpy:DTypeCodec", ("numpy.dtype",)),
    ("pyarrow.Table/ipc", "remote_codecs.codecs.arrow:TableCodec", ("pyarrow.lib.Table",)),
    (
        "pyarrow.RecordBatch/ipc",
        "remote_codecs.codecs.arrow:RecordBatchCodec",
        ("pyarrow.lib.RecordBatch",),
    ),
    ("pyarrow.Array/ipc", "remote_codecs.codecs.arrow:ArrayCodec", ("pyarrow.lib.Array",)),
    (
        "pyarrow.ChunkedArray/ipc",
        "remote_codecs.codecs.arrow:ChunkedArrayCodec",
        ("pyarrow.lib.ChunkedArray",),
    ),
    ("torch.Tensor/raw", "remote_codecs.codecs.torch:TensorCodec", ("torch.Tensor",)),
    ("xgboost.Booster/ubj", "remote_codecs.codecs.xgboost:BoosterCodec", ("xgboost.core.Booster",)),
    (
        "xgboost.XGBModel/ubj",
        "remote_codecs.codecs.xgboost:SklearnModelCodec",
        ("xgboost.sklearn.XGBModel",),
    ),
    (
        "sklearn.BaseEstimator/skops",
        "remote_codecs.codecs.sklearn:EstimatorCodec",
        ("sklearn.base.BaseEstimator",),
    ),
    ("scipy.sparse/npy", "remote_codecs.codecs.scipy:SparseCodec", ("scipy.sparse._base._spbase",)),
    (
        "tensorflow.Tensor/npy",
        "remote_codecs.codecs.tensorflow:TensorCodec",
        ("tensorflow.python.framework.ops._EagerTensorBase",),
    ),
    (
        "tensorflow.Variable/npy",
        "remote_codecs.codecs.tensorflow:VariableCodec",
        ("tensorflow.python.ops.variables.Variable",),
    ),
    (
        "keras.Model/keras",
        "remote_codecs.codecs.keras:ModelCodec",
        ("keras.src.models.model.Model",),
    ),
    # pandas 3 names its public classes "pandas.X"; pandas 2 "pandas.core.<module>.X"
    (
        "pandas.DataFrame/arrow",
        "remote_codecs.codecs.pandas:DataFrameCodec",
        ("pandas.DataFrame", "pandas.core.frame.DataFrame"),
    ),
    (
        "pandas.Series/arrow",
        "remote_codecs.codecs.pandas:SeriesCodec",
        ("pandas.Series", "pandas.core.series.Series"),
    ),
    (
        "pandas.Index/arrow",
        "remote_codecs.codecs.pandas:IndexCodec",
        ("pandas.Index", "pandas.core.indexes.base.Index"),
    ),
]

_CONNECTION = (
    "Pass what is needed to open it (a path, a URL, settings) and open it inside the function."
)

# (qualified type name, what to pass instead)
BUILTIN_REJECTIONS: list[tuple[str, str]] = [
    (
        "_thread.lock",
        "A lock only means something inside one process: create it inside the function.",
    ),
    (
        "_thread.RLock",
        "A lock only means something inside one process: create it inside the function.",
    ),
    (
        "threading.Condition",
        "Synchronisation objects cannot travel: create them inside the function.",
    ),
    ("threading.Event", "Synchronisation objects cannot travel: create them inside the function."),
    (
        "threading.Semaphore",
        "Synchronisation objects cannot travel: create them inside the function.",
    ),
    ("threading.Thread", "A thread cannot travel: start it inside the function."),
    ("socket.socket", _CONNECTION),
    ("ssl.SSLSocket", _CONNECTION),
    ("sqlite3.Connection", _CONNECTION),
    ("sqlite3.Cursor", _CONNECTION),
    (
        "_io._IOBase",
        "An open file cannot travel: pass its path (and read it inside the function), or its contents.",
    ),
    (
        "builtins.generator",
        "A generator cannot travel: pass a list (list(gen)) or what is needed to make it inside the function.",
    ),
    (
        "builtins.coroutine",
        "A coroutine cannot travel: pass the coroutine function and its arguments instead.",
    ),
    (
        "builtins.async_generator",
        "An async generator cannot travel: pass a list of its items instead.",
    ),
    ("builtins.frame", "A stack frame cannot travel."),
    ("subprocess.Popen", "A running process cannot travel: start it inside the function."),
    ("multiprocessing.pool.Pool", "A process pool cannot travel: create it inside the function."),
    (
        "concurrent.futures._base.Executor",
        "An executor cannot travel: create it inside the function.",
    ),
    (
        "dask.base.DaskMethodsMixin",
        "A dask collection (DataFrame, Array, Bag, Delayed) cannot travel: pass the data's path "
        "and read it inside the function, and return compute()d summaries rather than collections.",
    ),
    (
        "tensorflow.python.data.ops.dataset_ops.DatasetV2",
        "A tf.data.Dataset cannot travel: pass the path of its data and build the dataset inside the function.",
    ),
    ("psycopg2.extensions.connection", _CONNECTION),
    ("psycopg.Connection", _CONNECTION),
    ("pymysql.connections.Connection", _CONNECTION),
    ("sqlalchemy.engine.base.Engine", _CONNECTION),
    ("sqlalchemy.engine.base.Connection", _CONNECTION),
    ("sqlalchemy.orm.session.Session", _CONNECTION),
    ("redis.client.Redis", _CONNECTION),
    ("pymongo.mongo_client.MongoClient", _CONNECTION),
    ("requests.sessions.Session", _CONNECTION),
    ("http.client.HTTPConnection", _CONNECTION),
    (
        "xgboost.core.DMatrix",
        "An xgboost DMatrix cannot travel: pass the DataFrame or array (and labels) instead, "
        "and build the DMatrix inside the function.",
    ),
]
