"""The example in docs/embedding.md runs as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "embedding.md"


@pytest.mark.parametrize("processes", [False, True], ids=["in-process", "session-processes"])
def test_embedding_example_runs(tmp_path, processes):
    code, = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    if processes:
        code = code.replace("Server(host_key, ", "Server(host_key, processes=True, ")
        assert "processes=True" in code
    # Run outside the source tree, so the installed (compiled) package is the one imported.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "moshpit listening on ('127.0.0.1'," in result.stdout
    assert "sessions: 0" in result.stdout
