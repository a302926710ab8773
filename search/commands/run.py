"""``run``, ``resume`` and ``status``: studies of real trials from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from search.commands.common import (
    POOL_HELP,
    add_executor_args,
    add_space_args,
    at_least,
    default_study_name,
    study_name,
    add_study_dir,
    add_tracking_args,
    space_from_args,
    tracker_from_args,
)
from search.commands.cohort_view import add_cohort_args, refuse_user_option, user_study
from search.commands.searching import ADAPTERS, StudyRun, run_cohort, run_per_user
from search.commands.tables import (
    cohort_table,
    front_table,
    print_cohort,
    status_command,
    trials_table,
)
from search.commands.console import status_console, table_console
from search.errors import UsageError
from search.results.importance import MIN_TRIALS, READABLE_TRIALS, compute, usable
from search.results.report import normalized_hypervolume
from search.optimizers import check_optimizer
from search.execution.per_user import cohort_space, load_cohort
from search.study.cohort_file import COHORT_FILE, is_cohort
from search.study.setup import bind_to_model, trial_setup
from search.space import Space, parse_space
from search.execution.signals import exit_code, stop_on_signals, what_stopped
from search.study.study import SPACE_FILE, STUDY_FILE, Study, TrialState, probe_study_dir
from search.study.lock import StudyLock, lock_info
from search.results.suggest_notes import describe_notes, latest_notes, suggested_line


def add_parsers(sub) -> None:
    """Register ``run``, ``resume`` and ``status`` on the CLI's subparsers."""
    p = sub.add_parser("run", help="search the space: quasi-random start, then Bayesian optimisation")
    p.add_argument("study", nargs="?", type=study_name,
                   help="study name (default: <space name>-<optimizer>); the same name resumes")
    add_space_args(p, space_required=True)
    _add_study_args(p)
    p.add_argument("--optimizer", help="saas-nehvi (default of milp.yaml), saas-map, gp-nehvi, ax-saasbo, ax-default, "
                                        "sobol, random, optuna-tpe, optuna-nsga2")
    p.add_argument("--trials", type=at_least(1), help="total trials of the study")
    p.add_argument("--init-trials", type=at_least(0), help="quasi-random trials before the model-based ones")
    p.add_argument("--seed", type=int, help="optimiser seed")
    p.add_argument("--no-test", action="store_true", help="skip evaluating the front on the test queries")
    p.add_argument("--keep-adapters", action="store_true",
                   help="keep every trial's per-user adapters in the study directory (export then copies them)")
    p.add_argument("--per-user", action="store_true",
                   help="one study per user of the cohort (MiLP's setting; scope: per_user in the space)")
    p.add_argument("--warm-start", action="store_true",
                   help="with --per-user: each user's search starts from the fronts of the users before and its "
                        "model learns from their trials (warm_start:)")
    p.add_argument("--early-stop", action="store_true",
                   help="stop trials whose intermediate point is dominated by finished trials (early_stopping:)")
    add_executor_args(p)
    add_tracking_args(p)
    p.set_defaults(handler=cmd_run, trains=True)

    p = sub.add_parser("resume", help="continue a stopped or killed study where it left off")
    p.add_argument("study", type=study_name, help="study name")
    _add_study_args(p, with_name=False)
    p.add_argument("--trials", type=at_least(1), help="raise the study's total number of trials")
    p.add_argument("--no-test", action="store_true")
    p.add_argument("--pool", metavar="DIR", help=POOL_HELP)
    add_executor_args(p)
    add_tracking_args(p)
    p.set_defaults(handler=cmd_resume, trains=True)

    p = sub.add_parser("status", help="a study's trials, their states and its current front")
    p.add_argument("study", type=study_name, help="study name")
    _add_study_args(p, with_name=False)
    p.add_argument("--json", action="store_true")
    add_cohort_args(p, "trials and front")
    p.set_defaults(handler=cmd_status)


def _add_study_args(p, with_name: bool = True) -> None:
    if with_name:  # the positional name, also accepted as --study (the README of earlier versions)
        p.add_argument("--study", dest="study_option", type=study_name, help=argparse.SUPPRESS)
    add_study_dir(p)


def cmd_run(args: argparse.Namespace) -> int:
    console = status_console()
    space = _with_search_flags(space_from_args(args), args).with_optimizer(
        name=args.optimizer, trials=args.trials, init_trials=args.init_trials, seed=args.seed)
    check_optimizer(space)
    _check_init_trials(args, space)
    name = args.study or args.study_option or default_study_name(
        f"{space.name}-{space.optimizer.name}" + ("-per-user" if space.scope == "per_user" else ""))
    probe_study_dir(args.study_dir)
    tracker = tracker_from_args(args)

    def body() -> int:
        if space.scope != "per_user":
            Study.check_resumable(name, args.study_dir, space)  # before the model loads
        _connect(console, tracker, name, args.study_dir)
        with console.status("loading model and data"):
            bound, setup = bind_to_model(space, args.pool)
        return _run(StudyRun(console, bound, setup, name, args, args.keep_adapters, tracker))

    return _as_writer(console, name, args.study_dir, tracker, body)


