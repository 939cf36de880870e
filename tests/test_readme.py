"""The README documents every config key, and CI runs the README's test command."""
from __future__ import annotations

import re
from pathlib import Path

from config.parameters import Parameters

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def reference_keys() -> set[str]:
    section = README.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, flags=re.M))


def test_every_config_key_is_in_the_readme_reference():
    documented = reference_keys()
    missing = set(Parameters.model_fields) - documented
    assert not missing, f"config keys missing from the README's reference: {sorted(missing)}"
    unknown = documented - set(Parameters.model_fields)
    assert not unknown, f"README documents keys that do not exist: {sorted(unknown)}"


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(pip install[^\n]+)\n```", README)
    assert len(commands) >= 2
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()
    assert any("engine run" in c for c in commands)
