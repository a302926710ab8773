"""The README's Python API example runs as written, and its space block is the shipped one."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_api_example_runs(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Python API\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    study = namespace["study"]
    assert len(study.completed()) == 5
    assert study.pareto_trials() and study.hypervolume() > 0
    assert (tmp_path / "studies" / "api-demo" / "study.json").exists()


def test_readme_space_block_is_spaces_milp_yaml():
    """The README documents the shipped default space, value for value."""
    from search.space import load_space, parse_space

    text = README.read_text(encoding="utf-8")
    block = re.search(r"## The search space file\n.*?```yaml\n(.*?)```", text, re.S).group(1)
    documented = parse_space(block, "README.md").model_dump(mode="json")
    assert documented == load_space("milp.yaml").model_dump(mode="json")


def test_architecture_example_runs():
    """docs/architecture.md's trial-contract example runs as written (tiny model, demo data)."""
    text = (README.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"## The trial contract.*?```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "docs/architecture.md", "exec"), namespace)
    result = namespace["result"]
    assert result.metrics["n_users"] == 2 and result.config.merged_rank == 8
    assert all(u.predictions for u in result.users)
