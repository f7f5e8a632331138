"""Settings precedence: argument > environment > config file > default."""

from __future__ import annotations

import re

import pytest

from remote_runtime import CustomFileFilter, resolve_settings
from remote_runtime.job import make_job_name


def test_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("REMOTE_RUNTIME_S3_ROOT_URI")
    s = resolve_settings({})
    assert s.max_retry_attempts == 1 and s.sources.get("max_retry_attempts") is None
    (tmp_path / "remote-runtime.yaml").write_text(
        "max_retry_attempts: 2\njob_name_prefix: from-config\n"
    )
    s = resolve_settings({})
    assert s.max_retry_attempts == 2 and s.sources["max_retry_attempts"].startswith("config ")
    monkeypatch.setenv("REMOTE_RUNTIME_MAX_RETRY_ATTEMPTS", "3")
    s = resolve_settings({})
    assert (
        s.max_retry_attempts == 3
        and s.sources["max_retry_attempts"] == "env REMOTE_RUNTIME_MAX_RETRY_ATTEMPTS"
    )
    s = resolve_settings({"max_retry_attempts": 4})
    assert s.max_retry_attempts == 4 and s.sources["max_retry_attempts"] == "argument"
    assert s.job_name_prefix == "from-config"
    text = s.describe()
    assert re.search(r"max_retry_attempts\s+4\s+\(argument\)", text)
    assert re.search(r"job_name_prefix\s+'from-config'\s+\(config ", text)


def test_user_config_dir_and_named_config(tmp_path, monkeypatch):
    user = tmp_path / "config" / "remote-runtime"
    user.mkdir(parents=True)
    (user / "remote-runtime.yaml").write_text("volume_size: 50\nmax_retry_attempts: 2\n")
    (tmp_path / "remote-runtime.yaml").write_text("max_retry_attempts: 5\n")
    s = resolve_settings({})
    assert s.volume_size == 50 and s.max_retry_attempts == 5
    named = tmp_path / "other.yaml"
    named.write_text("volume_size: 70\n")
    monkeypatch.setenv("REMOTE_RUNTIME_CONFIG", str(named))
    s = resolve_settings({})
    assert s.volume_size == 70 and s.max_retry_attempts == 1


def test_sagemaker_config_layout(tmp_path):
    (tmp_path / "remote-runtime.yaml").write_text(
        """
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      RemoteFunction:
        EnvironmentVariables: {A: '1'}
        IncludeLocalWorkDir: true
        CustomFileFilter:
          IgnoreNamePatterns: ["*.ipynb"]
        InstanceType: ml.m5.large
        PreExecutionCommands: ["echo hi"]
        RoleArn: arn:aws:iam::1:role/R
        VpcConfig:
          Subnets: [subnet-1]
          SecurityGroupIds: [sg-1]
"""
    )
    s = resolve_settings({})
    assert s.environment_variables == {"A": "1"} and s.include_local_workdir
    assert s.custom_file_filter == CustomFileFilter(["*.ipynb"])
    assert s.instance_type == "ml.m5.large" and s.role == "arn:aws:iam::1:role/R"
    assert s.subnets == ["subnet-1"] and s.pre_execution_commands == ["echo hi"]


def test_env_values_are_parsed(monkeypatch):
    monkeypatch.setenv("REMOTE_RUNTIME_INCLUDE_LOCAL_WORKDIR", "true")
    monkeypatch.setenv("REMOTE_RUNTIME_ENVIRONMENT_VARIABLES", '{"X": "1"}')
    monkeypatch.setenv("REMOTE_RUNTIME_PRE_EXECUTION_COMMANDS", '["a", "b"]')
    monkeypatch.setenv("REMOTE_RUNTIME_MAX_RUNTIME_IN_SECONDS", "60")
    s = resolve_settings({})
    assert s.include_local_workdir is True and s.environment_variables == {"X": "1"}
    assert s.pre_execution_commands == ["a", "b"] and s.max_runtime_in_seconds == 60
    monkeypatch.setenv("REMOTE_RUNTIME_STREAM_LOGS", "maybe")
    with pytest.raises(ValueError, match="REMOTE_RUNTIME_STREAM_LOGS='maybe'"):
        resolve_settings({})


def test_unknown_config_key_is_an_error(tmp_path):
    (tmp_path / "remote-runtime.yaml").write_text("max_runtime: 3\n")
    with pytest.raises(ValueError, match="unknown setting.*max_runtime"):
        resolve_settings({})


def test_aliases_and_unknown_names():
    assert resolve_settings({"environment": {"A": "b"}}).environment_variables == {"A": "b"}
    with pytest.raises(TypeError, match="did you mean 's3_root_uri'"):
        resolve_settings({"s3_root_url": "x"})


@pytest.mark.parametrize("prefix", [None, "my_job", "x" * 100, "--weird__name!!", "ünïcode"])
def test_job_names(prefix):
    name = make_job_name(prefix, fallback="fn")
    assert len(name) <= 63 and re.fullmatch(r"[a-zA-Z0-9-]+", name), name
    assert not name.startswith("-") and "--" not in name
