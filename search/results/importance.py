"""Which searched parameters drive each objective: Optuna's importance evaluators on a study's trials.

The completed trials are copied into an in-memory Optuna study (nothing is written), and Optuna
answers per objective (:func:`optuna.importance.get_param_importances` with fANOVA: the share of the
objective's variance each parameter explains, from a random forest) and, for the front as a whole,
PED-ANOVA's multi-objective importance (which parameters it takes to reach the Pareto front).

A layer mask is one parameter to the search but thirty to a forest: it enters as one feature per
layer flag (``lora.layers[12]``) plus how many layers are on (``lora.layers: how many``), and the
report groups them into ``lora.layers: how many`` (the count of layers on), ``lora.layers: which``
(the flags together) and the individual layers that matter most. Fixed parameters are left out.

How many trials it takes: see :data:`MIN_TRIALS` and ``bench/importance_accuracy.py``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from search.errors import SearchError
from search.study.cohort_file import COHORT_FILE, USERS_DIR
from search.numbers import finite
from search.space import ChoiceParam, FixedParam, FloatParam, IntParam, LayerMaskParam, Space
from search.study.study import Study, TrialRecord

MIN_TRIALS = 10  # below this the estimates are noise (bench/importance_accuracy.py); shown with a warning
READABLE_TRIALS = 30  # from here on the ranking is mostly right (same bench: 0.80-0.88 of driver pairs ordered right)
FRONT = "front"  # the column of PED-ANOVA's multi-objective importance
HOW_MANY = ": how many"
WHICH = ": which"
TOP_LAYERS = 3  # the individual layer flags each column names


class ImportanceError(SearchError, ValueError):
    """Too few completed trials, or nothing searched, to compute importances."""


@dataclass(frozen=True)
class Importance:
    """Importances per objective (and ``front``), each a mapping feature -> share (summing to 1).

    Attributes:
        study: the study's name.
        trials: completed trials used.
        columns: objective name (and ``front``) -> {feature: importance}, features as in :func:`features`.
        groups: objective (and ``front``) -> {row: importance}, the rows a user reads (masks grouped).
        layers: objective (and ``front``) -> the top individual layer flags, ``[(index, importance), ...]``.
        evaluator: what computed ``columns`` per objective.
    """

    study: str
    trials: int
    columns: dict[str, dict[str, float]]
    groups: dict[str, dict[str, float]]
    layers: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    evaluator: str = "fanova"

    @property
    def readable(self) -> bool:
        """True when there are enough trials for the ranking to be worth reading."""
        return self.trials >= READABLE_TRIALS

    def top(self, column: str, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` most important rows of a column, highest first."""
        return sorted(self.groups.get(column, {}).items(), key=lambda item: -item[1])[:n]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: trials, evaluator, and per column the grouped rows, the features and top layers."""
        return {"study": self.study, "trials": self.trials, "evaluator": self.evaluator,
                "readable": self.readable, "min_trials": MIN_TRIALS, "readable_trials": READABLE_TRIALS,
                "importance": {c: {"rows": self.groups[c], "features": self.columns[c],
                                   "top_layers": [{"layer": i, "importance": v} for i, v in self.layers.get(c, [])]}
                               for c in self.columns}}


def searched(space: Space) -> list[str]:
    """The parameters a study searches (fixed ones and pinned masks left out)."""
    out = []
    for name, param in space.parameters.items():
        if isinstance(param, FixedParam) or (isinstance(param, LayerMaskParam) and param.fixed):
            continue
        out.append(name)
    return out


def features(space: Space, config: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration as importance features: masks as ``<name>: how many`` and ``<name>[i]`` flags."""
    out: dict[str, Any] = {}
    for name in searched(space):
        value = config[name]
        if isinstance(space.parameters[name], LayerMaskParam):
            out[name + HOW_MANY] = int(sum(value))
            out.update({f"{name}[{i}]": int(v) for i, v in enumerate(value)})
        else:
            out[name] = value
    return out


def _distributions(space: Space) -> dict[str, Any]:
    import optuna.distributions as d  # optuna: only when importances are computed

    out: dict[str, Any] = {}
    for name in searched(space):
        param = space.parameters[name]
        if isinstance(param, LayerMaskParam):
            out[name + HOW_MANY] = d.IntDistribution(0, max(param.size or 1, 1))
            out.update({f"{name}[{i}]": d.IntDistribution(0, 1) for i in range(param.size or 0)})
        elif isinstance(param, IntParam):
            out[name] = d.IntDistribution(param.low, param.high, log=param.log)
        elif isinstance(param, FloatParam):
            out[name] = d.FloatDistribution(param.low, param.high, log=param.log)
        elif isinstance(param, ChoiceParam):
            out[name] = d.CategoricalDistribution(list(param.values))
    return out


