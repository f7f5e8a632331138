"""The job's environment: a cached venv for its requirements, and pre-execution commands.

A job with ``dependencies`` runs in a venv keyed by the hash of its requirements (and
the interpreter): created once, reused by every later job with the same requirements.
The venv is layered over the interpreter's own site-packages (a ``.pth`` file adds them
after the venv's), so only what is missing or pinned differently is installed.
"""

from __future__ import annotations

import hashlib
import os
import site
import subprocess
import sys
import sysconfig

from .errors import RuntimeEnvironmentError
from .job import cache_dir

__all__ = ["auto_capture_requirements", "ensure_venv", "run_pre_execution", "venv_dir"]


def venv_dir(requirements: str, python: str | None = None) -> str:
    python = os.path.realpath(python or sys.executable)
    digest = hashlib.sha256(f"{python}\n{sys.version}\n{requirements}".encode()).hexdigest()[:20]
    return os.path.join(cache_dir(), "envs", digest)


def _venv_python(env: str) -> str:
    return os.path.join(env, "Scripts" if os.name == "nt" else "bin", "python")


def ensure_venv(requirements: str) -> str:
    """The interpreter of the venv for ``requirements`` (created and installed on first use)."""
    env = venv_dir(requirements)
    python = _venv_python(env)
    ready = os.path.join(env, ".ready")
    if os.path.exists(ready):
        return python
    os.makedirs(os.path.dirname(env), exist_ok=True)
    import fcntl

    with open(env + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one job builds it; the others wait, then reuse it
        if os.path.exists(ready):
            return python
        print(f"remote-runtime: creating the job environment {env}", flush=True)
        _run([sys.executable, "-m", "venv", "--without-pip", "--clear", env], "create the venv")
        purelib = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        parents = [
            p
            for p in dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
            if os.path.isdir(p)
        ]
        with open(os.path.join(purelib, "_remote_runtime_parent.pth"), "w") as f:
            f.write("import site; " + "; ".join(f"site.addsitedir({p!r})" for p in parents) + "\n")
        req_file = os.path.join(env, "requirements.txt")
        with open(req_file, "w") as f:
            f.write(requirements)
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                python,
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
                req_file,
            ],
            "install the job's dependencies",
        )
        with open(ready, "w") as f:
            f.write("ok\n")
    return python


def _run(cmd: list[str], what: str) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:  # quiet unless it fails (pip says a line per installed package)
        if out.stdout:
            print(out.stdout, end="", flush=True)
        sys.stderr.write(out.stderr)
        raise RuntimeEnvironmentError(
            f"could not {what} (exit code {out.returncode}):\n{out.stderr.strip()[-4000:]}"
        )


def auto_capture_requirements() -> str:
    """The client's installed distributions as pinned requirements (editable and local
    installs, and remote-runtime itself, are left out: they cannot be installed by name)."""
    import json
    from importlib.metadata import distributions

    lines = set()
    for dist in distributions():
        name = dist.metadata["Name"]
        if not name or name.lower() in ("remote-runtime", "pip", "setuptools", "wheel"):
            continue
        direct = dist.read_text("direct_url.json")
        if direct:
            info = json.loads(direct)
            if info.get("dir_info", {}).get("editable") or info.get("url", "").startswith("file:"):
                continue
        lines.add(f"{name}=={dist.version}")
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def run_pre_execution(commands: list[str] | None, script: str | None, cwd: str) -> None:
    """Run the pre-execution commands (or script) in ``cwd``; a failure stops the job."""
    steps = [(c, c) for c in commands or []]
    if script is not None:
        import shlex

        steps.append(  # as SageMaker runs it: stop at the first failing line
            (f"bash -eu {shlex.quote(script)}", f"pre_execution_script {os.path.basename(script)}")
        )
    for cmd, label in steps:
        out = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True, check=False)
        if out.stdout:
            print(out.stdout, end="", flush=True)
        if out.stderr:
            sys.stderr.write(out.stderr)
            sys.stderr.flush()
        if out.returncode != 0:
            raise RuntimeEnvironmentError(
                f"pre-execution command {label!r} failed with exit code {out.returncode}:\n"
                f"{out.stderr.strip()[-4000:]}"
            )
