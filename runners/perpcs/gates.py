"""Per-Pcs gates: a per-token input gate on each LoRA piece, and post-hoc gate training.

A piece is one layer-projection LoRA pair ``(A, B)`` (``A``: r x d_in, ``B``: d_out x r, with
the LoRA scale ``alpha/r`` already folded into ``B``). Its gate is a vector ``g`` of the
projection's input width, initialised to zero. With the gate the projection computes, per token
(paper, section 2.4)::

    z_t = W x_t + B A x_t * sigmoid(g . x_t)

Only the gates train (the base and the pieces are frozen), for about 50 steps on the sharer's
own history. PEFT's LoRA layers have no per-token input gate, so the gated branch is a small
forward hook of our own over the base ``nn.Linear`` layers; the hooks are removed afterwards
and leave the model untouched.

Reference code differences: the reference multiplies the input by the gate before its LoRA
dropout (``x <- x * p_t``); gate training here runs without dropout, where both forms are the
same function. Its gate steps are 200 with a cosine schedule that restarts past the last
epoch; here the trial runner's schedule (linear warm-up and decay) over ``steps`` steps.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Mapping, Sequence

from runners.batching import Example
from runners.spec import TrainSpec
from runners.training import train_phase

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from runners.training import PhaseStats

Piece = tuple["torch.Tensor", "torch.Tensor"]
"""``(A, B)``: A is (r, d_in), B is (d_out, r) with the LoRA scale folded in."""


def gated_delta(x: "torch.Tensor", a: "torch.Tensor", b: "torch.Tensor", gate: "torch.Tensor") -> "torch.Tensor":
    """The gated LoRA branch ``B A x * sigmoid(g . x)`` for every token.

    Args:
        x: Inputs, shape (..., d_in).
        a: A, shape (r, d_in).
        b: B, shape (d_out, r).
        gate: g, shape (d_in,).

    Returns:
        The branch output, shape (..., d_out).
    """
    import torch

    p = torch.sigmoid(x @ gate.to(x.dtype))
    return ((x @ a.to(x.dtype).T) @ b.to(x.dtype).T) * p.unsqueeze(-1)


class GatedModel:
    """A frozen model with gated pieces hooked onto its projections; only the gates train.

    It offers what ``runners.training.train_phase`` needs (``parameters``, ``train``, ``eval``
    and a call returning an output with ``.loss``), so gate training reuses the trial runner's
    training loop. Use it as a context manager, or call :meth:`remove` to take the hooks off.

    Args:
        model: The base causal LM (frozen).
        pieces: ``(A, B)`` by module path (e.g. ``model.layers.0.mlp.up_proj``).
        device: Where the gates live.
    """

    def __init__(self, model, pieces: Mapping[str, Piece], device) -> None:
        import torch

        self.model = model
        self.gates: dict[str, torch.Tensor] = {}
        self._handles = []
        for path, (a, b) in pieces.items():
            module = model.get_submodule(path)
            gate = torch.zeros(module.in_features, device=device, requires_grad=True)
            self.gates[path] = gate
            hook = _gate_hook(a.to(device), b.to(device), gate)
            self._handles.append(module.register_forward_hook(hook))

    def parameters(self):
        """The gate vectors (the only trainable tensors)."""
        return iter(self.gates.values())

    def train(self) -> "GatedModel":
        self.model.train()
        return self

    def eval(self) -> "GatedModel":
        self.model.eval()
        return self

    def __call__(self, **batch):
        return self.model(**batch)

    def remove(self) -> None:
        """Take the hooks off the model."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> "GatedModel":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _gate_hook(a, b, gate):
    def hook(module, args, output):
        return output + gated_delta(args[0], a, b, gate)

    return hook


def gate_spec(spec: TrainSpec, steps: int, lr: float, n_examples: int) -> TrainSpec:
    """The training settings of gate training: ``steps`` steps at ``lr``, no weight decay.

    Enough epochs are set for ``steps`` to be reached (``max_steps`` caps them).
    """
    per_epoch = max(1, math.ceil(n_examples / spec.batch_size))
    return dataclasses.replace(spec, lr=lr, max_steps=steps, epochs=max(1, math.ceil(steps / per_epoch)),
                               weight_decay=0.0)


def train_gates(model, pieces: Mapping[str, Piece], examples: Sequence[Example], spec: TrainSpec,
                pad_id: int, device, seed: int) -> tuple[dict[str, "torch.Tensor"], "PhaseStats"]:
    """Train one gate per piece on ``examples`` with the base and the pieces frozen.

    Args:
        model: The base causal LM (frozen, no adapters attached).
        pieces: The sharer's pieces by module path.
        examples: The sharer's history examples.
        spec: Gate-training settings (see :func:`gate_spec`).
        pad_id: The tokenizer's pad id.
        device: The model's device.
        seed: Seeds batch order.

    Returns:
        The trained gates by module path (fp32, on CPU) and the training stats.

    Raises:
        TrialFailed: NaN loss or out of memory.
    """
    with GatedModel(model, pieces, device) as gated:
        stats = train_phase(gated, examples, spec, pad_id, device, "gate_training", seed)
        gates = {path: g.detach().float().cpu() for path, g in gated.gates.items()}
    return gates, stats
