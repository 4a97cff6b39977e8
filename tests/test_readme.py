"""Every code block of README.md runs as written, in order, in a folder laid out as a fresh
clone (samples/ beside it): python blocks in a fresh interpreter each, sh blocks in bash,
console blocks command by command with their output compared line for line. The set-up
blocks are what `.ci/run` itself runs, so they are checked for being that, not re-run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SET_UP = "python3 -m venv .venv"


def _blocks() -> list[tuple[str, str]]:
    return [(match.group(1), match.group(2)) for match in FENCE.finditer(README.read_text(encoding="utf-8"))]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clone")
    shutil.copytree(ROOT / "samples", folder / "samples")
    return folder


def _environment() -> dict[str, str]:
    """The installed `kmq` first on PATH, as after the set-up command."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "KMQ_DEBUG": ""}


def _run(command: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600, env=_environment(), check=False)


def test_the_readme_has_the_blocks_a_user_needs() -> None:
    kinds = [kind for kind, _ in _blocks()]
    assert kinds.count("python") >= 5 and "console" in kinds and "sh" in kinds
    set_up = [text for kind, text in _blocks() if SET_UP in text]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert any(text.strip() in ci for text in set_up)  # the test command is the one CI runs
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 290  # a guide, not a log: 459 lines before


def test_every_code_block_runs_as_written(clone: Path) -> None:
    for number, (kind, text) in enumerate(_blocks()):
        where = f"README block {number} ({kind}):\n{text}"
        if kind == "python":
            result = _run([sys.executable, "-c", text], clone)
            assert result.returncode == 0, f"{where}\n{result.stderr[-3000:]}"
        elif kind == "sh":
            if SET_UP in text:
                continue  # what .ci/run runs
            result = _run(["bash", "-euo", "pipefail", "-c", text], clone)
            assert result.returncode == 0, f"{where}\n{result.stderr[-3000:]}"
        elif kind == "console":
            _check_transcript(text, clone, where)


def _check_transcript(text: str, folder: Path, where: str) -> None:
    """`$ command` lines run; the lines after each are its expected stdout, exactly."""
    command, expected = None, []
    for line in [*text.splitlines(), "$ "]:
        if line.startswith("$ "):
            if command:
                result = _run(["bash", "-c", command], folder)
                assert result.returncode == 0, f"{where}\n{result.stderr}"
                assert result.stdout.splitlines() == expected, f"{where}\ngot:\n{result.stdout}"
            command, expected = line[2:], []
        else:
            expected.append(line)


def test_printed_values_in_comments_are_what_the_code_prints(clone: Path) -> None:
    """A python block's `print(...)  # VALUE` comments are checked against its output."""
    for kind, text in _blocks():
        claims = [line.split("#", 1)[1].strip() for line in text.splitlines() if line.lstrip().startswith("print(") and "#" in line]
        if kind != "python" or not claims:
            continue
        result = _run([sys.executable, "-c", text], clone)
        assert result.returncode == 0, result.stderr[-2000:]
        printed = result.stdout.splitlines()
        for claim in claims:
            assert any(line.strip() == claim for line in printed), (claim, printed)
