"""What SageMaker's remote-function integration tests assert (sagemaker-python-sdk
tests/integ/sagemaker/remote_function/test_decorator.py and test_executor.py), ported onto
the local backend: AWS is replaced by a local job root, nothing else is adapted. Plus
the habits of users coming from SageMaker that issue 12 found broken.

Deliberate differences are listed in the README's "Coming from SageMaker" section and
marked ``DIFFERENCE`` here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

import remote_runtime.settings as settings_module
from remote_runtime import (
    CustomFileFilter,
    Future,
    JobFailedError,
    RemoteExecutor,
    RuntimeEnvironmentError,
    get_future,
    list_futures,
    remote,
)
from servers import status_record

QUIET = {"stream_logs": False}


def divide(x, y):
    return x / y


def square(x):
    return x * x


def job_states(root):

    if not root.exists():
        return {}
    return {
        p.name: status_record(p)["state"] for p in root.iterdir() if (p / "status.json").exists()
    }


# -- test_decorator.py: values and exceptions ----------------------------------------------------


def test_decorator():  # test_decorator
    assert remote(**QUIET)(divide)(10, 5) == 2


def test_decorated_function_raises_exception():  # test_decorated_function_raises_exception
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        remote(**QUIET)(divide)(10, 0)


class DataQualityError(ValueError):
    def __init__(self, column, frac):
        super().__init__(f"{column}: {frac:.0%} missing")
        self.column = column
        self.frac = frac


def check_quality(column):
    raise DataQualityError(column, 0.25)


def test_exception_with_its_own_init_is_caught_by_its_class():
    with pytest.raises(DataQualityError) as info:
        remote(**QUIET)(check_quality)("age")
    err = info.value
    assert err.args == ("age: 25% missing",) and err.column == "age" and err.frac == 0.25


class Falsey(Exception):
    def __bool__(self):
        return False


def raise_falsey():
    raise Falsey("still an error")


def test_exception_whose_bool_is_false_is_raised():
    with pytest.raises(Falsey):
        remote(**QUIET)(raise_falsey)()
    with RemoteExecutor(**QUIET) as ex, pytest.raises(Falsey):
        ex.submit(raise_falsey).result()


def nested():
    try:
        {}["k"]
    except KeyError as exc:
        raise RuntimeError("outer") from exc


def test_exception_chain_and_traceback():
    with pytest.raises(RuntimeError, match="outer") as info:
        remote(**QUIET)(nested)()
    assert isinstance(info.value.__cause__, KeyError)
    tb = info.value.remote_traceback
    assert __file__ in tb and '{}["k"]' in tb and "direct cause" in tb


def test_traceback_has_the_script_file_and_source_without_internal_frames(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import traceback
            from remote_runtime import remote

            @remote(stream_logs=False)
            def train(rows):
                total = sum(rows)
                return total / len([])

            try:
                train([1, 2])
            except ZeroDivisionError:
                traceback.print_exc()
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f'File "{script}", line 8, in train' in out.stderr
    assert "return total / len([])" in out.stderr
    assert "<dynamic-code>" not in out.stderr
    assert "client.py" not in out.stderr


def call_exit():
    sys.exit(3)


def test_sys_exit_in_the_function_does_not_exit_the_caller():
    # DIFFERENCE from running the function here: as on SageMaker, the job fails
    with pytest.raises(JobFailedError, match=r"sys\.exit\(3\)") as info:
        remote(**QUIET)(call_exit)()
    assert info.value.exit_code == 3


def test_return_none_and_arguments_are_copies():  # test_decorator_return_none
    items = [1]
    assert remote(**QUIET)(list.append)(items, 2) is None
    assert items == [1]


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("stream_logs", "no"),
        ("s3_root_uri", 123),
        ("job_name_prefix", 123),
        ("storage_options", "anon=true"),
        ("include_local_workdir", "yes"),
    ],
)
def test_wrong_setting_types_fail_at_decoration(setting, value):
    with pytest.raises(TypeError, match=setting):
        remote(**{setting: value})


@pytest.mark.parametrize(
    ("setting", "value"),
    [("instance_count", 4), ("use_torchrun", True), ("nproc_per_node", 8), ("job_conda_env", "x")],
)
def test_settings_the_backend_cannot_honour_are_refused(setting, value):
    with pytest.raises(ValueError, match=f"{setting}.*local backend"):
        remote(**{setting: value})


def test_settings_commonly_passed_harmlessly_warn_once(monkeypatch):
    monkeypatch.setattr(settings_module, "_warned", set())
    with pytest.warns(UserWarning, match="image_uri"):
        f = remote(image_uri="123.dkr.ecr/img:1", use_spot_instances=True, **QUIET)(square)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        remote(image_uri="123.dkr.ecr/img:1", **QUIET)(square)  # once only
    assert f(3) == 9


def test_gpu_instance_type_without_a_gpu_warns(monkeypatch):
    if settings_module._has_gpu():
        pytest.skip("this machine has a GPU")
    monkeypatch.setattr(settings_module, "_warned", set())
    with pytest.warns(UserWarning, match="ml.g5.xlarge.*CPU"):
        f = remote(instance_type="ml.g5.xlarge", **QUIET)(square)
    assert f(4) == 16


def test_s3_kms_key_with_a_local_root_is_ignored_with_a_warning(monkeypatch):
    monkeypatch.setattr(settings_module, "_warned", set())
    with pytest.warns(UserWarning, match="s3_kms_key is ignored"):
        f = remote(s3_root_uri="./jobs", s3_kms_key="alias/k", **QUIET)(square)
    assert f(5) == 25


def test_conda_environment_file_is_a_clear_error(tmp_path):
    env = tmp_path / "environment.yml"
    env.write_text("name: x\ndependencies:\n  - pip:\n    - six\n")
    with pytest.raises(ValueError, match="conda environment file.*requirements.txt"):
        remote(dependencies=str(env))


def getenv(name):
    return os.environ.get(name)


def test_decorator_with_config_file(tmp_path, job_root):  # test_decorator_with_config_file
    (tmp_path / "remote-runtime.yaml").write_text(
        textwrap.dedent(
            f"""
            SchemaVersion: '1.0'
            SageMaker:
              PythonSDK:
                Modules:
                  RemoteFunction:
                    S3RootUri: {tmp_path / "from-config"}
                    S3KmsKeyId: arn:aws:kms:us-west-2:1:key/k
                    EnvironmentVariables: {{TEST_ENV: from-config}}
                    InstanceType: ml.m5.xlarge
                    RoleArn: arn:aws:iam::1:role/R
            """
        )
    )
    os.environ.pop("REMOTE_RUNTIME_S3_ROOT_URI")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # s3_kms_key with a local root
            f = remote(**QUIET)(getenv)
        assert f("TEST_ENV") == "from-config"
    finally:
        os.environ["REMOTE_RUNTIME_S3_ROOT_URI"] = str(job_root)
    assert len(list((tmp_path / "from-config").iterdir())) == 1


# -- pre-execution and dependencies ------------------------------------------------------------------


def read(path):
    with open(path) as f:
        return f.read().strip()


def test_decorator_pre_execution_command(tmp_path):  # test_decorator_pre_execution_command
    target = tmp_path / "pre.txt"
    f = remote(pre_execution_commands=[f"echo test-content > {target}"], **QUIET)(read)
    assert f(str(target)) == "test-content"


def test_decorator_pre_execution_script_error(tmp_path):
    # test_decorator_pre_execution_script_error: the script runs with bash -eu
    script = tmp_path / "pre.sh"
    marker = tmp_path / "after"
    script.write_text(f"echo first\nbws\ntouch {marker}\n")
    with pytest.raises(RuntimeEnvironmentError, match="bws: command not found"):
        remote(pre_execution_script=str(script), **QUIET)(square)(2)
    assert not marker.exists()


def version_of(dist):
    from importlib.metadata import version

    return version(dist)


def test_with_additional_dependencies(tmp_path):  # test_with_additional_dependencies
    req = tmp_path / "requirements.txt"
    req.write_text("cloudpickle\n")  # installed here already: no download
    assert remote(dependencies=str(req), **QUIET)(version_of)("cloudpickle") == version_of(
        "cloudpickle"
    )


def test_with_non_existent_dependencies(tmp_path):  # test_with_non_existent_dependencies
    req = tmp_path / "requirements.txt"
    req.write_text("non-existent-package-xyz-remote-runtime==0.0.1\n")
    with pytest.raises(RuntimeEnvironmentError):
        remote(dependencies=str(req), **QUIET)(square)(2)


# -- working directory ---------------------------------------------------------------------------


def use_local_module():
    import local_helper

    return local_helper.VALUE


@pytest.fixture
def project(tmp_path, monkeypatch):
    proj = tmp_path / "project"
    proj.mkdir()
    (proj / "local_helper.py").write_text("VALUE = 42\n")
    (proj / "data").mkdir()
    (proj / "data" / "big.csv").write_text("a\n1\n")
    monkeypatch.chdir(proj)
    monkeypatch.syspath_prepend(str(proj))  # the caller can import it; the job may not
    return proj


def test_local_module_needs_include_local_workdir(project):
    # test_decorator_with_local_module: shipped with include_local_workdir ...
    assert remote(include_local_workdir=True, **QUIET)(use_local_module)() == 42
    # ... and not importable in the job otherwise, even though the caller can import it
    with pytest.raises(ModuleNotFoundError, match="local_helper"):
        remote(**QUIET)(use_local_module)()


def test_custom_file_filter_excludes_locally(project):  # test_with_custom_file_filter
    keep = CustomFileFilter(ignore_name_patterns=["data"])
    assert (
        remote(include_local_workdir=True, custom_file_filter=keep, **QUIET)(use_local_module)()
        == 42
    )
    drop = CustomFileFilter(ignore_name_patterns=["local_helper.py"])
    with pytest.raises(ModuleNotFoundError, match="local_helper"):
        remote(include_local_workdir=True, custom_file_filter=drop, **QUIET)(use_local_module)()


def where_am_i():
    return os.getcwd(), list(os.listdir("."))


def test_the_job_runs_in_its_own_working_directory(project):
    cwd, listing = remote(**QUIET)(where_am_i)()
    assert cwd != str(project) and listing == []


# -- calling conventions -------------------------------------------------------------------------


class Model:
    def __init__(self, factor):
        self.factor = factor

    @remote(stream_logs=False)
    def predict(self, x):
        return self.factor * x


def test_remote_on_a_method_binds_self():
    assert Model(3).predict(5) == 15


async def async_square(x):
    await asyncio.sleep(0)
    return x * x


def test_async_function_runs_to_completion_in_the_job():
    assert remote(**QUIET)(async_square)(6) == 36
    with RemoteExecutor(**QUIET) as ex:
        assert ex.submit(async_square, 7).result() == 49


remote_square = remote(stream_logs=False)(square)


def test_remote_function_passed_to_the_executor_runs_once_per_item(job_root):
    with RemoteExecutor(max_parallel_jobs=2, **QUIET) as ex:
        assert list(ex.map(remote_square, [1, 2, 3])) == [1, 4, 9]
        assert ex.submit(remote_square, 4).result() == 16
    assert len(job_states(job_root)) == 4  # no nested job per item


# -- test_executor.py ---------------------------------------------------------------------------


def test_executor_submit():  # test_executor_submit
    with RemoteExecutor(max_parallel_jobs=1, **QUIET) as e:
        future = e.submit(square, 10)
    assert future.result() == 100


def test_executor_map():  # test_executor_map
    with RemoteExecutor(max_parallel_jobs=2, **QUIET) as e:
        # DIFFERENCE: map returns a lazy iterator (concurrent.futures), not a list
        assert list(e.map(divide, [10, 20, 30], [2, 4, 5])) == [5, 5, 6]


def test_executor_map_with_exception():  # test_executor_map_with_exception
    with RemoteExecutor(max_parallel_jobs=1, **QUIET) as e:
        results = e.map(divide, [1, 2], [1, 0])
        assert next(results) == 1
        with pytest.raises(ZeroDivisionError):
            next(results)


def test_executor_bad_parallelism():  # unit test_executor_invalid_max_parallel_jobs
    with pytest.raises(ValueError, match="max_parallel_jobs"):
        RemoteExecutor(max_parallel_jobs=0)


def test_executor_submit_after_shutdown():  # unit test_executor_submit_after_shutdown
    e = RemoteExecutor(**QUIET)
    e.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        e.submit(square, 1)


def test_executor_job_name_prefix_and_list_futures(job_root):
    # test_executor_list_futures / job_name_prefix: SageMaker keeps 39 characters
    prefix = "a-prefix-of-exactly-thirty-seven-chars"[:37]
    assert len(prefix) == 37
    with RemoteExecutor(job_name_prefix=prefix, **QUIET) as e:
        names = {e.submit(square, i).job_name for i in range(2)}
    assert all(n.startswith(prefix + "-") and len(n) <= 63 for n in names)
    assert {f.job_name for f in list_futures(job_name_prefix=prefix)} == names
    long = "p" * 45
    name = remote(job_name_prefix=long, **QUIET)(square)
    name(1)
    (found,) = list(list_futures(job_name_prefix=long))
    assert found.job_name.startswith("p" * 39 + "-")


def test_executor_get_future_and_status_filter(job_root):  # test_executor_get_future
    with RemoteExecutor(job_name_prefix="gf", **QUIET) as e:
        good = e.submit(square, 3)
        bad = e.submit(divide, 1, 0)
        cf.wait([good, bad])
    again = get_future(good.job_name)
    assert isinstance(again, Future) and again.result() == 9
    assert [f.job_name for f in list_futures("gf", status="failed")] == [bad.job_name]
    assert [f.job_name for f in list_futures("gf", status="COMPLETED")] == [good.job_name]
    with pytest.raises(ValueError, match="not a job state"):
        list(list_futures("gf", status="done"))


def test_future_methods_of_sagemaker():  # Future: result, wait, cancel, running, cancelled, done
    with RemoteExecutor(max_parallel_jobs=1, **QUIET) as e:
        running = e.submit(time.sleep, 30)
        queued = e.submit(square, 2)
        assert running.wait(timeout=0.2) is None and not running.done()
        with pytest.raises(cf.TimeoutError):
            running.result(timeout=0.2)
        assert queued.cancel() and queued.cancelled() and queued.done()
        deadline = time.monotonic() + 30
        while running.status() != "InProgress" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.running()
        assert running.cancel()  # stops the job, as SageMaker's cancel stops the training job
        running.wait()
        assert running.cancelled() and running.status() == "Stopped"
        assert queued.status() == "Stopped"


def test_map_progress_counts_agree_with_the_store(job_root, capsys):
    with RemoteExecutor(max_parallel_jobs=1, **QUIET) as e:
        results = e.map(divide, [1, 1, 1, 1], [1, 0, 1, 1], progress=True)
        assert next(results) == 1
        with pytest.raises(ZeroDivisionError):
            next(results)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    states = sorted(job_states(job_root).values())
    expected = (
        f"{states.count('Completed')} completed, {states.count('Failed')} failed, "
        f"{states.count('Stopped')} stopped"
    )
    assert expected in line and "Pending" not in states


# -- the caller's process: exit and Ctrl-C ------------------------------------------------------------


def test_jobs_submitted_before_exit_run_to_completion(tmp_path, job_root):
    code = textwrap.dedent(
        """
        from remote_runtime import RemoteExecutor
        ex = RemoteExecutor(1)
        ex.submit(print, "apple")
        ex.submit(print, "banana")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "apple" in out.stdout and "banana" in out.stdout
    assert sorted(job_states(job_root).values()) == ["Completed", "Completed"]


