"""Pick a configuration from a study's front and export it to serving.

Modules: :mod:`.pick` (pick expressions), :mod:`.bundle` (the one bundle writer, and a study's
bundle), :mod:`.cohort` (a per-user study's bundle: each user's pick, the per-user part of the
manifest), :mod:`.manifest` (``serving.yaml`` and its vocabulary), :mod:`.vllm` (ranks and their
buckets, zero-padding, how ``vllm.sh`` serves), :mod:`.summary` (``summary.json``), :mod:`.prompt`
(the trial's prompt, rebuilt from a bundle), :mod:`.bundle_files` (what an export owns in its directory);
the MLflow model registry is :mod:`search.tracking.registry`.

The serving bundle written by :func:`export_bundle` (or :func:`export_cohort`) into ``DIR``; every
path it names is relative to ``DIR``, so the bundle works wherever it is copied. ``<name>`` is the
user's file name (:func:`runners.files.user_file_name`: the user id itself for plain ids such as
``u0`` or ``alice_bob``, else a readable part and a hash, ``alice_bob-0a138d32cb`` for
``alice/bob``); ``serving.yaml`` keys everything by the raw user id and names each user's
directories::
    serving.yaml           base model, users, adapters (path, vLLM name, rank, bucket, storage), memory,
                           retrieval (retriever, k, profiles), prompt (template as text, chat format,
                           budget), request, metrics, vLLM (command, buckets, how adapters are loaded)
    vllm.sh                the vLLM server, run from DIR, with comments on the sizes it picks: up to 8
                           adapters ``vllm serve ./base ... --enable-lora --lora-modules name=./vllm/name
                           ...``; more are loaded on demand (vLLM's filesystem LoRA resolver on
                           adapters/), one server at the largest rank or ``vllm.sh --bucket R`` per bucket
    summary.json           users, storage (total, per user), vLLM rank buckets with counts, the largest rank
    request.json           an OpenAI-compatible /v1/completions body for vLLM: the first user's first
                           validation query, with that user's LoRA as "model"
    trial.json             the trial record as the study holds it (each user's, for a per-user study)
    base/                  the base model (config, weights, tokenizer), unless --base-model names one
    adapters/<name>/       PEFT adapter (adapter_config.json with base_model_name_or_path "./base" +
                           fp16 adapter_model.safetensors), merged rank n*r, the exact file whose size
                           is the trial's storage_bytes; for a trial with shared pieces (perpcs.top_k
                           or perpcs.retrieve), the user's own memory and assembled pieces as one
                           adapter of the summed rank
    state/<name>/          (shared pieces only) what the trial stored per user: the assembly file
                           (and own adapter), whose sizes add up to the trial's storage_bytes
    vllm/<name>/           (adapters listed in vllm.sh only) the same adapter zero-padded to the rank of
                           its bucket, when n*r is not already 8, 16, ..., 256
    users/<name>/profile.jsonl   (retrieval only) the profile items retrieval draws from, in order
    .pers-search-bundle.json     the files and directories the export wrote (``export --force`` removes
                           these and nothing else; see :mod:`.bundle_files`)

A per-user study (``scope: per_user``) exports with :func:`export_cohort`: the pick applies to
each user's own front, the bundle holds every user's adapter at its own rank, and
``serving.yaml`` lists each user's trial, configuration and retrieval under ``per_user``.

:func:`bundle_prompt` (and ``pers-search prompt DIR --user U --query TEXT``) builds the exact
prompt the trial gave its model for a query, retrieval included.
"""

from search.errors import ExportError
from search.export.bundle import BUNDLE_ENTRIES, Bundle, export_bundle, prepare_out, unfinished_bundle
from search.export.cohort import export_cohort
from search.export.pick import Pick, metric_value, parse_pick, pick_trial
from search.export.prompt import bundle_prompt, completion_request, load_manifest
from search.export.summary import summary_lines
from search.export.vllm import VLLM_RANKS, buckets, max_loras, pad_adapter, serving_plan, vllm_command, vllm_rank

__all__ = [
    "BUNDLE_ENTRIES", "Bundle", "ExportError", "Pick", "VLLM_RANKS", "bundle_prompt", "buckets",
    "completion_request", "export_bundle", "export_cohort", "load_manifest", "max_loras", "metric_value", "pad_adapter",
    "parse_pick", "pick_trial", "prepare_out", "serving_plan", "summary_lines", "unfinished_bundle", "vllm_command",
    "vllm_rank",
]
