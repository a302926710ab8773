"""Benchmark: the answer loss projected at the answer positions alone, against the full logits.

``runners.training.answer_loss`` scores a trial's validation answers (and held-out history) by the
loss of their tokens. It used to take the model's full logits, batch x tokens x vocabulary (about
0.5 GB in fp32 for 8 prompts of 300 tokens on SmolLM2's 49,152 words), for the few answer tokens
it reads; it now runs the decoder and projects only the answer positions, as training does. Both
paths run here in turn, in one process, on the same batch (``--repeats`` pairs, the first pair a
warm-up that is not counted): the process's peak resident memory above its size before each call
(the peak is reset through ``/proc/self/clear_refs`` and the C heap trimmed first), its CPU
seconds, and the ratios full / labelled. The two losses must agree (they are printed).

Usage::

    OMP_NUM_THREADS=1 python bench/answer_loss.py                  # the embedded model, 8 prompts of ~300 tokens
    python bench/answer_loss.py --model tiny --examples 4 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runners import training  # noqa: E402
from runners.heap import release_free_heap  # noqa: E402

PROMPT = "The patient reports mild abdominal pain after meals and asks about diet."
ANSWER = "Avoid spicy food, eat smaller meals, and come in for an exam if it persists."


def _status(field: str) -> int:
    """A ``/proc/self/status`` size in MB."""
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) // 1024
    return 0


def measure(model, examples, pad_id: int, full: bool) -> tuple[float, float, int]:
    """(loss, CPU seconds, peak MB above the start) of one ``answer_loss`` call, full logits or not."""
    own = training._causal_lm_parts
    if full:
        training._causal_lm_parts = lambda model: None  # the path a model without Llama parts takes
    try:
        release_free_heap()
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as refs:
            refs.write("5")  # resets VmHWM to the current size
        start, cpu = _status("VmRSS"), time.process_time()
        loss = training.answer_loss(model, examples, pad_id, "cpu", len(examples))
        return loss, time.process_time() - cpu, _status("VmHWM") - start
    finally:
        training._causal_lm_parts = own


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name (default the embedded one)")
    p.add_argument("--examples", type=int, default=8, help="prompts in the batch (default 8)")
    p.add_argument("--repeat-text", type=int, default=22, help="sentences per prompt (default 22: about 300 tokens)")
    p.add_argument("--repeats", type=int, default=4, help="pairs of calls, the first a warm-up (default 4)")
    args = p.parse_args(argv)
    import torch

    from runners.batching import pair_example
    from runners.models import load_model
    from runners.spec import ModelSpec

    loaded = load_model(ModelSpec(name=args.model, dtype="float32", device="cpu"))
    tok = loaded.tokenizer
    examples = [pair_example(tok, " ".join([PROMPT] * args.repeat_text) + f" Case {i}.", ANSWER, 640)
                for i in range(args.examples)]
    print(f"answer_loss: {args.model}, {args.examples} prompts of {len(examples[0].input_ids)} tokens, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    rows = {"labelled": [], "full": []}
    for repeat in range(args.repeats):
        for name in rows:
            loss, cpu, peak = measure(loaded.model, examples, tok.pad_token_id, full=name == "full")
            print(f"  {name}: loss {loss:.6f}, {cpu:.2f} CPU s, peak +{peak} MB" + (" (warm-up)" if not repeat else ""),
                  flush=True)
            if repeat:
                rows[name].append((cpu, peak))
    if args.repeats < 2:
        return 0
    med = {name: (statistics.median(c for c, _ in r), statistics.median(m for _, m in r)) for name, r in rows.items()}
    print("| path | CPU s (median) | peak MB above start (median) |\n|---|---|---|")
    for name, (cpu, peak) in med.items():
        print(f"| {name} | {cpu:.2f} | {peak} |")
    (cpu_l, peak_l), (cpu_f, peak_f) = med["labelled"], med["full"]
    print(f"full / labelled: CPU {cpu_f / cpu_l:.2f}x, peak memory {peak_f / max(peak_l, 1):.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
