"""What MLflow's UI shows of a study beyond the runs table: the chart view and its parallel coordinates.

MLflow 3 keeps the experiment page's state (table columns, filter, sort *and* the chart view's cards
and sections) in the browser, and reads one thing from the server: a *shared view*, an experiment tag
``mlflow.sharedViewState.<key>`` holding that state as JSON, applied when the page is opened with
``?viewStateShareKey=<key>`` (the UI's "Share" button writes the same). The chart view's cards are
the state's ``compareRunCharts`` (one dict per card: ``type`` ``SCATTER``/``LINE``/``BAR``/``PARALLEL``
and its axes) and ``compareRunSections`` (collapsible sections the cards sit in); ``compareRunsMode=CHART``
in the link opens the chart view rather than the table. See docs/notes/mlflow.md.

Left to itself the chart view draws one bar chart per metric, alphabetically (~39 for a study). The
state built here puts first a scatter plot of each quality objective against each cost objective
(``ROUGE-L vs storage``, ``Persona-F1 vs storage``), then the hypervolume curve the tracker logs on
the study's run, a parallel-coordinates chart of the readable parameters and the objectives (a layer
mask as its count of layers on, ``<prefix>.n_<name>``: MLflow reads a ``0110...`` mask as a number
near 1e29), and the objectives' own bar charts; MLflow files every other metric into a collapsed
"Model metrics" section (a metric that has a card keeps it, a new one joins the section named after
its prefix). The front's table gets a ``knee`` column (:data:`KNEE_COLUMN`). Each trial's run is
coloured (:func:`front_marks`): the front red, the knee blue, the others grey, so the scatter plots
show the front.

This module builds the states only (data, no MLflow); :func:`search.tracking.links.set_front_view`
writes them on the experiment, through :func:`search.tracking.links.save_view`.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from search.results.config_view import count_key, param_names
from search.space import FixedParam, LayerMaskParam, Space

FRONT_FILTER = 'tags.pareto = "true"'
CHARTS_VIEW_PREFIX = "pers-search-charts-"
HYPERVOLUME_METRIC = "hypervolume_fraction"  # the curve search.tracking logs on the study's run, stepped by trial
KNEE_TAG = "knee"  # true on the knee trial's run, false on the others (rewritten when the knee moves)
KNEE_COLUMN = f"tags.`{KNEE_TAG}`"
# MLflow keeps a run's colour in charts and tables in this tag (the UI's colour picker writes it).
RUN_COLOR_TAG = "mlflow.runColor"
# From MLflow's own palette: the front red and the other trials grey, as in plots/pareto_*.png; the knee blue.
FRONT_COLOR, DOMINATED_COLOR, KNEE_COLOR = "#c83243", "#8396a5", "#2272b4"
MARK_TAGS = (KNEE_TAG, RUN_COLOR_TAG)  # the tags :func:`front_marks` writes
# MLflow files a metric without a ``/`` prefix into the section of this name ("Model metrics"); the
# charts view keeps it collapsed, so the ~30 other metrics are there but out of the way.
OTHER_METRICS_SECTION = "Model metrics"
SECTIONS = ("Pareto front", "Search progress", "Parameters", "Objectives", OTHER_METRICS_SECTION)
# (cards per row, card height in px) of a section; MLflow's default is (3, 360)
_LAYOUT = {"Pareto front": (2, 420), "Parameters": (1, 440), "Search progress": (2, 360)}
MAX_RUNS = 1000  # cards show up to this many runs (MLflow's defaults: 10 for most cards, 100 for scatter)
# How a metric is named in a chart's title; a metric not here keeps its own name.
METRIC_LABELS = {"rougeL": "ROUGE-L", "rouge1": "ROUGE-1", "persona_f1": "Persona-F1", "storage_bytes": "storage"}


def front_marks(on_front: bool, is_knee: bool) -> dict[str, str]:
    """The tags that mark a trial's run: ``knee`` and its colour in MLflow's charts (front, knee, other)."""
    color = KNEE_COLOR if is_knee else FRONT_COLOR if on_front else DOMINATED_COLOR
    return {KNEE_TAG: "true" if is_knee else "false", RUN_COLOR_TAG: color}


def charts_view_key(objectives: Iterable[str]) -> str:
    """The shared-view key of a study's chart view: ``pers-search-charts-<first objective>``."""
    return CHARTS_VIEW_PREFIX + next(iter(objectives), "front")


def metric_label(metric: str) -> str:
    """``ROUGE-L`` for ``rougeL``; a metric without a label keeps its name."""
    return METRIC_LABELS.get(metric, metric)


def readable_params(space: Space) -> list[str]:
    """The searched parameters as parallel coordinates can draw them: each searched parameter in the
    space's order, a layer mask replaced by its count (:func:`search.results.config_view.count_key`); fixed ones left out."""
    names = []
    for name, param in space.parameters.items():
        if isinstance(param, FixedParam) or (isinstance(param, LayerMaskParam) and param.fixed):
            continue
        names.append(count_key(name) if isinstance(param, LayerMaskParam) else name)
    return names


