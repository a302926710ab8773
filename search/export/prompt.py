"""The prompt an exported trial gives its model, rebuilt from the bundle alone.

A trial's prompt for a query is: retrieve the ``k`` best items of the user's profile (the
history items the trial trained and retrieved on, ``users/<name>/profile.jsonl`` in the bundle)
with the trial's retriever, render them with the task's template within the prompt token budget
(the base model's tokenizer counts), and wrap the result in the base model's chat format.
:func:`bundle_prompt` does exactly that from the bundle's ``serving.yaml``, with the runner's own
functions, so the prompt equals the one the trial built; any serving stack can then send it to
vLLM's OpenAI-compatible ``/v1/completions`` with the user's LoRA name as ``model``.
``serving.yaml`` also spells the template and the retrieval out as text for stacks that rebuild
the prompt themselves.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from runners.chat import render_prompt
from runners.data.types import HistoryItem
from runners.files import user_file_name
from runners.prompts import build_prompt, corpus_text, retrieval_query
from runners.retrieval.cache import IndexCache
from search.errors import ExportError

MANIFEST = "serving.yaml"
PROFILE_FILE = "profile.jsonl"


def profile_path(user: str) -> str:
    """Where a user's profile items sit in a bundle (relative to it): under the user's file name."""
    return f"users/{user_file_name(user)}/{PROFILE_FILE}"


def write_profile(path: Path, items: Iterable[HistoryItem]) -> int:
    """Write history items as JSONL (fields left out when empty), in order; returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for item in items:
        record = {k: v for k, v in asdict(item).items() if v is not None and v != {}}
        if "fields" in record:
            record["fields"] = dict(record["fields"])
        lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def read_profile(path: Path) -> list[HistoryItem]:
    """The history items of a ``profile.jsonl`` (as :func:`write_profile` wrote them).

    Raises:
        ExportError: the file is missing or a line is not an item.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise ExportError(f"{path}: missing; the bundle's retrieval needs it (export the trial again)") from err
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            items.append(HistoryItem(**{**record, "fields": dict(record.get("fields", {}))}))
        except (ValueError, TypeError) as err:
            raise ExportError(f"{path}:{number}: not a profile item ({err}); keys are text, input, output, time, "
                              "id, fields") from err
    return items


def load_manifest(bundle: str | Path) -> dict[str, Any]:
    """A bundle's ``serving.yaml``.

    Raises:
        ExportError: no bundle there.
    """
    import yaml

    path = Path(bundle) / MANIFEST
    try:
        # libyaml's safe parser when PyYAML has it: a 1,000-user manifest loads in 5 s, not 22
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(path.read_text(encoding="utf-8"))
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except FileNotFoundError as err:
        raise ExportError(f"{path}: missing; give the directory `pers-search export --out` wrote") from err


def base_model_dir(bundle: str | Path, manifest: Mapping[str, Any]) -> Path:
    """The base model's directory: ``base_model.path``, relative to the bundle unless absolute."""
    path = Path(manifest["base_model"]["path"])
    return path if path.is_absolute() else Path(bundle) / path


@lru_cache(maxsize=4)
def _tokenizer(directory: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)


def bundle_prompt(bundle: str | Path, user: str, query: str) -> str:
    """The prompt the exported trial gives its model for ``query`` of ``user``.

    Args:
        bundle: the bundle directory (``serving.yaml`` inside).
        user: a user id of the bundle (``adapters`` in ``serving.yaml``).
        query: the request's text (the query input).

    Returns:
        The full prompt text, chat format included: send it as ``prompt`` to ``/v1/completions``.

    Raises:
        ExportError: no such user, or the bundle lacks what its retrieval needs.
    """
    manifest = load_manifest(bundle)
    return manifest_prompt(bundle, manifest, user, query)


def manifest_prompt(bundle: str | Path, manifest: Mapping[str, Any], user: str, query: str) -> str:
    """:func:`bundle_prompt` with the manifest already read (the tokenizer loaded from the bundle's base model)."""
    users = sorted(manifest.get("users") or manifest.get("adapters") or {})
    if users and user not in users:
        raise ExportError(f"{Path(bundle) / MANIFEST}: no user {user!r}; the bundle serves {', '.join(users)}")
    tokenizer = _tokenizer(str(base_model_dir(bundle, manifest)))
    own = (manifest.get("per_user") or {}).get(user) or {}  # a per-user study's bundle: each user's own
    retrieval, prompt = own.get("retrieval") or manifest.get("retrieval") or {}, manifest["prompt"]
    items: Sequence[HistoryItem] = []
    k = int(retrieval.get("k") or 0)
    if k > 0:
        relative = (retrieval.get("profiles") or {}).get(user, profile_path(user))
        items = read_profile(Path(bundle) / relative)
    return personalized_prompt(prompt["task"], query, items, retrieval.get("retriever"), k, tokenizer,
                               int(prompt["max_prompt_tokens"]), user_id=user)


def personalized_prompt(task: str, query: str, items: Sequence[HistoryItem], retriever: str | None, k: int,
                        tokenizer, max_prompt_tokens: int, *, user_id: str = "",
                        cache: IndexCache | None = None) -> str:
    """Retrieve ``k`` of ``items`` for ``query``, render them with the task's template within the
    token budget and apply the chat format: what a trial does for each query (``runners.trial``).
    """
    retrieved: list[HistoryItem] = []
    if k > 0 and items and retriever:
        corpus = [corpus_text(task, item) for item in items]
        index = (cache or IndexCache(persist=False)).get_or_build(retriever, list(items), task, corpus,
                                                                  user_id=user_id)
        retrieved = [items[i] for i in index.top_k(retrieval_query(task, query), k)]
    built = build_prompt(task, query, retrieved, tokenizer, max_prompt_tokens)
    return render_prompt(tokenizer, built.text)


def completion_request(model: str, prompt: str, max_new_tokens: int) -> dict[str, Any]:
    """An OpenAI-compatible ``/v1/completions`` body for vLLM: ``model`` is the user's LoRA name
    (or the base model's served name), greedy decoding, the trial's answer length."""
    return {"model": model, "prompt": prompt, "max_tokens": int(max_new_tokens), "temperature": 0.0}
