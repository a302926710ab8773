"""``run``, ``resume`` and ``status``: studies of real trials from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from search.api import optimize
from search.commands.common import (
    POOL_HELP,
    add_executor_args,
    add_space_args,
    add_study_dir,
    add_tracking_args,
    executor_from_args,
    space_from_args,
    tracker_from_args,
)
from search.commands.tables import front_table, trials_table
from search.console import status_console, table_console
from search.optimizers import check_optimizer
from search.progress import StudyProgress
from search.setup import bind_to_model, check_reported, trial_setup
from search.study import Study
from search.trial_objective import TrialObjective

ADAPTERS = "adapters"


def add_parsers(sub) -> None:
    """Register ``run``, ``resume`` and ``status`` on the CLI's subparsers."""
    p = sub.add_parser("run", help="search the space: quasi-random start, then Bayesian optimisation")
    add_space_args(p)
    _add_study_args(p)
    p.add_argument("--optimizer", help="saas-nehvi (default of milp.yaml), saas-map, gp-nehvi, ax-saasbo, ax-default, "
                                        "sobol, random, optuna-tpe, optuna-nsga2")
    p.add_argument("--trials", type=int, help="total trials of the study")
    p.add_argument("--init-trials", type=int, help="quasi-random trials before the model-based ones")
    p.add_argument("--seed", type=int, help="optimiser seed")
    p.add_argument("--no-test", action="store_true", help="skip evaluating the front on the test queries")
    p.add_argument("--keep-adapters", action="store_true",
                   help="keep every trial's per-user adapters in the study directory (export then copies them)")
    add_executor_args(p)
    add_tracking_args(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("resume", help="continue a stopped or killed study where it left off")
    p.add_argument("study", help="study name")
    _add_study_args(p, with_name=False)
    p.add_argument("--trials", type=int, help="raise the study's total number of trials")
    p.add_argument("--no-test", action="store_true")
    p.add_argument("--pool", metavar="DIR", help=POOL_HELP)
    add_executor_args(p)
    add_tracking_args(p)
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser("status", help="a study's trials, their states and its current front")
    p.add_argument("study", help="study name")
    _add_study_args(p, with_name=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)


def _add_study_args(p, with_name: bool = True) -> None:
    if with_name:
        p.add_argument("--study", help="study name (default: <space name>-<optimizer>); the same name resumes")
    add_study_dir(p)


def cmd_run(args: argparse.Namespace) -> int:
    console = status_console()
    space = space_from_args(args).with_optimizer(
        name=args.optimizer, trials=args.trials, init_trials=args.init_trials, seed=args.seed)
    check_optimizer(space)
    name = args.study or f"{space.name}-{space.optimizer.name}"
    tracker = _connect(console, tracker_from_args(args), name, args.study_dir)
    with console.status("loading model and data"):
        space, setup = bind_to_model(space, args.pool)
    return _search(console, space, setup, name, args, args.keep_adapters, tracker)


def cmd_resume(args: argparse.Namespace) -> int:
    console = status_console()
    study = Study.load(args.study, args.study_dir)
    space = study.space.with_optimizer(trials=args.trials) if args.trials else study.space
    keep = (Path(args.study_dir) / args.study / ADAPTERS).exists()
    tracker = _connect(console, tracker_from_args(args), args.study, args.study_dir)
    return _search(console, space, trial_setup(space, args.pool), args.study, args, keep, tracker)


def _connect(console, tracker, name: str, study_dir: str):
    """Connect the MLflow tracker before anything slow, so an unreachable store fails fast."""
    if tracker is not None:
        tracker.connect(name, study_dir)
        console.print(f"[bold]mlflow[/] {tracker.uri}, experiment {name!r}")
    return tracker


def _search(console, space, setup, name: str, args: argparse.Namespace, keep_adapters: bool,
            tracker=None) -> int:
    study_dir, skip_test = args.study_dir, args.no_test
    check_reported(space, setup)
    executor = executor_from_args(args, space)
    objective = TrialObjective(setup, Path(study_dir) / name / ADAPTERS if keep_adapters else None)
    console.print(f"[bold]study[/] {name}: {space.optimizer.name}, {space.optimizer.trials} trials "
                  f"({space.optimizer.init_trials} quasi-random), model {setup.model.name}, "
                  f"{executor.workers} worker{'s' if executor.workers > 1 else ''} ({type(executor).__name__})")
    try:
        with StudyProgress(console, space.optimizer.trials) as progress:
            callbacks = [progress] + ([tracker] if tracker is not None else [])
            study = optimize(space, objective, study_name=name, study_dir=study_dir,
                             known_objectives=objective.known_objectives(), callbacks=callbacks, executor=executor)
    except KeyboardInterrupt:
        if tracker is not None:
            tracker.finish(status="KILLED")
        console.print(f"[yellow]interrupted[/]: finished trials are saved; continue with "
                      f"`pers-search resume {name} --study-dir {study_dir}`")
        return 130
    if not skip_test:
        _evaluate_front_on_test(console, study, objective)
    if tracker is not None:
        with console.status("logging the front, plots and artifacts to MLflow"):
            tracker.finish(study)
    table_console().print(front_table(study))
    console.print(f"study stored in {study.directory}")
    return 0


def _evaluate_front_on_test(console, study, objective) -> None:
    for trial in study.pareto_trials():
        if trial.test_values:
            continue
        with console.status(f"evaluating front trial {trial.number} on the test queries"):
            study.set_test_values(trial.number, objective.test_metrics(trial.config))


def cmd_status(args: argparse.Namespace) -> int:
    study = Study.load(args.study, args.study_dir)
    if args.json:
        print(json.dumps({"study": study.name, "directory": str(study.directory),
                          "trials": [t.to_json() for t in study.trials],
                          "pareto": sorted(t.number for t in study.pareto_trials()),
                          "hypervolume": study.hypervolume()}, indent=1, default=str))
        return 0
    table_console().print(trials_table(study))
    table_console().print(front_table(study))
    return 0
