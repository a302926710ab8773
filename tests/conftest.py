"""Shared fixtures: a tiny model setup and a temporary tool home."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep caches and MLflow stores of tests out of the user's home and the working directory."""
    if "PERS_SEARCH_HOME" not in os.environ:
        monkeypatch.setenv("PERS_SEARCH_HOME", str(tmp_path_factory.getbasetemp() / "home"))
    if "MLFLOW_TRACKING_URI" not in os.environ:  # studies run by tests log to a throwaway store
        store = tmp_path_factory.getbasetemp() / "mlruns"
        store.mkdir(exist_ok=True)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")


@pytest.fixture(scope="session")
def tiny_setup():
    from runners.spec import TrialSetup

    return TrialSetup.from_dicts(
        {"name": "tiny", "dtype": "float32", "device": "cpu"},
        {"source": "demo", "users": 2, "max_val_queries": 2},
        {"epochs": 1, "max_steps": 2, "max_seq_len": 96, "batch_size": 4,
         "max_new_tokens": 6, "max_prompt_tokens": 160},
    )


@pytest.fixture(scope="session")
def tiny_pool(tmp_path_factory):
    """A Per-Pcs pool of 2 most-active sharers on the tiny model (built once per test session)."""
    from search.cli import main

    pool = tmp_path_factory.mktemp("pool")
    assert main(["pool", "build", "--space", "tiny.yaml", "--sharers", "2", "--strategy", "most-active",
                 "--gate-steps", "2", "--pool", str(pool), "--json"]) == 0
    return pool
