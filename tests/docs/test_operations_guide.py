"""The operations guide's commands run as written.

Every fenced bash block of docs/operations.md whose first line is ``# run: ...`` is executed,
in document order, by one bash shell with ``-euo pipefail`` in an empty folder, with the
installed ``lungpath`` first on PATH and no LUNGPATH_* variables from outside.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, require_tool

GUIDE = REPO_ROOT / "docs" / "operations.md"


def runnable_blocks(text: str) -> list[tuple[str, str]]:
    """(title, script) of each ``# run:`` block, in order."""
    blocks = re.findall(r"```bash\n# run: ([^\n]*)\n(.*?)```", text, re.S)
    return [(title.strip(), body) for title, body in blocks]


def test_the_guide_has_runnable_blocks() -> None:
    titles = [title for title, _ in runnable_blocks(GUIDE.read_text())]
    assert "check a settings file" in titles and len(titles) >= 3


def test_the_operations_guide_runs_as_written(tmp_path: Path) -> None:
    require_tool("curl")
    script = "\n".join(f"echo '== {title}'\n{body}" for title, body in
                       runnable_blocks(GUIDE.read_text()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNGPATH_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    log = tmp_path / "node.log"
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:],
                                  log.read_text()[-3000:] if log.exists() else "")