def _optuna_study(space: Space, trials: Sequence[TrialRecord]):
    """An in-memory Optuna study holding ``trials`` (objective values in the space's order)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objectives = list(space.objectives)
    study = optuna.create_study(directions=[("maximize" if space.objectives[m] == "max" else "minimize")
                                            for m in objectives])
    distributions = _distributions(space)
    frozen = []
    for t in trials:
        params = features(space, t.config)
        frozen.append(optuna.trial.create_trial(params=params, distributions=distributions,
                                                values=[float(t.values[m]) for m in objectives]))
    study.add_trials(frozen)
    return study


def usable(study: Study) -> list[TrialRecord]:
    """Completed trials with a finite value of every objective."""
    return [t for t in study.completed() if all(finite(t.values.get(m)) for m in study.space.objectives)]


def compute(study: Study, seed: int = 0, front: bool = True) -> Importance:
    """The importances of a study's searched parameters, per objective and for the front.

    Args:
        study: the study (read only).
        seed: the forests' seed (the estimates are random; the same seed gives the same table).
        front: also compute PED-ANOVA's importance for reaching the Pareto front.

    Raises:
        ImportanceError: fewer than :data:`MIN_TRIALS` completed trials, or nothing searched.
    """
    trials = usable(study)
    if not searched(study.space):
        raise ImportanceError(f"study {study.name!r} searches no parameter (every one is fixed); nothing to rank")
    if len(trials) < MIN_TRIALS:
        raise ImportanceError(f"study {study.name!r} has {len(trials)} completed trials; importances need "
                              f"{MIN_TRIALS} at least ({READABLE_TRIALS} to be worth reading); run more trials "
                              f"(`pers-search resume {_resumed_as(study)} --trials "
                              f"{max(READABLE_TRIALS, len(trials) + 10)}`)")
    return _compute(study.name, study.space, trials, seed, TOP_LAYERS, front)


def _compute(name: str, space: Space, trials: Sequence[TrialRecord], seed: int, top_layers: int,
             front: bool) -> Importance:
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator, get_param_importances

    optuna_study = _optuna_study(space, trials)
    params = list(_distributions(space))
    varying = [p for p in params if len({repr(t.params[p]) for t in optuna_study.trials}) > 1]
    columns: dict[str, dict[str, float]] = {}
    for index, metric in enumerate(space.objectives):
        values = {float(t.values[metric]) for t in trials}
        if len(values) < 2 or not varying:  # a constant objective: nothing explains it
            columns[metric] = {p: 0.0 for p in params}
            continue
        found = get_param_importances(optuna_study, evaluator=FanovaImportanceEvaluator(seed=seed), params=varying,
                                      target=lambda t, i=index: t.values[i])
        columns[metric] = {p: float(found.get(p, 0.0)) for p in params}
    if front and len(space.objectives) > 1 and varying:
        found = get_param_importances(optuna_study, evaluator=PedAnovaImportanceEvaluator(), params=varying)
        columns[FRONT] = {p: float(found.get(p, 0.0)) for p in params}
    groups = {c: grouped(space, imp) for c, imp in columns.items()}
    layers = {c: top_flags(space, imp, top_layers) for c, imp in columns.items()}
    return Importance(name, len(trials), columns, groups, layers)


def grouped(space: Space, importance: Mapping[str, float]) -> dict[str, float]:
    """Feature importances as the rows a user reads: each parameter, each mask as how many and which."""
    out: dict[str, float] = {}
    for name in searched(space):
        if isinstance(space.parameters[name], LayerMaskParam):
            out[name + HOW_MANY] = importance.get(name + HOW_MANY, 0.0)
            flags = [v for k, v in importance.items() if k.startswith(f"{name}[")]
            out[name + WHICH] = which_layers(flags)
        else:
            out[name] = importance.get(name, 0.0)
    return out


def which_layers(flags: Sequence[float]) -> float:
    """How much *which* layers are on matters: the flags' importance above their common level.

    Thirty flags that do not matter each pick up a little importance from the forest's noise;
    summed, that noise would outweigh a parameter that matters. A flag that matters stands out of
    the others, so the row is the sum of each flag's excess over the flags' median.
    """
    if not flags:
        return 0.0
    floor = statistics.median(flags)
    return float(sum(max(0.0, v - floor) for v in flags))


def top_flags(space: Space, importance: Mapping[str, float], n: int) -> list[tuple[int, float]]:
    """The ``n`` layer flags (of the first mask) with the highest importance, above zero."""
    masks = [p for p in searched(space) if isinstance(space.parameters[p], LayerMaskParam)]
    if not masks:
        return []
    prefix = f"{masks[0]}["
    flags = [(int(k[len(prefix):-1]), v) for k, v in importance.items() if k.startswith(prefix) and v > 0]
    return sorted(flags, key=lambda item: -item[1])[:n]


def _resumed_as(study) -> str:
    """The name ``resume`` takes for a study: one user's study of a per-user study is resumed with its cohort."""
    users = study.directory.parent
    if users.name == USERS_DIR and (users.parent / COHORT_FILE).is_file():
        return users.parent.name
    return study.name