def _as_writer(console, name: str, study_dir: str, tracker, body) -> int:
    """Run ``body`` as the study's one writer: holding its lock, with SIGTERM and SIGHUP stopping it
    as Ctrl-C does (finished trials kept, MLflow runs closed as KILLED, the resume command shown
    when there is something to resume)."""
    try:
        with stop_on_signals(), StudyLock(Path(study_dir) / name, f"study {name!r} in {study_dir}",
                                          f"`pers-search resume {name} --study-dir {study_dir}`",
                                          on_takeover=lambda line: console.print(f"[yellow]{line}[/]")):
            return body()
    except KeyboardInterrupt as stop:
        code, line = exit_code(stop), _stopped_line(stop, name, study_dir)
        with stop_on_signals():  # a repeated signal must not cut the clean-up short
            if tracker is not None:
                tracker.stop()
            _say(console, line)
        return code


def _stopped_line(stop: KeyboardInterrupt, name: str, study_dir: str) -> str:
    what = what_stopped(stop)
    directory = Path(study_dir) / name
    if (directory / STUDY_FILE).exists() or (directory / COHORT_FILE).exists():
        return (f"[yellow]{what}[/]: finished trials are saved; continue with "
                f"`pers-search resume {name} --study-dir {study_dir}`")
    return f"[yellow]{what}[/] before the study's first trial; nothing was saved"


def _say(console, line: str) -> None:
    """Print a last line; a terminal that hung up (SIGHUP) cannot take it, and that is fine."""
    try:
        console.print(line)
    except OSError:
        pass


def _check_init_trials(args: argparse.Namespace, space: Space) -> None:
    """``--init-trials`` above the study's total is a mistake, not a silently shortened start."""
    o = space.optimizer
    if args.init_trials is not None and args.init_trials > o.trials:
        raise UsageError(f"--init-trials {args.init_trials} exceeds the study's {o.trials} trials "
                         f"({'--trials' if args.trials else 'optimizer.trials in ' + space.source}); "
                         f"pass --trials {args.init_trials} or more, or --init-trials {o.trials} or fewer")


def _with_search_flags(space: Space, args: argparse.Namespace) -> Space:
    """``--per-user``, ``--warm-start`` and ``--early-stop`` as the space settings they switch on."""
    sets = [item for flag, item in ((args.per_user, "scope=per_user"), (args.warm_start, "warm_start.enabled=true"),
                                    (args.early_stop, "early_stopping.enabled=true")) if flag]
    return space.with_overrides(sets) if sets else space


def cmd_resume(args: argparse.Namespace) -> int:
    console = status_console()
    tracker = tracker_from_args(args)

    def body() -> int:
        if is_cohort(args.study, args.study_dir):
            space = cohort_space(args.study, args.study_dir)
            _check_cohort_resume_trials(args, load_cohort(args.study, args.study_dir))
            keep = any((Path(args.study_dir) / args.study / "users").glob(f"*/{ADAPTERS}"))
        else:
            study = Study.load(args.study, args.study_dir)
            _check_resume_trials(args, study)
            space = _resumed_space(console, study)
            keep = (Path(args.study_dir) / args.study / ADAPTERS).exists()
        space = space.with_optimizer(trials=args.trials) if args.trials else space
        probe_study_dir(args.study_dir)
        _connect(console, tracker, args.study, args.study_dir)
        return _run(StudyRun(console, space, trial_setup(space, args.pool), args.study, args, keep, tracker))

    if not (Path(args.study_dir) / args.study).is_dir():
        Study.load(args.study, args.study_dir)  # the error that names the studies there
    return _as_writer(console, args.study, args.study_dir, tracker, body)


def _resumed_space(console, study: Study) -> Space:
    """The space a study resumes with: its own, or its ``space.yaml`` when the user edited that file."""
    edited = study.edited_space_text()
    if edited is None:
        return study.space
    path = study.directory / SPACE_FILE
    space = parse_space(edited, str(path))
    if study.space.is_bound and not space.is_bound:
        space = space.bind(_mask_size(study.space))
    console.print(f"using {path} as edited by hand (it differs from what the study last wrote)")
    return space


def _mask_size(space: Space) -> int:
    return next(p.size for p in space.parameters.values() if getattr(p, "size", None) is not None)


