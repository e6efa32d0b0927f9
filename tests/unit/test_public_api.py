"""The public embedding API is what the README documents, and it stays light."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme() -> str:
    return README.read_text()


def test_scoring_exports_match_the_readme():
    import agent.scoring

    block = re.search(r"<!-- exports: agent.scoring -->(.*?)<!-- /exports -->", _readme(), re.S)
    assert block, "README lacks the exports block of agent.scoring"
    documented = re.findall(r"^- `([A-Za-z_0-9]+)`", block.group(1), re.M)
    assert sorted(documented) == sorted(agent.scoring.__all__)
    for name in agent.scoring.__all__:
        assert hasattr(agent.scoring, name)


def test_importing_the_scorer_pulls_in_no_io_library():
    code = (
        "import sys, agent.scoring\n"
        "heavy = sorted(m for m in ('trio', 'docker', 'redis', 'quart') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_readme_embedding_example_runs():
    section = _readme().split("## Embedding the scorer", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("web-1 ") and lines[1].startswith("web-2 ")
    assert set(lines[-1].split()) <= {"web-1", "web-2"}
