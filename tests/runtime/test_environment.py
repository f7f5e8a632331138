"""The job's environment: variables, pre-execution commands, working directory, dependencies."""

from __future__ import annotations

import os
import sys

import pytest

from remote_runtime import CustomFileFilter, RuntimeEnvironmentError, remote


def read_env(name):
    return os.environ.get(name)


def test_environment_variables_and_no_key_leak():
    f = remote(environment_variables={"MY_SETTING": "42"}, stream_logs=False)(read_env)
    assert f("MY_SETTING") == "42"
    assert f("REMOTE_RUNTIME_JOB_KEY") is None


def read_file(name):
    with open(name) as fh:
        return fh.read().strip()


def test_pre_execution_commands_run_in_the_job_workdir():
    f = remote(
        pre_execution_commands=["echo prepared > marker.txt", "echo more >> marker.txt"],
        stream_logs=False,
    )(read_file)
    assert f("marker.txt") == "prepared\nmore"


def test_pre_execution_script(tmp_path):
    script = tmp_path / "setup.sh"
    script.write_text("set -e\necho from-script > marker.txt\n")
    assert (
        remote(pre_execution_script=str(script), stream_logs=False)(read_file)("marker.txt")
        == "from-script"
    )


def test_failing_pre_execution_command_is_an_environment_error():
    f = remote(pre_execution_commands=["echo broken >&2; exit 7"], stream_logs=False)(read_file)
    with pytest.raises(RuntimeEnvironmentError, match=r"exit code 7[\s\S]*broken"):
        f("x")


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no such requirements file"):
        remote(dependencies=str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="pre_execution_commands or pre_execution_script"):
        remote(pre_execution_commands=["true"], pre_execution_script=__file__)
    with pytest.raises(ValueError, match="max_runtime_in_seconds"):
        remote(max_runtime_in_seconds=0)
    with pytest.raises(ValueError, match="instance_type 'gpu-large'"):
        remote(instance_type="gpu-large")
    with pytest.raises(ValueError, match="no such interpreter"):
        remote(python="/no/python")


def _project(tmp_path):
    proj = tmp_path / "project"
    (proj / "pkg").mkdir(parents=True)
    (proj / "pkg" / "__init__.py").write_text("")
    (proj / "pkg" / "helpers.py").write_text("def scale(x):\n    return 10 * x\n")
    (proj / "data").mkdir()
    (proj / "data" / "big.csv").write_text("a,b\n")
    (proj / "notes.txt").write_text("hello")
    (proj / "nb.ipynb").write_text("{}")
    return proj


def use_helpers(x):
    import pkg.helpers

    return pkg.helpers.scale(x), sorted(os.listdir("."))


def test_include_local_workdir_ships_python_files(tmp_path, monkeypatch, job_root):
    proj = _project(tmp_path)
    monkeypatch.chdir(proj)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(proj))])
    value, listing = remote(include_local_workdir=True, stream_logs=False)(use_helpers)(4)
    assert value == 40
    assert "pkg" in listing and "notes.txt" not in listing and "data" not in listing
    (job,) = job_root.iterdir()
    assert (job / "workdir" / "workspace.zip").exists()


def test_custom_file_filter(tmp_path, monkeypatch):
    proj = _project(tmp_path)
    monkeypatch.chdir(proj)
    _, listing = remote(
        include_local_workdir=True,
        custom_file_filter=CustomFileFilter(["data", "*.ipynb"]),
        stream_logs=False,
    )(use_helpers)(1)
    assert "notes.txt" in listing and "data" not in listing and "nb.ipynb" not in listing

    def only_pkg(folder, names):
        return [n for n in names if n not in ("pkg", "__init__.py", "helpers.py")]

    _, listing = remote(include_local_workdir=True, custom_file_filter=only_pkg, stream_logs=False)(
        use_helpers
    )(1)
    assert listing == ["pkg"]


def version_of(dist):
    from importlib.metadata import version

    return version(dist)


@pytest.mark.slow
def test_dependencies_run_in_a_cached_venv(tmp_path):
    # An old pin: whether or not six is installed here, the job must see exactly this one.
    req = tmp_path / "requirements.txt"
    req.write_text("six==1.15.0\n")
    f = remote(dependencies=str(req), stream_logs=False)(version_of)
    assert f("six") == "1.15.0"
    envs = list((tmp_path / "cache" / "remote-runtime" / "envs").iterdir())
    assert len([e for e in envs if e.is_dir()]) == 1
    ready = next(e for e in envs if e.is_dir()) / ".ready"
    stamp = ready.stat().st_mtime
    assert f("six") == "1.15.0"  # the venv is reused, not rebuilt
    assert ready.stat().st_mtime == stamp


def test_failing_dependency_install_is_an_environment_error(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("this-package-does-not-exist-anywhere-xyz==0.0.1\n")
    with pytest.raises(RuntimeEnvironmentError, match="install the job's dependencies"):
        remote(dependencies=str(req), stream_logs=False)(version_of)("six")


def test_auto_capture_lists_installed_distributions(job_root):
    from remote_runtime.environment import auto_capture_requirements

    text = auto_capture_requirements()
    assert "cloudpickle==" in text and "remote-runtime" not in text
    assert remote(dependencies="auto_capture", stream_logs=False)(version_of)(
        "cloudpickle"
    ) == version_of("cloudpickle")
