"""Multi-objective early stopping on a synthetic learning-curve problem whose right answer is known."""

from __future__ import annotations

import pytest

import learning_curves as lc
from runners.spec import Checkpoint
from search.api import optimize
from search.pareto import pareto_indices
from search.optimizers.history import impute, observations
from search.space import EarlyStoppingSettings, parse_space
from search.execution.stopping import FinishedCurve, StopCheck, dominance_probability
from search.study.study import TrialState


def checkpoint(step: int, quality: float, se: float = 0.01) -> Checkpoint:
    return Checkpoint(f"u0:s{step}", step // 4 - 1, 0, "u", step, step, {"quality": quality, "quality_se": se})


def test_dominance_probability_uses_the_noise_and_exact_known_objectives():
    objectives = {"quality": "max", "cost": "min"}
    better = {"quality": 0.5, "quality_se": 0.01, "cost": 1.0}
    assert dominance_probability(better, {"quality": 0.3, "quality_se": 0.01, "cost": 2.0}, objectives,
                                 {"cost"}) == pytest.approx(1.0)
    assert dominance_probability(better, {"quality": 0.49, "quality_se": 0.01, "cost": 2.0}, objectives,
                                 {"cost"}) == pytest.approx(0.76, abs=0.01)
    assert dominance_probability(better, {"quality": 0.3, "cost": 0.5}, objectives, {"cost"}) == 0.0


def test_the_check_waits_for_min_steps_and_names_the_dominating_trial():
    settings = EarlyStoppingSettings(enabled=True, min_steps=8, confidence=0.9, min_finished=1)
    finished = (FinishedCurve(3, {"u0:s4": {"quality": 0.4, "quality_se": 0.01},
                                  "u0:s8": {"quality": 0.5, "quality_se": 0.01},
                                  "u0:s12": {"quality": 0.55, "quality_se": 0.01}}, {"cost": 1.0}),)
    check = StopCheck(lc.OBJECTIVES, settings, {"cost": 2.0}, finished)
    assert check.reason(checkpoint(4, 0.1)) is None, "no stop before min_steps"
    reason = check.reason(checkpoint(8, 0.2))
    assert reason.startswith("dominated at checkpoint u0:s8 (user u, step 8, 8 steps trained) by trial 3 "
                             "with probability 1.00 (quality 0.2 vs 0.5, cost 2 vs 1)")
    assert check.reason(checkpoint(8, 0.6)) is None, "better quality: not dominated"
    cheaper = StopCheck(lc.OBJECTIVES, settings, {"cost": 0.5}, finished)
    assert cheaper.reason(checkpoint(8, 0.2)) is None, "cheaper: not dominated"


def test_a_margin_counts_small_leads_as_ties_but_never_on_known_objectives():
    objectives = {"quality": "max", "cost": "min"}
    finished = {"quality": 0.50, "quality_se": 0.01, "cost": 1.0}
    slightly_better = {"quality": 0.52, "quality_se": 0.01, "cost": 2.0}  # 4% ahead, twice the cost
    assert dominance_probability(finished, slightly_better, objectives, {"cost"}) < 0.1
    assert dominance_probability(finished, slightly_better, objectives, {"cost"}, margin=0.1) > 0.95
    clearly_better = {"quality": 0.60, "quality_se": 0.01, "cost": 2.0}  # 20% ahead: beyond the margin
    assert dominance_probability(finished, clearly_better, objectives, {"cost"}, margin=0.1) < 1e-3
    cheaper = {"quality": 0.45, "quality_se": 0.01, "cost": 0.99}  # storage is exact: no margin there
    assert dominance_probability(finished, cheaper, objectives, {"cost"}, margin=0.5) == 0.0
    settings = EarlyStoppingSettings(enabled=True, min_steps=0, confidence=0.9, margin=0.1, min_finished=1)
    check = StopCheck(lc.OBJECTIVES, settings, {"cost": 2.0},
                      (FinishedCurve(1, {"u0:s4": {"quality": 0.5, "quality_se": 0.01}, "u0:s8": {"quality": 0.6}},
                                     {"cost": 1.0}),))
    reason = check.reason(checkpoint(4, 0.52))
    assert reason.startswith("dominated at checkpoint u0:s4") and reason.endswith("(quality 0.52 vs 0.5, cost 2 vs 1; "
                                                                                  "within a margin of 0.1)")
    assert StopCheck(lc.OBJECTIVES, EarlyStoppingSettings(enabled=True, min_steps=0, min_finished=1), {"cost": 2.0},
                     check.finished).reason(checkpoint(4, 0.52)) is None, "without a margin: ahead, so no stop"


def test_no_stop_where_every_finished_trial_ended_its_training():
    settings = EarlyStoppingSettings(enabled=True, min_steps=0, confidence=0.9, min_finished=1)
    ended = FinishedCurve(1, {"u0:s4": {"quality": 0.5, "quality_se": 0.01},
                              "u0:s8": {"quality": 0.6, "quality_se": 0.01}}, {"cost": 1.0})
    check = StopCheck(lc.OBJECTIVES, settings, {"cost": 2.0}, (ended,))
    assert check.reason(checkpoint(4, 0.2)) is not None, "training goes on after step 4: a stop saves steps"
    assert check.reason(checkpoint(8, 0.2)) is None, "step 8 is where training ends: a stop saves nothing"
    cohort = FinishedCurve(2, {"u0:s8": {"quality": 0.6, "quality_se": 0.01}, "u1:s4": {"quality": 0.6}}, {"cost": 1.0})
    assert StopCheck(lc.OBJECTIVES, settings, {"cost": 2.0}, (ended, cohort)).reason(checkpoint(8, 0.2)) is not None, \
        "a later user still trains after user 0's last step"


def test_no_stop_until_min_finished_trials_passed_the_checkpoint():
    def finished(number: int, at4: bool = True) -> FinishedCurve:
        points = {"u0:s8": {"quality": 0.6, "quality_se": 0.01}}
        return FinishedCurve(number, {**({"u0:s4": {"quality": 0.5, "quality_se": 0.01}} if at4 else {}), **points},
                             {"cost": 1.0})

    settings = EarlyStoppingSettings(enabled=True, min_steps=0, confidence=0.9)
    assert settings.min_finished == 3
    two = (finished(0), finished(1))
    assert StopCheck(lc.OBJECTIVES, settings, {"cost": 2.0}, two).reason(checkpoint(4, 0.2)) is None, \
        "two finished trials: too few to judge by"
    assert StopCheck(lc.OBJECTIVES, settings, {"cost": 2.0}, two + (finished(2, at4=False),)).reason(
        checkpoint(4, 0.2)) is None, "the third finished trial has no checkpoint u0:s4: it does not count there"
    reason = StopCheck(lc.OBJECTIVES, settings, {"cost": 2.0}, two + (finished(2),)).reason(checkpoint(4, 0.2))
    assert reason is not None and reason.startswith("dominated at checkpoint u0:s4")


def _study(tmp_path, name: str, early: bool, seed: int = 0):
    space = parse_space(lc.SPACE.replace("seed: 0", f"seed: {seed}"), "curves.yaml")
    return optimize(space, lc.objective, study_name=name, study_dir=tmp_path, known_objectives={"cost": lc.cost},
                    early_stopping=early)


def test_stops_only_trials_that_end_dominated_and_saves_steps(tmp_path):
    study = _study(tmp_path, "es", early=True)
    pruned = [t for t in study.trials if t.state is TrialState.PRUNED]
    done = study.completed()
    assert pruned and done and len(study.finished()) == 24
    finals = [lc.final(t.config) for t in study.trials]
    truth_front = set(pareto_indices(finals, lc.OBJECTIVES))
    for t in pruned:  # the right answer: a pruned trial ends dominated by a trial that finished
        assert t.number not in truth_front
        mine = finals[t.number]
        assert any(lc.final(d.config)["quality"] >= mine["quality"] and d.values["cost"] <= mine["cost"]
                   for d in done), t.user_attrs["pruned"]["reason"]
        info = t.user_attrs["pruned"]
        assert info["reason"].startswith("dominated at checkpoint ") and info["trained_steps"] >= 8
        assert t.values["cost"] == lc.cost(t.config) and "quality" in t.values
        assert set(t.user_attrs["curve"]) <= {f"u0:s{s}" for s in range(4, 41, 4)}
    assert all(len(t.user_attrs["curve"]) == 10 for t in done)
    spent = sum(t.user_attrs["pruned"]["trained_steps"] for t in pruned) + lc.STEPS * len(done)
    assert spent < 0.8 * lc.STEPS * 24, f"early stopping saved too little: {spent} steps of {lc.STEPS * 24}"

    plain = _study(tmp_path, "plain", early=False)
    assert all(t.state is TrialState.COMPLETED for t in plain.trials) and not plain.trials[0].user_attrs.get("curve")
    assert study.hypervolume() >= 0.97 * plain.hypervolume()


def test_pruned_trials_enter_the_surrogate_with_imputed_values_and_wider_noise(tmp_path):
    study = _study(tmp_path, "impute", early=True, seed=1)
    pruned = [t for t in study.trials if t.state is TrialState.PRUNED]
    assert pruned
    obs = {o.config["x"]: o for o in observations(study.trials, study.space, known={"cost"})}
    for t in pruned:
        guess = impute(t, study.completed(), lc.OBJECTIVES, {"cost"})
        assert guess is not None, "min_finished 3: three finished trials passed the checkpoint it stopped at"
        ob = obs[t.config["x"]]
        values, variances = guess
        assert ob.values == values and ob.variances == variances
        assert abs(values["quality"] - lc.final(t.config)["quality"]) < 0.1, "the estimate is near the truth"
        assert variances["quality"] > lc.NOISE ** 2 and variances["cost"] == 0.0
    completed = [obs[t.config["x"]] for t in study.completed()]
    assert all(o.variances == {"quality": pytest.approx(lc.NOISE ** 2)} for o in completed)


def test_stopped_trials_are_marked_in_their_line_status_and_mlflow(tmp_path, capsys):
    """A trial the rule stopped says so in its progress line (``(stopped early)``... its state is
    ``pruned``), in the ``marked`` column of ``status`` and in the tags ``stopped_early=true`` and
    ``stopped_at`` (its checkpoint) of its MLflow run; a finished trial has none of them."""
    import io

    from mlflow.tracking import MlflowClient
    from rich.console import Console

    from search.cli import main
    from search.commands.progress import StudyProgress
    from search.tracking.tracker import Tracker

    store = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(store, artifact_budget=0.0).connect("marks", tmp_path)
    log = io.StringIO()
    space = parse_space(lc.SPACE, "curves.yaml").with_optimizer(trials=14)
    study = optimize(space, lc.objective, study_name="marks", study_dir=tmp_path, known_objectives={"cost": lc.cost},
                     callbacks=[StudyProgress(Console(file=log, width=200), 14), tracker])
    pruned = {t.number: t.user_attrs["pruned"]["checkpoint"] for t in study.trials if t.state is TrialState.PRUNED}
    assert pruned, "the problem stops some trials"
    lines = {int(line.split(" trial ")[1].split()[0]): line for line in log.getvalue().splitlines() if "] trial " in line}
    assert {n for n, line in lines.items() if " s (stopped early): dominated at checkpoint " in line} == set(pruned)
    assert all(" pruned in " in lines[n] for n in pruned)

    capsys.readouterr()
    assert main(["status", "marks", "--study-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.split("└")[0].splitlines()  # the trials table, before the front's
    header = [c.strip() for c in next(line for line in out if line.startswith("┃")).split("┃")]
    cells = {int(row[1]): row[header.index("marked")].strip()
             for row in (line.split("│") for line in out if line.startswith("│")) if row[1].strip().isdigit()}
    assert cells == {n: ("stopped early" if n in pruned else "") for n in range(14)}

    runs = MlflowClient(tracking_uri=store).search_runs(
        [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{tracker.parent_run_id}'")
    tags = {int(r.data.tags["pers_search.trial"]): (r.data.tags.get("stopped_early"), r.data.tags.get("stopped_at"))
            for r in runs}
    assert tags == {n: (("true", pruned[n]) if n in pruned else (None, None)) for n in range(14)}
