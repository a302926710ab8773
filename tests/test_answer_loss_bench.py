"""``bench/answer_loss.py`` on the tiny model: both paths run, agree, and the ratios are printed."""

import re

from bench_scripts import load_bench


def test_both_paths_agree_and_the_ratios_are_printed(capsys):
    bench = load_bench("answer_loss")
    assert bench.main(["--model", "tiny", "--examples", "3", "--repeat-text", "4", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    losses = set(re.findall(r"loss (\d+\.\d+)", out))
    assert len(losses) == 1, out  # one loss: the two paths and every repeat agree to 6 digits
    assert out.count("(warm-up)") == 2 and "| labelled |" in out and "| full |" in out
    assert re.search(r"full / labelled: CPU \d+\.\d\dx, peak memory \d+\.\dx", out)
