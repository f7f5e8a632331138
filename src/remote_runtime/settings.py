"""Job settings: the names SageMaker's remote functions use, and where each value came from.

Precedence: argument > environment variable ``REMOTE_RUNTIME_<NAME>`` > config file >
default. Config files: the one named by ``REMOTE_RUNTIME_CONFIG``, else
``./remote-runtime.yaml`` over ``$XDG_CONFIG_HOME/remote-runtime/remote-runtime.yaml``.
A config file holds the settings as top-level snake_case keys, or in SageMaker's layout
(``SageMaker: PythonSDK: Modules: RemoteFunction: {S3RootUri: ...}``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_ROOT", "CustomFileFilter", "Settings", "resolve_settings"]

DEFAULT_ROOT = os.path.join("~", ".remote-runtime", "jobs")
ENV_PREFIX = "REMOTE_RUNTIME_"
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class CustomFileFilter:
    """Which files ``include_local_workdir`` uploads: everything but these name patterns.

    As in SageMaker: with a filter, all files of the working directory are taken except
    those (or folders) whose name matches one of ``ignore_name_patterns`` (fnmatch).
    """

    ignore_name_patterns: tuple[str, ...] = ("data", "*.ipynb")

    def __init__(self, ignore_name_patterns: list[str] | tuple[str, ...] | None = None) -> None:
        object.__setattr__(
            self,
            "ignore_name_patterns",
            tuple(
                ignore_name_patterns if ignore_name_patterns is not None else ("data", "*.ipynb")
            ),
        )


FileFilter = Callable[[str, list[str]], list[str]] | CustomFileFilter


@dataclass(frozen=True)
class Settings:
    """Every setting of a remote function or executor. Build with :func:`resolve_settings`."""

    # -- settings with a meaning here
    s3_root_uri: str = DEFAULT_ROOT
    instance_type: str | None = None
    dependencies: str | None = None
    pre_execution_commands: list[str] | None = None
    pre_execution_script: str | None = None
    environment_variables: dict[str, str] | None = None
    include_local_workdir: bool = False
    custom_file_filter: Any = None
    job_name_prefix: str | None = None
    max_runtime_in_seconds: int | None = 24 * 3600
    max_retry_attempts: int = 1
    keep_alive_period_in_seconds: int = 0
    python: str | None = None
    backend: str = "local"
    ray_address: str | None = None
    stream_logs: bool = True
    storage_options: dict[str, Any] | None = None
    s3_kms_key: str | None = None
    # -- bounds on waiting for services (see the README's "Faults and time limits")
    store_timeout_in_seconds: int = 60
    final_write_retry_in_seconds: int = 300
    ray_timeout_in_seconds: int = 30
    # -- SageMaker's settings with no local meaning: accepted and recorded in job.json
    role: str | None = None
    image_uri: str | None = None
    instance_count: int = 1
    volume_size: int = 30
    volume_kms_key: str | None = None
    tags: Any = None
    subnets: list[str] | None = None
    security_group_ids: list[str] | None = None
    encrypt_inter_container_traffic: bool | None = None
    enable_network_isolation: bool | None = None
    use_spot_instances: bool = False
    max_wait_time_in_seconds: int | None = None
    job_conda_env: str | None = None
    spark_config: Any = None
    use_torchrun: bool = False
    use_mpirun: bool = False
    nproc_per_node: int | None = None
    disable_output_compression: bool = False
    sagemaker_session: Any = field(default=None, compare=False)

    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def describe(self) -> str:
        """The effective settings and where each came from, one per line."""
        lines = []
        for f in dataclasses.fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            if f.name == "s3_root_uri":
                value = root_uri(self)
            lines.append(f"{f.name:<34} {value!r:<40} ({self.sources.get(f.name, 'default')})")
        return "\n".join(lines)

    def recorded(self) -> dict[str, Any]:
        """The settings as JSON for job.json (never a secret: storage options are left out)."""
        return dict(self._recorded)

    @functools.cached_property
    def _recorded(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("sources", "storage_options", "sagemaker_session"):
                continue
            value = getattr(self, f.name)
            if f.name == "custom_file_filter" and value is not None:
                value = (
                    list(value.ignore_name_patterns)
                    if isinstance(value, CustomFileFilter)
                    else repr(value)
                )
            try:
                json.dumps(value)
            except TypeError:
                value = repr(value)
            out[f.name] = value
        return out


SETTING_NAMES = frozenset(f.name for f in dataclasses.fields(Settings) if f.name != "sources")
# Aliases accepted as arguments (SageMaker spells some settings two ways).
ALIASES = {"environment": "environment_variables", "base_job_name": "job_name_prefix"}


def root_uri(settings: Settings) -> str:
    uri = settings.s3_root_uri
    return uri if "://" in uri else os.path.abspath(os.path.expanduser(uri))


# -- parsing values from text (environment variables) ----------------------------------------

_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}


def _field_kind(name: str) -> str:
    default = {f.name: f for f in dataclasses.fields(Settings)}[name]
    text = str(default.type)
    if "bool" in text:
        return "bool"
    if text.startswith("int"):
        return "int"
    if "list" in text:
        return "list"
    if "dict" in text:
        return "dict"
    return "str"


def _parse_text(name: str, text: str) -> Any:
    kind = _field_kind(name)
    try:
        if kind == "bool":
            low = text.strip().lower()
            if low in _BOOL_TRUE:
                return True
            if low in _BOOL_FALSE:
                return False
            raise ValueError(f"not a boolean: {text!r}")
        if kind == "int":
            return None if text.strip().lower() in ("", "none") else int(text)
        if kind == "list":
            return json.loads(text) if text.lstrip().startswith("[") else [text]
        if kind == "dict":
            if text.lstrip().startswith("{"):
                return json.loads(text)
            return dict(item.split("=", 1) for item in text.split(",") if item)
        return text
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={text!r}: {exc}") from None


# -- config files ---------------------------------------------------------------------------------

_SAGEMAKER_KEYS = {
    "S3RootUri": "s3_root_uri",
    "S3KmsKeyId": "s3_kms_key",
    "Dependencies": "dependencies",
    "PreExecutionCommands": "pre_execution_commands",
    "PreExecutionScript": "pre_execution_script",
    "EnvironmentVariables": "environment_variables",
    "IncludeLocalWorkDir": "include_local_workdir",
    "InstanceType": "instance_type",
    "ImageUri": "image_uri",
    "JobCondaEnvironment": "job_conda_env",
    "RoleArn": "role",
    "Tags": "tags",
    "VolumeKmsKeyId": "volume_kms_key",
    "EnableInterContainerTrafficEncryption": "encrypt_inter_container_traffic",
}


def _from_sagemaker_layout(data: Mapping[str, Any], path: str) -> dict[str, Any]:
    try:
        section = data["SageMaker"]["PythonSDK"]["Modules"]["RemoteFunction"]
    except (KeyError, TypeError):
        return {}
    out: dict[str, Any] = {}
    for key, value in section.items():
        if key == "CustomFileFilter":
            out["custom_file_filter"] = CustomFileFilter(value.get("IgnoreNamePatterns", []))
        elif key == "VpcConfig":
            out["subnets"] = value.get("Subnets")
            out["security_group_ids"] = value.get("SecurityGroupIds")
        elif key in _SAGEMAKER_KEYS:
            out[_SAGEMAKER_KEYS[key]] = value
        else:
            out[re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()] = value
    return out


def config_paths() -> list[str]:
    """The config files read, lowest precedence first."""
    named = os.environ.get(ENV_PREFIX + "CONFIG")
    if named:
        if not os.path.isfile(named):
            raise FileNotFoundError(f"{ENV_PREFIX}CONFIG names {named!r}, which does not exist")
        return [named]
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    candidates = [
        os.path.join(base, "remote-runtime", "remote-runtime.yaml"),
        "remote-runtime.yaml",
    ]
    return [p for p in candidates if os.path.isfile(p)]


def _read_config(path: str) -> dict[str, Any]:
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a mapping of settings")
    values = _from_sagemaker_layout(data, path) if "SageMaker" in data else dict(data)
    values.pop("SchemaVersion", None)
    unknown = sorted(set(values) - SETTING_NAMES)
    if unknown:
        raise ValueError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    if isinstance(values.get("custom_file_filter"), list):
        values["custom_file_filter"] = CustomFileFilter(values["custom_file_filter"])
    return values


def check_names(kwargs: Mapping[str, Any], where: str = "remote()") -> dict[str, Any]:
    """Map aliases; an unknown keyword is a TypeError (as Python raises for a call)."""
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        real = ALIASES.get(name, name)
        if real not in SETTING_NAMES:
            import difflib

            close = difflib.get_close_matches(name, sorted(SETTING_NAMES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"{where} got an unexpected keyword argument {name!r}{hint}")
        out[real] = value
    return out


def resolve_settings(kwargs: Mapping[str, Any], where: str = "remote()") -> Settings:
    """Settings from arguments, environment, config files and defaults (in that order)."""
    arguments = check_names(kwargs, where)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for path in config_paths():
        for name, value in _read_config(path).items():
            values[name] = value
            sources[name] = f"config {os.path.abspath(path)}"
    for name in SETTING_NAMES:
        text = os.environ.get(ENV_PREFIX + name.upper())
        if text is not None:
            values[name] = _parse_text(name, text)
            sources[name] = f"env {ENV_PREFIX}{name.upper()}"
    for name, value in arguments.items():
        values[name] = value
        sources[name] = "argument"
    _check_types(values, sources)
    settings = Settings(**values, sources=sources)
    _validate(settings)
    _check_backend_support(settings)
    return settings


# -- types: checked when the function is decorated, naming the setting -------------------------

_PATHS = ("s3_root_uri", "dependencies", "pre_execution_script", "python")
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "s3_root_uri": ((str,), "a folder or URI string"),
    "instance_type": ((str,), "a string such as 'ml.m5.large'"),
    "dependencies": ((str,), "a requirements file path or 'auto_capture'"),
    "pre_execution_script": ((str,), "a script path"),
    "include_local_workdir": ((bool,), "True or False"),
    "job_name_prefix": ((str,), "a string"),
    "python": ((str,), "an interpreter path or name"),
    "backend": ((str,), "'local' or 'ray'"),
    "ray_address": ((str,), "an address string such as 'http://head:8265'"),
    "stream_logs": ((bool,), "True or False"),
    "storage_options": ((dict,), "a dict of fsspec options, e.g. {'anon': True}"),
    "s3_kms_key": ((str,), "a KMS key id, ARN or alias string"),
    "role": ((str,), "a role name or ARN string"),
    "image_uri": ((str,), "an image URI string"),
    "instance_count": ((int,), "an integer"),
    "volume_size": ((int,), "an integer (GB)"),
    "volume_kms_key": ((str,), "a KMS key string"),
    "use_spot_instances": ((bool,), "True or False"),
    "job_conda_env": ((str,), "a conda environment name"),
    "use_torchrun": ((bool,), "True or False"),
    "use_mpirun": ((bool,), "True or False"),
    "nproc_per_node": ((int,), "an integer"),
    "disable_output_compression": ((bool,), "True or False"),
    "max_wait_time_in_seconds": ((int,), "an integer"),
}


def _check_types(values: dict[str, Any], sources: Mapping[str, str]) -> None:
    for name in _PATHS:
        if isinstance(values.get(name), os.PathLike):
            values[name] = os.fspath(values[name])
    for name, (types, what) in _TYPES.items():
        value = values.get(name)
        if value is None:
            continue
        ok = isinstance(value, types) and not (
            bool not in types and int in types and isinstance(value, bool)
        )
        if not ok:
            where = sources.get(name, "default")
            raise TypeError(
                f"setting {name}={value!r} ({where}) must be {what}, not {type(value).__name__}"
            )


# -- what a backend cannot honour ----------------------------------------------------------------

_warned: set[str] = set()
_GPU_TYPE = re.compile(r"^ml\.(p\d|g\d)")


def _warn_once(key: str, message: str) -> None:
    if key in _warned:
        return
    _warned.add(key)
    import warnings

    warnings.warn(message, UserWarning, stacklevel=4)


@functools.lru_cache(maxsize=1)
def _has_gpu() -> bool:
    import shutil

    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")) or bool(
        shutil.which("nvidia-smi")
    )


def _check_backend_support(s: Settings) -> None:
    """Settings that change what runs and that this backend cannot honour: an error when
    given as an argument or variable, a warning (once) when they come from a config file
    (shared with SageMaker) or are commonly passed harmlessly (image_uri, spot)."""
    backend = f"the {s.backend} backend"
    refused = {
        "instance_count": (s.instance_count not in (None, 1), "runs every job on one machine"),
        "use_torchrun": (bool(s.use_torchrun), "does not launch torchrun"),
        "use_mpirun": (bool(s.use_mpirun), "does not launch mpirun"),
        "nproc_per_node": (s.nproc_per_node not in (None, 1), "starts one process per job"),
        "job_conda_env": (s.job_conda_env is not None, "does not activate conda environments"),
    }
    for name, (given, why) in refused.items():
        if not given:
            continue
        message = (
            f"setting {name}={getattr(s, name)!r} cannot be honoured: {backend} {why}. "
            f"Remove it (or run on SageMaker, which supports it)."
        )
        if str(s.sources.get(name, "")).startswith("config "):
            _warn_once(name, message + f" Ignored here (from {s.sources[name]}).")
        else:
            raise ValueError(message)
    if s.image_uri is not None:
        _warn_once(
            "image_uri",
            f"setting image_uri={s.image_uri!r} is ignored: {backend} runs jobs with "
            "this machine's Python environment, not in a container image",
        )
    if s.use_spot_instances:
        _warn_once("use_spot_instances", f"setting use_spot_instances=True is ignored on {backend}")
    if (
        s.backend == "local"
        and s.instance_type is not None
        and _GPU_TYPE.match(s.instance_type)
        and not _has_gpu()
    ):
        _warn_once(
            f"gpu:{s.instance_type}",
            f"instance_type={s.instance_type!r} has GPUs but this machine has none: "
            "the local backend runs the job on the CPU",
        )
    if s.s3_kms_key is not None and not root_uri(s).startswith(("s3://", "s3a://")):
        _warn_once(
            "s3_kms_key",
            f"setting s3_kms_key is ignored: the job root {root_uri(s)} is not an s3:// URI "
            "(SSE-KMS applies to uploads to S3 only)",
        )


def _validate(s: Settings) -> None:
    def positive(name: str, value: Any, allow_none: bool = True, minimum: int = 1) -> None:
        if value is None and allow_none:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

    positive("max_runtime_in_seconds", s.max_runtime_in_seconds)
    positive("max_retry_attempts", s.max_retry_attempts, allow_none=False)
    positive("store_timeout_in_seconds", s.store_timeout_in_seconds, allow_none=False)
    positive(
        "final_write_retry_in_seconds", s.final_write_retry_in_seconds, allow_none=False, minimum=0
    )
    positive("ray_timeout_in_seconds", s.ray_timeout_in_seconds, allow_none=False)
    positive(
        "keep_alive_period_in_seconds", s.keep_alive_period_in_seconds, allow_none=False, minimum=0
    )
    if s.backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {s.backend!r}"
        )
    if (
        s.instance_type not in (None, "local")
        and not str(s.instance_type).startswith("ml.")
        and s.backend == "local"
    ):
        raise ValueError(
            f"instance_type {s.instance_type!r} cannot run on the local backend: use 'local' or an 'ml.*' name"
        )
    if s.dependencies is not None and str(s.dependencies).endswith((".yml", ".yaml")):
        raise ValueError(
            f"dependencies={s.dependencies!r} is a conda environment file: this backend installs "
            "pip requirements only. Give a requirements.txt (the packages of the file's "
            "`pip:` section, and pip names for its conda packages)"
        )
    if s.dependencies not in (None, "auto_capture") and not os.path.isfile(str(s.dependencies)):
        raise ValueError(
            f"dependencies={s.dependencies!r}: no such requirements file (give a path to a "
            "requirements.txt, or 'auto_capture')"
        )
    if s.pre_execution_commands is not None and s.pre_execution_script is not None:
        raise ValueError("give pre_execution_commands or pre_execution_script, not both")
    if s.pre_execution_script is not None and not os.path.isfile(s.pre_execution_script):
        raise ValueError(f"pre_execution_script={s.pre_execution_script!r}: no such file")
    if s.pre_execution_commands is not None and (
        not isinstance(s.pre_execution_commands, list)
        or not all(isinstance(c, str) for c in s.pre_execution_commands)
    ):
        raise ValueError("pre_execution_commands must be a list of shell command strings")
    if s.environment_variables is not None and not (
        isinstance(s.environment_variables, dict)
        and all(
            isinstance(k, str) and isinstance(v, str) for k, v in s.environment_variables.items()
        )
    ):
        raise ValueError("environment_variables must be a dict of str to str")
    if s.custom_file_filter is not None and not (
        isinstance(s.custom_file_filter, CustomFileFilter) or callable(s.custom_file_filter)
    ):
        raise ValueError(
            "custom_file_filter must be a CustomFileFilter or a function(path, names) -> ignored names"
        )
    if s.python is not None and not os.path.isfile(s.python):
        import shutil

        if shutil.which(s.python) is None:
            raise ValueError(f"python={s.python!r}: no such interpreter")
