"""SIGKILL at 20 seeded random moments of a tiny-model study, each followed by ``resume``.

``tests/kill_harness.py`` does the killing (training, generation, the ``study.json`` write,
MLflow logging) and records what it saw; this test judges it: the study file is never corrupt,
finished trials never change or repeat, the study ends complete, and MLflow holds exactly one
closed run per finished trial, with every run a kill left RUNNING closed as KILLED. Then three
kills of an export (re-training, moving adapters, writing ``serving.yaml``): the study stays
untouched, the same export refuses the unfinished bundle without ``--force`` and redoes it with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KILLS = 20
SEED = 16


@pytest.fixture(scope="module")
def kills(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("kills")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_harness.py"), str(work), str(SEED), str(KILLS)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((work / "kills.json").read_text())


@pytest.mark.slow
def test_every_kill_point_is_hit(kills):
    killed = [r for r in kills["rounds"] if r["ended"].get("signal") == 9]
    assert len(killed) >= KILLS - 2, [r["ended"] for r in kills["rounds"]]
    assert {r["kind"] for r in killed} == {"train", "generate", "study_write", "mlflow_log"}


@pytest.mark.slow
def test_study_file_is_never_corrupt_and_finished_trials_never_change(kills):
    for r in kills["rounds"]:
        after, before = r["after"], r["before"]
        assert "corrupt" not in after, r
        if not before.get("exists"):
            continue
        assert after["exists"], r
        assert len(after["numbers"]) == len(set(after["numbers"])), r
        for number, record in before["finished"].items():  # present once, values and time untouched
            assert after["finished"].get(number) == record, (number, r)


@pytest.mark.slow
def test_resumed_study_completes(kills):
    final = kills["final"]
    assert final["ended"] == {"exit": 0}
    assert len(final["study"]["finished"]) == final["trials"]
    assert final["study"]["temp_files"] == [], "half-written temp files of killed writes are cleaned up"


@pytest.mark.slow
def test_mlflow_has_one_closed_run_per_trial_and_no_orphan(kills):
    runs = kills["mlflow"]
    active = [r for r in runs if r["stage"] == "active" and r["role"] == "trial"]
    assert not [r for r in runs if r["status"] == "RUNNING"], "no run is left RUNNING"
    counts = Counter(r["trial"] for r in active)
    assert counts == Counter({n: 1 for n in kills["final"]["study"]["finished"]})
    assert {r["status"] for r in active} <= {"FINISHED", "FAILED"}
    orphans = [r for r in runs if r["stage"] == "deleted"]
    assert orphans, "some kill left a trial run RUNNING (the seed makes it so), and resume closed it"
    assert all(r["status"] == "KILLED" and r["role"] == "trial" for r in orphans)
    parents = {r["parent"] for r in active}
    assert len(parents) == 1, "every trial run hangs under the one study run"


@pytest.mark.slow
def test_killed_export_is_refused_then_redone_with_force(kills):
    """SIGKILL while an export re-trains, moves adapters or writes ``serving.yaml``: the study is
    untouched, the half bundle has no manifest (or none half-written), the same export without
    ``--force`` refuses and says why (exit 2), and with ``--force`` it completes with no leftovers."""
    exports = kills["exports"]
    assert [e["kind"] for e in exports] == ["export_train", "export_move", "export_manifest"]
    for e in exports:
        assert e["ended"] == {"signal": 9}, e
        assert e["study_unchanged"], e
        assert e["left"]["exists"] and e["left"]["manifest"] is None, e  # never a half-written manifest
        assert e["again"] == {"exit": 2}, e
        assert "holds an unfinished export" in e["again_said"] and "--force" in e["again_said"], e["again_said"]
    forced = kills["export_forced"]
    assert forced["ended"] == {"exit": 0}, forced
    assert forced["bundle"]["manifest"] is True
    hidden = [name for name in forced["bundle"]["entries"] if name.startswith(".")]
    assert hidden == [".pers-search-bundle.json"], "no staging directory or temp file of a killed export is left "\
                                                   "behind; the bundle's file list stays"
    assert "serving.yaml" in forced["bundle"]["entries"] and "adapters" in forced["bundle"]["entries"]