def _check_resume_trials(args: argparse.Namespace, study: Study) -> None:
    """``resume --trials N`` may not drop below the trials already finished."""
    done = len(study.finished())
    if args.trials is not None and args.trials < done:
        raise UsageError(f"resume {study.name} --trials {args.trials}: the study has {done} finished trials "
                         f"(of {study.space.optimizer.trials}); pass --trials {done} or more, or leave it out")


def _check_cohort_resume_trials(args: argparse.Namespace, cohort) -> None:
    """The same for a per-user study, where ``--trials`` is each user's count: not below any user's finished."""
    if args.trials is None or not cohort.studies:
        return
    user, study = max(cohort.studies.items(), key=lambda item: len(item[1].finished()))
    done = len(study.finished())
    if args.trials < done:
        raise UsageError(f"resume {args.study} --trials {args.trials}: user {user!r} has {done} finished trials "
                         f"(--trials counts each user's trials in a per-user study); pass --trials {done} or more, "
                         "or leave it out")


def _connect(console, tracker, name: str, study_dir: str):
    """Connect the MLflow tracker before anything slow, so an unreachable store fails fast."""
    if tracker is not None:
        tracker.connect(name, study_dir)
        console.print(f"[bold]mlflow[/] {tracker.uri}, experiment {name!r}")
    return tracker


def _run(run: StudyRun) -> int:
    return run_per_user(run) if run.space.scope == "per_user" else run_cohort(run)


def cmd_status(args: argparse.Namespace) -> int:
    if is_cohort(args.study, args.study_dir):
        return _cohort_status(load_cohort(args.study, args.study_dir), args)
    refuse_user_option(args, "status")
    study = Study.load(args.study, args.study_dir)
    if args.json:
        print(json.dumps(_status_json(study), indent=1, default=str))
        return 0
    _print_study(study)
    return 0


def _print_study(study: Study, label: str = "") -> None:
    table_console().print(trials_table(study))
    table_console().print(front_table(study))
    _print_notes(study, label)
    _print_importance(study)


def _print_importance(study: Study) -> None:
    """The three parameters that matter most per objective, once there are enough trials to say."""
    if len(usable(study)) < MIN_TRIALS:
        return
    found = compute(study, front=False)
    rough = "" if found.readable else f", rough below {READABLE_TRIALS}"
    parts = [f"{m}: " + ", ".join(f"{row} {v:.2f}" for row, v in found.top(m)) for m in study.space.objectives]
    table_console().print(f"importance ({found.trials} trials{rough}; `pers-search importance {study.name}` for all): "
                          + "; ".join(parts), highlight=False, soft_wrap=True)


def _print_notes(study: Study, label: str = "") -> None:
    """What the model found at the study's latest suggestion that has notes (``search.results.suggest_notes``)."""
    noted = latest_notes(study.trials)
    for sentence in describe_notes(noted.suggest_notes, study.space) if noted else []:
        table_console().print(suggested_line(noted.number, sentence, label), highlight=False, soft_wrap=True)


def _status_json(study: Study) -> dict:
    """``status --json``: the trials (a RUNNING trial no live process runs says ``stale: true``), the
    front, the hypervolume, and the process writing the study (``writer``, None when none is)."""
    writer = lock_info(study.directory)
    trials = [{**t.to_json(), **({"stale": writer is None} if t.state is TrialState.RUNNING else {})}
              for t in study.trials]
    return {"study": study.name, "directory": str(study.directory), "writer": writer, "trials": trials,
            "pareto": sorted(t.number for t in study.pareto_trials()), "hypervolume": study.hypervolume(),
            "hypervolume_fraction": normalized_hypervolume(study)}


def _cohort_status(cohort, args: argparse.Namespace) -> int:
    """A per-user study: its summary and a page of its users (``--user U``: one user's study; ``--all``:
    every user's trials and the whole table; ``--json``: everything, as data)."""
    if args.user is not None:
        study = user_study(cohort, args.user, args.study_dir)
        if args.json:
            print(json.dumps(_status_json(study), indent=1, default=str))
        else:
            _print_study(study, f"user {args.user}:")
        return 0
    if args.json:
        print(json.dumps({**cohort.summary(), "per_user": {u: _status_json(s) for u, s in cohort.studies.items()}},
                         indent=1, default=str))
        return 0
    if args.all:
        for user in cohort.users:
            if user in cohort.studies:
                table_console().print(trials_table(cohort.studies[user]))
                _print_notes(cohort.studies[user], f"user {user}:")
        table_console().print(cohort_table(cohort))
        return 0
    print_cohort(cohort, rows=args.rows, page=args.page, command=status_command(args.study, args.study_dir))
    return 0
