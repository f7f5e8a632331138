"""The README's examples run as written (each python block as a script of its own)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_the_two_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    assert first_block.splitlines()[0].startswith("make demo")
    assert first_block.splitlines()[1].startswith("make test")


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tmp_path, monkeypatch, request):
    code = BLOCKS[index]
    if "s3://my-bucket" in code:  # the laptop-to-cluster example, against real servers here
        s3 = request.getfixturevalue("s3_server")  # it serves a "my-bucket" bucket too
        for k, v in s3.env.items():
            monkeypatch.setenv(k, v)
        if 'backend="ray"' in code:
            head = request.getfixturevalue("ray_head")
            for k, v in head.env.items():
                monkeypatch.setenv(k, v)
            code = code.replace("http://head:8265", head.address)
    if 'get_future("square-' in code:  # the reader's own job name: make such a job first
        setup = (
            "from remote_runtime import RemoteExecutor\n"
            "def square(x):\n    return x * x\n"
            "with RemoteExecutor() as ex:\n    NAME = ex.submit(square, 3).job_name\n"
        )
        code = setup + re.sub(r'get_future\("square-[^"]*"\)', "get_future(NAME)", code)
    code = code.replace("divide(10, 0)   #", "# divide(10, 0)   #")
    code = code.replace("/tmp/bundle", str(tmp_path / "bundle"))
    monkeypatch.setenv("REMOTE_RUNTIME_STREAM_LOGS", "false")
    monkeypatch.setenv("REMOTE_RUNTIME_S3_ROOT_URI", str(tmp_path / "jobs"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    script = tmp_path / "block.py"
    script.write_text(code)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr


def test_the_demo_runs(tmp_path):
    """`make demo`'s script, as the README's first command runs it."""
    demo = README.parent / "examples" / "demo.py"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("REMOTE_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    out = subprocess.run(
        [sys.executable, str(demo)], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Completed -> 49" in out.stdout and "signed" in out.stdout, out.stdout[-3000:]
