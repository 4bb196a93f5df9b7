"""The README's quickstart runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def code_blocks() -> dict[str, str]:
    """Python blocks of the README whose first line names their file (``# tasks.py``)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    named = {}
    for block in blocks:
        first = block.splitlines()[0]
        if first.startswith("# ") and first.endswith(".py"):
            named[first[2:]] = block
    return named


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    blocks = code_blocks()
    assert {"tasks.py", "main.py"} <= set(blocks)
    for name, text in blocks.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [sys.executable, "main.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "succeeded hello world (attempt 1)"
    assert (tmp_path / "jobs.db").exists()


def test_readme_names_the_two_setup_commands() -> None:
    text = README.read_text()
    assert "./scripts/demo" in text and "./scripts/test" in text


def test_the_testing_example_passes_under_pytest(tmp_path: Path) -> None:
    """README "Testing your own code": its two files, run by pytest with the installed plugin's fixtures."""
    blocks = code_blocks()
    for name in ("reports.py", "test_reports.py"):
        (tmp_path / name).write_text(blocks[name])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_reports.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def plugin_snippets() -> list[str]:
    """The unnamed Python blocks of the README's "A file that looks after itself" and "Plugins" sections."""
    text = README.read_text()
    section = text[text.index("## A file that looks after itself"):text.index("## Security")]
    blocks = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", section, flags=re.S)]
    return [b for b in blocks if not b.splitlines()[0].strip().endswith(".py")]


def test_the_plugin_snippets_run_as_written(tmp_path: Path) -> None:
    snippets = plugin_snippets()
    assert len(snippets) >= 4
    (tmp_path / "tasks.py").write_text(code_blocks()["tasks.py"])
    for snippet in snippets:
        result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, f"{snippet}\n{result.stderr}"
