"""The layers of turncheck/__init__.py hold: import-linter's contracts pass on the tree, and
they do fail when an import points up, even one inside a function or under TYPE_CHECKING."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [LINT, "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def copy_of_the_tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "turncheck", tmp_path / "turncheck")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


PLANTS = {
    "function-local import up (values -> runs)": (
        "urls.py",
        "\n\ndef _planted() -> None:\n    from turncheck.report import Report  # noqa: F401\n",
    ),
    "TYPE_CHECKING import up (values -> checks)": (
        "results.py",
        "\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        "    from turncheck.checks import CheckSettings  # noqa: F401\n",
    ),
    "a circle inside one layer (checks <-> load)": (
        "checks.py",
        "\n\ndef _planted() -> None:\n    from turncheck.load import run_load  # noqa: F401\n",
    ),
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_planted_import_breaks_the_contracts(tmp_path: Path, plant: str) -> None:
    tree = copy_of_the_tree(tmp_path)
    name, text = PLANTS[plant]
    with (tree / "turncheck" / name).open("a") as f:
        f.write(text)
    done = lint(tree)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN" in done.stdout