def scatter_pairs(objectives: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(y, x)`` pairs to plot: each maximised objective against each minimised one (quality against
    cost); with one direction only, each objective against the next."""
    up = [m for m, d in objectives.items() if d == "max"]
    down = [m for m, d in objectives.items() if d == "min"]
    if up and down:
        return [(y, x) for x in down for y in up]
    names = list(objectives)
    return list(zip(names[:-1], names[1:]))


def _card(kind: str, section: str, key: str, title: str, **fields: object) -> dict:
    return {"uuid": f"pers-search-{kind.lower()}-{key}", "type": kind, "metricSectionId": _section_id(section),
            "displayName": title, "runsCountToCompare": MAX_RUNS, "deleted": False, "isGenerated": False, **fields}


def _section_id(name: str) -> str:
    return "pers-search-section-" + name.lower().replace(" ", "-")


def scatter_card(y: str, x: str) -> dict:
    """A scatter card of metric ``y`` against metric ``x``, titled ``ROUGE-L vs storage``."""
    return _card("SCATTER", SECTIONS[0], f"{y}-vs-{x}", f"{metric_label(y)} vs {metric_label(x)}",
                 xaxis={"key": x, "type": "METRIC"}, yaxis={"key": y, "type": "METRIC"})


def parallel_card(metrics: list[str], params: list[str]) -> dict:
    """A parallel-coordinates card: one axis per parameter, then one per metric."""
    return _card("PARALLEL", SECTIONS[2], "objectives", "Parameters and objectives", selectedParams=params,
                 selectedMetrics=metrics, showAllRuns=True)


def bar_card(metric: str) -> dict:
    """A bar card of one metric's value per run."""
    return _card("BAR", SECTIONS[3], metric, metric_label(metric), metricKey=metric)


def line_card(metric: str, title: str) -> dict:
    """A line card of one metric's history against its step (the trial number)."""
    return _card("LINE", SECTIONS[1], metric, title, metricKey=metric, selectedMetricKeys=[metric],
                 xAxisKey="step", selectedXAxisMetricKey="", useGlobalXaxisKey=False, useGlobalLineSmoothing=False,
                 lineSmoothness=0, scaleType="linear", xAxisScaleType="linear", displayPoints=True,
                 yAxisKey="metric", yAxisExpressions=[], ignoreOutliers=False, range={})


def chart_cards(space: Space) -> list[dict]:
    """The chart view's cards, in order: the objectives' scatter plots, the hypervolume curve, the
    parallel coordinates, each objective's bar chart."""
    objectives = space.objectives
    cards = [scatter_card(y, x) for y, x in scatter_pairs(objectives)]
    cards.append(line_card(HYPERVOLUME_METRIC, "Hypervolume (fraction of the reference box)"))
    cards.append(parallel_card(list(objectives), readable_params(space)))
    cards += [bar_card(m) for m in objectives]
    return cards


def chart_sections() -> list[dict]:
    """The chart view's sections: open, in :data:`SECTIONS` order, the other metrics' closed."""
    sections = []
    for name in SECTIONS:
        section = {"uuid": _section_id(name), "name": name, "display": name != OTHER_METRICS_SECTION,
                   "isReordered": True, "deleted": False, "isGenerated": False}
        if name in _LAYOUT:
            section["columns"], section["cardHeight"] = _LAYOUT[name]
        sections.append(section)
    return sections


def chart_state(space: Space) -> dict:
    """The chart part of a shared view: cards, sections, their order kept as given."""
    return {"compareRunCharts": chart_cards(space), "compareRunSections": chart_sections(),
            "isAccordionReordered": True, "hideEmptyCharts": True, "useGroupedValuesInCharts": False}


def charts_view(space: Space, order_key: str, order_asc: bool, columns: list[str]) -> dict:
    """A shared view of every run of the experiment (the trials and the study's run, which holds the
    hypervolume curve) with :func:`chart_state`'s charts, sorted like the front view (so the runs are
    listed flat) and with its columns.

    Args:
        space: the study's space.
        order_key: the sort column, e.g. ``metrics.`rougeL```.
        order_asc: sort ascending.
        columns: the table's columns (the front view's).
    """
    return {"searchFilter": "", "orderByKey": order_key, "orderByAsc": order_asc, "selectedColumns": columns,
            "columnOrder": columns, "runsHiddenMode": "SHOW_ALL", "runListHidden": False, "viewMaximized": False,
            **chart_state(space)}


# --------------------------------------------------------------------------- the front's table
def front_view_key(objectives: Iterable[str]) -> str:
    """The shared-view key of a study's front view: ``pers-search-front-<first objective>``."""
    first = next(iter(objectives), "front")
    return f"pers-search-front-{first}"


def _column(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"


def front_view(objectives: Mapping[str, str], params: Iterable[str] = (), metrics: Iterable[str] = ()) -> dict:
    """The runs-table state of a study's front, as MLflow's shared views store it.

    The front's trials (``tags.pareto = "true"``) sorted by the first objective (best first),
    with columns: each objective, its test value, the other ``metrics``, then ``params``. A
    filtered and sorted table lists runs flat (MLflow nests child runs only when neither is set),
    so the trials show without expanding their parent.
    """
    names = list(objectives)
    first = names[0]
    columns = [_column("metrics", m) for m in names] + [_column("metrics", f"test_{m}") for m in names]
    columns += [_column("metrics", m) for m in metrics if m not in names]
    columns += [_column("params", p) for p in params]
    columns = list(dict.fromkeys(columns))
    return {
        "searchFilter": FRONT_FILTER,
        "orderByKey": _column("metrics", first),
        "orderByAsc": objectives[first] == "min",
        "selectedColumns": columns,
        "columnOrder": columns,
        "runsHiddenMode": "SHOW_ALL",
        "runListHidden": False,
        "viewMaximized": False,
    }


def study_views(space: Space) -> dict[str, dict]:
    """A study's two shared views by key: the front's table (:func:`front_view` with the knee column and
    the charts) and the chart view of every run (:func:`charts_view`)."""
    front = front_view(space.objectives, param_names(space), space.shown_metrics)
    front["selectedColumns"] = front["columnOrder"] = [*front["selectedColumns"], KNEE_COLUMN]
    return {front_view_key(space.objectives): {**front, **chart_state(space)},
            charts_view_key(space.objectives): charts_view(space, front["orderByKey"], front["orderByAsc"],
                                                           front["selectedColumns"])}
