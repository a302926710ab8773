"""Per-user studies: one study per user, resume per user, warm starts across users."""

from __future__ import annotations

import json

from search.cli import main
from search.execution.per_user import load_cohort, optimize_tasks, warm_start_points
from search.space import parse_space
from search.study.study import TrialState
from toy_study import toy_space_text


def user_objective(shift: float):
    """The toy problem, shifted per user: each user prefers other layers."""
    def objective(config):
        layers = sum(config["mask"])
        return {"quality": config["x"] + 0.5 * layers + shift * config["mask"][0], "cost": float(config["k"] + layers)}
    return objective


SPACE = parse_space(toy_space_text("tasks", trials=6, seed=3), "tasks.yaml")


def test_one_study_per_task_and_resume_skips_finished_users(tmp_path):
    objectives = {"u1": user_objective(0.0), "u2": user_objective(1.0), "u3": user_objective(-1.0)}
    cohort = optimize_tasks(SPACE, objectives, study_name="c", study_dir=tmp_path)
    assert cohort.users == ["u1", "u2", "u3"] and set(cohort.studies) == {"u1", "u2", "u3"}
    for user, study in cohort.studies.items():
        assert study.directory == tmp_path / "c" / "users" / user and len(study.completed()) == 6
    summary = cohort.summary()
    assert [r["user"] for r in summary["users"]] == ["u1", "u2", "u3"] and all(r["knee"] is not None for r in summary["users"])
    assert summary["total_storage_bytes"] == 0.0  # the toy has no storage metric

    calls = []
    again = optimize_tasks(SPACE, {u: (lambda c, f=f: calls.append(1) or f(c)) for u, f in objectives.items()},
                           study_name="c", study_dir=tmp_path)
    assert not calls, "finished users are not searched again"
    assert load_cohort("c", tmp_path).users == again.users


def test_each_user_has_its_own_quasi_random_start_and_a_warm_start_adds_points(tmp_path):
    """One seed per user: two users' quasi-random starts differ, so the first user's front, tried
    first by a warm-started second user, is new to it (with one seed for all, it was the same set)."""
    space = parse_space(toy_space_text("tasks", trials=4, seed=3), "tasks.yaml").with_optimizer(
        name="sobol", init_trials=4)
    objectives = {"a": user_objective(0.0), "b": user_objective(0.2)}
    configs = {}
    for warm in (False, True):
        cohort = optimize_tasks(space, objectives, study_name=f"w{warm}", study_dir=tmp_path, warm_start=warm)
        configs[warm] = {u: [json.dumps(t.config, sort_keys=True) for t in s.trials] for u, s in cohort.studies.items()}
        assert [s.space.optimizer.seed for s in cohort.studies.values()] == [3, 4]
    assert configs[False]["a"] == configs[True]["a"], "the first user is searched alike"
    assert set(configs[False]["a"]) != set(configs[False]["b"])
    assert set(configs[True]["b"]) != set(configs[False]["b"]), "the warm start changes what the second user tries"


def test_warm_start_evaluates_earlier_fronts_first(tmp_path):
    objectives = {"a": user_objective(0.0), "b": user_objective(0.2)}
    cohort = optimize_tasks(SPACE, objectives, study_name="w", study_dir=tmp_path, warm_start=True)
    seeds = warm_start_points([cohort.studies["a"]], SPACE.warm_start.max_points)
    assert seeds and len(seeds) <= 4
    first = [t.config for t in cohort.studies["b"].trials[: len(seeds)]]
    assert first == seeds, "the second user starts from the first user's front, its knee first"
    knee = cohort.studies["a"].knee_trial()
    assert seeds[0] == knee.config