def _interrupted_client(tmp_path, job_root, presses):
    script = tmp_path / "client.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            from remote_runtime import RemoteExecutor
            with RemoteExecutor(max_parallel_jobs=1, stream_logs=False) as ex:
                futures = [ex.submit(time.sleep, 60) for _ in range(4)]
                print("submitted", flush=True)
                futures[0].result()
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "submitted"
    deadline = time.monotonic() + 60
    while "InProgress" not in job_states(job_root).values() and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
    _, err = proc.communicate(timeout=30)  # returns promptly, not after the jobs
    return proc.returncode, err, job_states(job_root)


def test_first_ctrl_c_cancels_queued_jobs_and_names_running_ones(tmp_path, job_root):
    code, err, states = _interrupted_client(tmp_path, job_root, presses=1)
    assert code != 0 and "KeyboardInterrupt" in err
    (running,) = [name for name, state in states.items() if state == "InProgress"]
    assert "cancelled 3 queued job(s)" in err and running in err and "get_future" in err
    assert sorted(states.values()) == ["InProgress", "Stopped", "Stopped", "Stopped"]
    future = get_future(running)  # re-attach, then stop it
    assert future.cancel() and future.status() == "Stopped"


def test_second_ctrl_c_stops_the_running_jobs(tmp_path, job_root):
    code, err, states = _interrupted_client(tmp_path, job_root, presses=2)
    assert code != 0
    assert sorted(states.values()) == ["Stopped"] * 4, err
