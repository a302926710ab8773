"""Pick a configuration from a study's front and export it to serving.

Modules: :mod:`.pick` (pick expressions), :mod:`.bundle` (the bundle), :mod:`.manifest`
(``serving.yaml``), :mod:`.vllm` (ranks, zero-padding and the serve command), :mod:`.registry`
(the MLflow model registry).

The serving bundle written by :func:`export_bundle` into ``DIR``::
    serving.yaml           base model, adapters per user, retrieval, prompt, metrics, vLLM command
    vllm.sh                the ready ``vllm serve ... --enable-lora --lora-modules ...`` line
    trial.json             the trial record as the study holds it
    adapters/<user>/       PEFT adapter (adapter_config.json + fp16 adapter_model.safetensors),
                           merged rank n*r, the exact file whose size is the trial's storage_bytes;
                           for a trial with shared pieces (perpcs.top_k or perpcs.retrieve), the
                           user's own memory and assembled pieces as one adapter of the summed rank
    state/<user>/          (shared pieces only) what the trial stored per user: the assembly file
                           (and own adapter), whose sizes add up to the trial's storage_bytes
    vllm/<user>/           the same adapter zero-padded to the rank vLLM is started with
                           (only when n*r is not already 8, 16, ..., 256)
    base/                  the base model, when it has no directory of its own (the tiny model)
"""

from search.errors import ExportError
from search.export.bundle import BUNDLE_ENTRIES, Bundle, export_bundle, prepare_out
from search.export.pick import Pick, metric_value, parse_pick, pick_trial
from search.export.vllm import VLLM_RANKS, pad_adapter, vllm_command, vllm_rank

__all__ = [
    "BUNDLE_ENTRIES", "Bundle", "ExportError", "Pick", "VLLM_RANKS", "export_bundle", "metric_value", "pad_adapter",
    "parse_pick", "pick_trial", "prepare_out", "vllm_command", "vllm_rank",
]
