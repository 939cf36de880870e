"""The layers of the code hold (import-linter contracts in pyproject.toml), and a backwards import breaks them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "tiling", "config", "AOI")
PURE = ("tiling", "config", "AOI", "engine/science")  # no I/O: linted, formatted and type-checked


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("engine/science/__init__.py", "import engine.run.driver", "foundations import nothing"),
    ("engine/run/driver.py", "import engine.backends.local", "the run imports no backend"),
    ("engine/backends/gee/api.py", "import engine.backends.local.dask", "the backends are independent"),
    ("engine/sources/base.py", "import engine.cli.commands", "the library never imports the CLI"),
    ("engine/run/ledger.py", "import engine.run.driver", "no import cycles"),
])
def test_a_backwards_import_breaks_a_contract(tmp_path, module, line, contract):
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.parquet"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # backwards\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0, proc.stdout
    broken = proc.stdout.split("Broken contracts", 1)[-1]
    dotted = module.replace("/", ".").removesuffix(".py").removesuffix(".__init__")
    assert contract in broken and (dotted in broken or f".{dotted.rsplit('.', 1)[-1]} ->" in broken), broken


@pytest.mark.parametrize("tool", [["ruff", "check"], ["ruff", "format", "--check"], ["mypy"]], ids=" ".join)
def test_the_pure_packages_are_linted_formatted_and_type_checked(tool):
    proc = subprocess.run([sys.executable, "-m", *tool, *PURE], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
