"""How much a user's own history says about their next answer, against another user's history.

No model: this measures the data. A per-user memory or retrieval can only beat one adapter trained
on the whole cohort (the cohort adapter, domain adaptation) through what a user's own history
tells about *this* user's answers and other users' histories do not. For every evaluated user
(the same users and validation queries as ``bench/quality.py``: the splits of its
``make_setup``'s session), it scores the true answer of each query against the user's own history replies
and against every other evaluated user's, with the project's ROUGE-L (``runners.metrics.rouge``)
and copy rate (share of the answer's word 5-grams found in the history, ``runners.metrics.copying``):

- ``own``: the best ROUGE-L between the answer and one of the user's own history replies, and the
  answer's copy rate against the user's own history;
- ``others``: the same against each other user's history, averaged over the other users;
- ``own - others``: paired over users and queries, with its 95% bootstrap interval.

An ``own - others`` interval at 0 says the history carries no user-specific signal about the
answers that ROUGE-L or copying could reward: a per-user memory can then only learn the register
every user shares (which a cohort adapter learns from far more text) or repeat the user's words.
Run from the repository root::

    python bench/history_signal.py                         # the MedicalDialogue sample, 100 users
    python bench/history_signal.py --source demo --users 6 # the demo users
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.quality import MEDDIALOGUE, make_setup  # noqa: E402
from runners.metrics.copying import content_ngrams, copy_rate  # noqa: E402
from runners.metrics.rouge import rouge_per_item  # noqa: E402
from runners.metrics.uncertainty import bootstrap_interval, paired_difference_interval  # noqa: E402
from runners.session import session_for  # noqa: E402


def evaluated_users(source: str, users: int, val_fraction: float = 0.5):
    """The users and validation queries ``bench/quality.py`` evaluates: its setup's session splits
    (no query cap; the model is not loaded)."""
    return session_for(make_setup(source, users, {}, val_fraction, None)).splits


def replies(user_split) -> list[str]:
    """The user's history replies (what a memory trains toward); an item without one gives its text."""
    return [item.output if item.output else item.as_text() for item in user_split.train]


def best_rouge(answer: str, texts: Sequence[str]) -> float:
    """The largest ROUGE-L F between ``answer`` and one of ``texts`` (0 without texts)."""
    if not texts:
        return 0.0
    return max(rouge_per_item(list(texts), [answer] * len(texts))["rougeL"])


def signal(splits) -> dict[str, list[list[float]]]:
    """Per user, per validation query: ROUGE-L and copy rate against the own history and the others'."""
    histories = [replies(s) for s in splits]
    sources = [content_ngrams("\n".join(h)) for h in histories]
    out: dict[str, list[list[float]]] = {"rouge_own": [], "rouge_others": [], "copy_own": [], "copy_others": []}
    for i, user_split in enumerate(splits):
        others = [j for j in range(len(splits)) if j != i]
        rows = {key: [] for key in out}
        for query in user_split.val:
            rows["rouge_own"].append(best_rouge(query.output, histories[i]))
            rows["rouge_others"].append(sum(best_rouge(query.output, histories[j]) for j in others) / len(others))
            rows["copy_own"].append(copy_rate(query.output, sources[i]))
            rows["copy_others"].append(sum(copy_rate(query.output, sources[j]) for j in others) / len(others))
        for key, values in rows.items():
            out[key].append(values)
    return out


def report(values: dict[str, list[list[float]]], n_boot: int) -> list[str]:
    """The table: own, others and own - others for ROUGE-L and copy rate, with 95% intervals."""
    n_users, n_queries = len(values["rouge_own"]), sum(len(v) for v in values["rouge_own"])
    lines = [f"{n_users} users, {n_queries} validation queries; 95% intervals (bootstrap over users, then queries)",
             f"{'measure':<10} {'own history':<24} {'other users (mean)':<24} own - others"]
    for name, key in (("ROUGE-L", "rouge"), ("copy rate", "copy")):
        own, others = values[f"{key}_own"], values[f"{key}_others"]
        a, b = bootstrap_interval(own, n_boot=n_boot), bootstrap_interval(others, n_boot=n_boot)
        d = paired_difference_interval(own, others, n_boot=n_boot)
        lines.append(f"{name:<10} {a.mean:.3f} [{a.low:.3f}, {a.high:.3f}]   "
                     f"{b.mean:.3f} [{b.low:.3f}, {b.high:.3f}]   "
                     f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{'*' if d.low > 0 or d.high < 0 else ''}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=MEDDIALOGUE, help="data file, or demo (default: the MedicalDialogue sample)")
    p.add_argument("--users", type=int, default=100, help="users (default 100, as bench/quality.py --med-users 100)")
    p.add_argument("--val-fraction", type=float, default=0.5, help="data.val_fraction (default 0.5)")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap draws (default 2000)")
    args = p.parse_args(argv)
    if args.source != "demo" and not Path(args.source).is_file():
        p.error(f"--source {args.source}: no such file (the MedicalDialogue sample lies beside the repository)")
    splits = evaluated_users(args.source, args.users, args.val_fraction)
    print(f"history_signal: {args.source}, {len(splits)} users; scoring every answer against every history", flush=True)
    print("\n".join(report(signal(splits), args.boot)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
