"""``bench/search_efficiency.py`` on a tiny budget: results file, resume, summary, exact maxima."""

import json
import random

import pytest
from bench_scripts import load_bench

from search.encoding import canonical
from search.pareto import hypervolume


@pytest.fixture(scope="module")
def bench():
    return load_bench("search_efficiency")


def test_runs_are_appended_resumed_and_summarised(bench, tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    tiny = ["--seeds", "1", "--evals", "6", "--init", "4", "--quick", "--out", str(out)]
    assert bench.main(["--problems", "dtlz2", "--optimizers", "random", "sobol", "ax-default", *tiny]) == 3
    assert bench.main(["--problems", "mixed", "--optimizers", "random", "sobol", *tiny]) == 2
    printed = capsys.readouterr().out
    assert "[3/3] dtlz2 " in printed and "[2/2] mixed " in printed  # one line per finished run
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["problem"], r["optimizer"], r["seed"]) for r in records} == {
        ("dtlz2", "random", 0), ("dtlz2", "sobol", 0), ("dtlz2", "ax-default", 0), ("mixed", "random", 0),
        ("mixed", "sobol", 0),
    }
    for r in records:
        assert len(r["hv"]) == 6 and all(0.0 <= h <= 1.0 for h in r["hv"])
        assert r["hv"] == sorted(r["hv"])  # the curve never falls: fixed reference point
        assert len(r["seconds"]) == 2  # the model-based suggestions (after 4 quasi-random)
    # Resumed: nothing left to run; a new seed count runs only the new seeds.
    assert bench.main(["--problems", "dtlz2", "--optimizers", "random", "sobol", "ax-default", *tiny]) == 0
    assert bench.main(["--problems", "mixed", "--optimizers", "random", *tiny, "--seeds", "2"]) == 1
    capsys.readouterr()
    # Summarised from the file alone.
    assert bench.main(["--summarise", str(out)]) == 0
    table = capsys.readouterr().out
    assert "6 evaluations (4 quasi-random)" in table
    assert "| problem | optimiser | seeds | HV@6 | median s / suggestion |" in table
    assert "| dtlz2 | ax-default | 1 | " in table and "| mixed | random | 2 | " in table


@pytest.mark.parametrize("name", ["mixed", "mixed-large"])
def test_enumerated_maximum_is_exact(bench, name):
    """No configuration beats the enumerated front: adding random ones leaves the hypervolume as it is."""
    problem = bench.PROBLEMS[name]()
    shape = bench.SHAPES[name]
    front = bench.exact_front(problem.function(c) for c in bench.enumerate_relevant(shape))
    rng = random.Random(0)
    found = []
    for _ in range(400):
        density = rng.random()
        config = {"layers": [int(rng.random() < density) for _ in range(shape.flags)],
                  "count": rng.randint(*shape.counts), "rank": rng.choice(shape.ranks), "k": rng.randint(0, shape.ks),
                  "retriever": rng.choice([r for r, _ in shape.retrievers])}
        found.append(problem.function(canonical(problem.space, config)))
    assert hypervolume(found, problem.space.objectives, problem.ref_point) <= problem.max_hv
    both = hypervolume(front + found, problem.space.objectives, problem.ref_point)
    assert both == pytest.approx(problem.max_hv, rel=1e-12)


def test_problem_shapes(bench):
    large = bench.PROBLEMS["mixed-large"]().space
    assert large.parameters["layers"].size == 30 and large.parameters["count"].low == 1
    assert large.parameters["count"].high == 32 and large.parameters["rank"].values == [8, 16, 32, 64, 96]
    assert large.parameters["retriever"].values == ["bm25", "dense", "recency"]
    twelve = bench.PROBLEMS["dtlz2-12"]()
    assert len(twelve.space.parameters) == 12 and twelve.max_hv == bench.PROBLEMS["dtlz2"]().max_hv
    assert bench.checkpoints(40) == [10, 20, 40] and bench.checkpoints(12) == [10, 12]


def test_best_subsets_grow_to_the_maximum_and_are_printed(bench, capsys):
    """Greedy points of the exact front: more points never reach less, the whole front reaches 1."""
    shape = bench.SHAPES["mixed"]
    front = bench.exact_front(bench.mixed_function(c) for c in bench.enumerate_relevant(shape))
    reached = bench.best_subsets(shape, [1, 3, len(front)])
    assert 0.0 < reached[1] < reached[3] < reached[len(front)] == pytest.approx(1.0, rel=1e-12)
    assert bench.main(["--best-subsets", "1", "3", "--problems", "mixed", "dtlz2"]) == 0
    printed = capsys.readouterr().out
    assert f"| mixed | {reached[1]:.3f} | {reached[3]:.3f} |" in printed and "dtlz2" not in printed


def test_variants_are_saas_nehvi_built_with_settings(bench, tmp_path):
    """Each ablation is ``saas-nehvi`` built with its ``SaasSettings`` (no subclass, nothing registered), and
    a variant's run goes through :func:`search.api.optimize` like a registered optimiser's."""
    from search.optimizers import optimizer_names
    from search.optimizers.saas import SaasNEHVI

    space = bench.PROBLEMS["mixed"]().space
    for name, switches in bench.VARIANTS.items():
        optimizer = bench.build_optimizer(name, space, seed=0)
        assert type(optimizer) is SaasNEHVI and optimizer.name == "saas-nehvi"
        assert {k: getattr(optimizer.settings, k) for k in switches} == switches
    assert bench.build_optimizer("saas-nehvi@main", space).settings.nuts_engine == "botorch"
    assert not [n for n in optimizer_names() if "@" in n]
    out = tmp_path / "runs.jsonl"
    assert bench.main(["--problems", "mixed", "--optimizers", "saas-nehvi@sobol6", "--seeds", "1", "--evals", "3",
                       "--init", "3", "--quick", "--out", str(out)]) == 1
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["optimizer"] == "saas-nehvi@sobol6" and len(record["hv"]) == 3