def test_cli_per_user_study_with_status(tmp_path, capsys):
    args = ["run", "--space", "tiny.yaml", "--optimizer", "sobol", "--trials", "2", "--init-trials", "2",
            "--per-user", "--warm-start", "--study", "pu", "--study-dir", str(tmp_path), "--no-mlflow", "--no-test"]
    assert main(args) == 0
    cohort = json.loads((tmp_path / "pu" / "cohort.json").read_text())
    assert len(cohort["users"]) == 2 and cohort["space"]["scope"] == "per_user"
    for user in cohort["users"]:
        stored = json.loads((tmp_path / "pu" / "users" / user / "study.json").read_text())
        assert stored["space"]["data"]["user_ids"] is None, "the space is the cohort's; the runner narrows the data"
        trials = stored["trials"]
        assert [t["state"] for t in trials] == ["completed", "completed"]
        assert set(trials[0]["user_attrs"]["users"]) == {user}, "each user's trials train only that user"
    capsys.readouterr()
    assert main(["status", "pu", "--study-dir", str(tmp_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [r["user"] for r in status["users"]] == cohort["users"] and set(status["per_user"]) == set(cohort["users"])
    assert main(["resume", "pu", "--study-dir", str(tmp_path), "--no-mlflow", "--no-test"]) == 0
    for user in cohort["users"]:
        stored = json.loads((tmp_path / "pu" / "users" / user / "study.json").read_text())
        assert len(stored["trials"]) == 2, "resume redoes nothing"
    assert all(t.state is TrialState.COMPLETED for s in load_cohort("pu", tmp_path).studies.values() for t in s.trials)
    # each user has 2 finished trials: --trials 1 would drop one; refused, the stored count kept
    assert main(["resume", "pu", "--trials", "1", "--study-dir", str(tmp_path), "--no-mlflow", "--no-test"]) == 2
    said = capsys.readouterr().err
    assert "has 2 finished trials (--trials counts each user's trials in a per-user study); pass --trials 2" in said
    assert json.loads((tmp_path / "pu" / "cohort.json").read_text())["space"]["optimizer"]["trials"] == 2


def test_per_user_export_takes_each_users_own_pick(tmp_path, capsys):
    """``export --pick knee`` of a per-user study: each user's knee from its own front, one bundle
    with every user's adapter at its own rank, serving.yaml per user, the prompt per user."""
    import yaml

    from search.export import bundle_prompt
    from search.export.pick import pick_trial

    args = ["run", "pu", "--space", "tiny.yaml", "--optimizer", "sobol", "--trials", "3", "--init-trials", "3",
            "--per-user", "--study-dir", str(tmp_path), "--no-mlflow", "--no-test", "--set", "rag.k=1",
            "--set", "lora.count=1", "--keep-adapters"]
    assert main(args) == 0
    cohort = load_cohort("pu", tmp_path)
    capsys.readouterr()
    out = tmp_path / "bundle"
    assert main(["export", "pu", "--study-dir", str(tmp_path), "--pick", "max:persona_f1", "--out", str(out),
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    manifest = yaml.safe_load((out / "serving.yaml").read_text())
    assert manifest["scope"] == "per_user" and manifest["users"] == sorted(cohort.users)
    for user, study in cohort.studies.items():
        picked = pick_trial(study, "max:persona_f1")
        assert printed["trials"][user] == picked.number == manifest["per_user"][user]["trial"]
        rank = manifest["adapters"][user]["rank"]
        assert rank == picked.config["lora.count"] * picked.config["lora.rank"]
        assert (out / "adapters" / user / "adapter_model.safetensors").stat().st_size == \
            picked.values["storage_bytes"]
        assert manifest["per_user"][user]["retrieval"]["k"] == 1
        assert f"{user}=" in manifest["vllm"]["command"]
        assert bundle_prompt(out, user, "How are you?")
    assert manifest["vllm"]["max_lora_rank"] >= max(a["rank"] for a in manifest["adapters"].values())
    assert main(["export", "pu", "--study-dir", str(tmp_path), "--pick", "trial:0", "--out",
                 str(tmp_path / "b2")]) != 0
    assert "one front per user" in capsys.readouterr().err


def test_warm_start_points_are_marked_in_lines_status_study_json_and_mlflow(tmp_path, capsys):
    """The second user's trials that came from the first user's front carry ``origin: warm_start`` in
    study.json (which still loads), say ``(warm start)`` in their progress line, have a ``marked``
    cell in ``status --user`` and the tag ``origin=warm_start`` on their MLflow run; the optimiser's
    own trials carry none of it."""
    import io

    from mlflow.tracking import MlflowClient
    from rich.console import Console

    from search.execution.per_user import TaskHooks
    from search.commands.progress import StudyProgress
    from search.study.study import Study
    from search.tracking.tracker import Tracker

    store = f"sqlite:///{tmp_path}/mlflow.db"
    cohort_tracker = Tracker(store, artifact_budget=0.0).connect("w", tmp_path)
    log, trackers = io.StringIO(), {}

    class Hooks(TaskHooks):
        def start(self, task, index):
            trackers[task] = cohort_tracker.share()
            return [StudyProgress(Console(file=log, width=200), SPACE.optimizer.trials, label=task), trackers[task]]

    objectives = {"a": user_objective(0.0), "b": user_objective(0.2)}
    cohort = optimize_tasks(SPACE, objectives, study_name="w", study_dir=tmp_path, warm_start=True, hooks=Hooks())
    seeds = warm_start_points([cohort.studies["a"]], SPACE.warm_start.max_points)
    stored = json.loads((tmp_path / "w" / "users" / "b" / "study.json").read_text())["trials"]
    origins = [t["user_attrs"].get("origin") for t in stored]
    assert origins == ["warm_start"] * len(seeds) + [None] * (len(stored) - len(seeds))
    assert not any("origin" in t.user_attrs for t in cohort.studies["a"].trials), "the first user has no earlier user"
    loaded = Study.load("w/users/b", tmp_path)
    assert [t.marks for t in loaded.trials] == [("warm start",)] * len(seeds) + [()] * (len(stored) - len(seeds))

    lines = [line for line in log.getvalue().splitlines() if line.startswith("b [")]
    assert [("(warm start):" in line) for line in lines] == [True] * len(seeds) + [False] * (len(lines) - len(seeds))
    assert lines[0].startswith("b [1/6] trial 0 completed in ") and " s (warm start): quality=" in lines[0]

    capsys.readouterr()
    assert main(["status", "w", "--study-dir", str(tmp_path), "--user", "b"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in next(line for line in out if line.startswith("┃")).split("┃")]
    body = [line.split("│") for line in out if line.startswith("│")][:6]  # the trials table comes first
    assert [row[header.index("marked")].strip() for row in body] == ["warm start"] * len(seeds) + [""] * (6 - len(seeds))

    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([cohort_tracker.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{trackers['b'].parent_run_id}'")
    tagged = {int(r.data.tags["pers_search.trial"]): r.data.tags.get("origin") for r in runs}
    assert tagged == {n: ("warm_start" if n < len(seeds) else None) for n in range(6)}


def test_pareto_of_a_per_user_study_pages_users_fronts_and_the_cohort_table(tmp_path, capsys):
    """``pareto COHORT``: the fronts of a page of users in one table, then the cohort's summary and
    table; ``--user U`` that user's own front; ``--all`` every user; ``--json`` every user's front;
    ``--csv`` one CSV with the user first; the options on a study that is not per-user are refused."""
    import csv
    import io

    objectives = {f"u{i}": user_objective(0.3 * i) for i in range(5)}
    cohort = optimize_tasks(SPACE, objectives, study_name="c", study_dir=tmp_path)
    fronts = {u: sorted(t.number for t in s.pareto_trials()) for u, s in cohort.studies.items()}
    studies = str(tmp_path)
    capsys.readouterr()

    assert main(["pareto", "c", "--study-dir", studies, "--rows", "2", "--page", "2"]) == 0
    out = capsys.readouterr().out
    head, table = out.split("per-user study c: 5 users: 5 done", 1)
    assert "Pareto front of each user of c, users 3-4 of 5" in head
    firsts = [line.split("│")[1].strip() for line in head.splitlines() if line.startswith("│")]
    assert [u for u in firsts if u] == ["u2", "u3"] and len(firsts) == len(fronts["u2"]) + len(fronts["u3"])
    assert "users 3-4 of 5" in table and "│ u4 " not in out
    assert f"next page: `pers-search pareto c --study-dir {studies} --page 3`" in table
    assert f"every user's front: `pers-search pareto c --study-dir {studies} --all`" in table

    assert main(["pareto", "c", "--study-dir", studies, "--all"]) == 0
    out = capsys.readouterr().out
    assert all(f"│ {u} " in out.split("per-user study c")[0] for u in objectives) and "next page" not in out

    assert main(["pareto", "c", "--study-dir", studies, "--user", "u1"]) == 0
    out = capsys.readouterr().out
    assert f"Pareto front of c/users/u1 ({len(cohort.studies['u1'].completed())} completed trials)" in out

    assert main(["pareto", "c", "--study-dir", studies, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["user"] for r in data["users"]] == list(objectives)
    assert {u: [r["trial"] for r in d["front"]] for u, d in data["per_user"].items()} == fronts
    assert main(["pareto", "c", "--study-dir", studies, "--json", "--user", "u3"]) == 0
    assert json.loads(capsys.readouterr().out)["study"] == "c/users/u3"

    assert main(["pareto", "c", "--study-dir", studies, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0])[:2] == ["user", "trial"]
    assert {u: [int(r["trial"]) for r in rows if r["user"] == u] for u in objectives} == fronts

    assert main(["pareto", "c", "--study-dir", studies, "--user", "u9"]) == 2
    assert "pareto c --user u9: no such user in the per-user study" in capsys.readouterr().err
    assert main(["pareto", "u1", "--study-dir", str(tmp_path / "c" / "users"), "--user", "x"]) == 2  # a user's own
    assert "is one study for the whole cohort, not a per-user study; leave --user out" in capsys.readouterr().err
