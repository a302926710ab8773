"""The HV fraction every display shows: a share of one fixed box per study, so it never falls."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.results.report import hypervolume_fraction_curve, normalization, normalized_hypervolume
from search.space import parse_space
from search.study.study import Study

TOY = """
name: hv
objectives: {rougeL: max, persona_f1: max, storage_bytes: min}
parameters:
  x: {type: float, low: 0.0, high: 1.0}
optimizer: {name: random, init_trials: 3, trials: 40, seed: 0}
"""
BLACK_BOX = TOY.replace("rougeL", "quality").replace("persona_f1", "taste").replace("storage_bytes", "cost")

values = st.lists(st.tuples(st.floats(0, 1), st.floats(0, 100), st.floats(0, 1e7), st.booleans()),
                  min_size=1, max_size=14)


def _study(tmp_path, text: str, rows) -> Study:
    study = Study.create("hv", tmp_path, parse_space(text, "hv.yaml"))
    names = list(study.space.objectives)
    for a, b, c, failed in rows:
        t = study.add_trial({"x": 0.5})
        if failed:
            study.fail_trial(t.number, "boom")
        else:
            study.complete_trial(t.number, dict(zip(names, (a, b, c))))
    return study


@pytest.mark.parametrize("text", [TOY, BLACK_BOX], ids=["known-bounds", "black-box"])
@settings(max_examples=60, deadline=None)
@given(rows=values)
def test_adding_a_trial_never_lowers_the_printed_curve(tmp_path_factory, text, rows):
    tmp = tmp_path_factory.mktemp("hv")
    study = _study(tmp, text, rows)
    curve = list(hypervolume_fraction_curve(study).values())
    assert all(0.0 <= v <= 1.0 for v in curve)
    assert all(b >= a - 1e-12 for a, b in zip(curve, curve[1:])), curve  # the printed curve never falls
    if len(study.finished()) >= study.space.optimizer.init_trials:  # once the start is done, the past stays
        before = normalized_hypervolume(study)
        t = study.add_trial({"x": 0.5})
        study.complete_trial(t.number, dict(zip(study.space.objectives, (0.3, 40.0, 5e6))))
        assert normalized_hypervolume(study) >= before - 1e-12
        assert list(hypervolume_fraction_curve(study).values())[:len(curve)] == pytest.approx(curve)


def test_the_box_of_known_metrics_ends_at_their_bounds(tmp_path):
    study = _study(tmp_path, TOY, [(0.2, 10.0, 4e6, False), (0.4, 5.0, 6e6, False), (0.1, 2.0, 1e6, False)])
    ref, ideal = normalization(study)
    assert ideal == {"rougeL": 1.0, "persona_f1": 100.0, "storage_bytes": 0.0}
    assert ref["rougeL"] < 0.1 and ref["storage_bytes"] > 6e6


def test_a_dominating_trial_after_the_start_raises_the_fraction(tmp_path):
    """The case seen in a real study: a degenerate start (every ROUGE-L 0), then a trial that dominates."""
    study = _study(tmp_path, TOY, [(0.0, 0.0, 1e5, False), (0.0, 0.0, 2e5, False), (0.0, 0.0, 3e5, False)])
    before = normalized_hypervolume(study)
    t = study.add_trial({"x": 0.5})
    study.complete_trial(t.number, {"rougeL": 0.1, "persona_f1": 5.0, "storage_bytes": 1e5})
    assert normalized_hypervolume(study) > before
