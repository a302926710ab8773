"""``summary.json``: a bundle at a glance (users, storage, rank buckets), also what ``export`` prints.

Storage is what a server keeps per user: the adapter file it loads (``adapters/<name>/
adapter_model.safetensors``; a user without memory has none), plus the profile items retrieval
draws from (``users/<name>/profile.jsonl``), counted apart.
"""

from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

from search.export.manifest import ServedAdapter
from search.export.vllm import ServingPlan, size_text

SUMMARY_FILE = "summary.json"
SUMMARY_FORMAT = "pers-search-summary/1"


def bundle_summary(users: Sequence[str], adapters: Sequence[ServedAdapter], plan: ServingPlan,
                   profile_bytes: int) -> dict[str, Any]:
    """The bundle's summary: users, adapters, storage (total and per user), buckets, the largest rank.

    Args:
        users: every user the bundle serves.
        adapters: their adapters (users without memory have none).
        plan: how ``vllm.sh`` serves them.
        profile_bytes: the retrieval profiles' bytes in all.
    """
    own = {a.user: a.storage_bytes for a in adapters}
    per_user = [own.get(user, 0) for user in users]
    return {
        "format": SUMMARY_FORMAT,
        "users": len(users),
        "adapters": len(adapters),
        "storage_bytes": {"total": sum(per_user), "per_user": _spread(per_user)},
        "profile_bytes": profile_bytes,
        "largest_rank": max((a.rank for a in adapters), default=None),
        "max_lora_rank": plan.max_lora_rank,
        "buckets": [{"max_lora_rank": b.max_lora_rank, "users": len(b.names), "storage_bytes": b.storage_bytes}
                    for b in plan.buckets],
        "not_servable_by_vllm": len(plan.too_big),
        "loading": "on demand" if plan.on_demand else "at start",
        "base_model_bytes": plan.base_bytes,
    }


def _spread(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0, "min": 0, "median": 0, "max": 0}
    return {"mean": statistics.fmean(values), "min": min(values), "median": statistics.median(values),
            "max": max(values)}


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """What ``export`` prints of a summary: users and adapters, storage, buckets, the largest rank."""
    storage, spread = summary["storage_bytes"], summary["storage_bytes"]["per_user"]
    lines = [f"{summary['users']} users, {summary['adapters']} with an adapter; storage {size_text(storage['total'])} "
             f"in all, per user {size_text(spread['mean'])} on average (min {size_text(spread['min'])}, median "
             f"{size_text(spread['median'])}, max {size_text(spread['max'])}); retrieval profiles "
             f"{size_text(summary['profile_bytes'])}"]
    if summary["buckets"]:
        buckets = ", ".join(f"rank <= {b['max_lora_rank']}: {b['users']}" for b in summary["buckets"])
        lines.append(f"vLLM buckets {buckets}; largest rank {summary['largest_rank']} (--max-lora-rank "
                     f"{summary['max_lora_rank']}); adapters loaded {summary['loading']}")
    if summary["not_servable_by_vllm"]:
        lines.append(f"{summary['not_servable_by_vllm']} users have a rank above 256, which vLLM cannot serve")
    return lines
