"""How the SAAS optimisers search the acquisition function (``SaasSettings.acquisition_search = "local"``).

On a space with grid dimensions: moves on the grid (:mod:`search.optimizers.saas.local_search`) from
every point of the observed front and from the best random points, continuous dimensions then
polished by L-BFGS. On an all-continuous space: L-BFGS from the best Sobol points and from points
sprayed around the front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search.encoding import config_key
from search.optimizers.saas.local_search import Scorer, canonical_row, hill_climb, neighbours, random_rows

if TYPE_CHECKING:
    import torch

    from search.optimizers.nehvi import NEHVIOptimizer

#: Each front point gives ``SPRAY`` perturbed copies (normal, sd ``SPRAY_SD`` per dimension) as L-BFGS starts.
SPRAY, SPRAY_SD = 4, 0.05


def search_grid(optimizer: "NEHVIOptimizer", acqf: Any, fixed: dict[int, float], taken: set[str],
                seed: int) -> "torch.Tensor":
    """The best new point :func:`~search.optimizers.saas.local_search.hill_climb` finds from the front.

    Args:
        optimizer: the optimiser (its encoder, acquisition options and ``front_inputs``).
        acqf: the acquisition function.
        fixed: dimensions held at a value (the irrelevant ones, at the front's knee).
        taken: keys of configurations observed or pending (the best of the rest is returned).
        seed: seeds the random starts.

    Returns:
        The encoded point (``d``), its continuous dimensions polished by L-BFGS.
    """
    import torch

    encoder, opts = optimizer.encoder, optimizer.options

    def pinned(row: list[float]) -> tuple[float, ...]:
        return canonical_row(encoder, [fixed.get(i, v) for i, v in enumerate(row)])

    front = [pinned(row) for row in optimizer.front_inputs.tolist()]
    scorer = Scorer(acqf, batch_limit=256)
    raw = random_rows(encoder, opts.raw_samples, torch.Generator().manual_seed(seed), fixed)
    scorer(raw)
    best_raw = sorted(dict.fromkeys(raw), key=lambda r: scorer.values[r], reverse=True)[: opts.num_restarts]
    hill_climb(
        scorer, front + best_raw, lambda row: neighbours(encoder, row, fixed), max_steps=opts.maxiter,
        max_climbers=max(4, 2 * opts.num_restarts),
    )
    ranked = sorted(scorer.values, key=lambda r: scorer.values[r], reverse=True)
    best = next((r for r in ranked if config_key(optimizer.space, encoder.decode(r)) not in taken), ranked[0])
    x = torch.tensor(best, dtype=torch.float64)
    free = [i for i, dim in enumerate(encoder.dims) if dim.grid is None and i not in fixed]
    return polish_continuous(optimizer, acqf, x, free) if free else x


def search_continuous(optimizer: "NEHVIOptimizer", acqf: Any, fixed: dict[int, float], seed: int) -> "torch.Tensor":
    """L-BFGS from the best of ``raw_samples`` Sobol points and of points sprayed around the observed front.

    Each front point gives ``SPRAY`` perturbed copies (normal, sd ``SPRAY_SD`` per dimension, clipped
    to the cube); with the Sobol points they are scored in one batch and the ``num_restarts``
    best start L-BFGS. Held dimensions (``fixed``) keep their value throughout.
    """
    import torch
    from botorch.optim.optimize import optimize_acqf

    d, opts = optimizer.encoder.d, optimizer.options
    generator = torch.Generator().manual_seed(seed)
    raw = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(opts.raw_samples, dtype=torch.float64)
    front = optimizer.front_inputs.to(torch.float64)
    spray = front.repeat_interleave(SPRAY, dim=0)
    spray = (spray + SPRAY_SD * torch.randn(spray.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    candidates = torch.cat([raw, spray])
    for i, value in fixed.items():
        candidates[:, i] = value
    with torch.no_grad():
        values = torch.cat([acqf(chunk.unsqueeze(1)) for chunk in candidates.split(256)])
    starts = candidates[values.topk(min(opts.num_restarts, len(values))).indices]
    bounds = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.float64)
    x, _ = optimize_acqf(
        acqf, bounds, q=1, num_restarts=len(starts), batch_initial_conditions=starts.unsqueeze(1),
        fixed_features=fixed or None, options={"maxiter": opts.maxiter, "batch_limit": 64},
    )
    return x.reshape(-1)


def polish_continuous(optimizer: "NEHVIOptimizer", acqf: Any, x: "torch.Tensor", free: list[int]) -> "torch.Tensor":
    """L-BFGS on the continuous dimensions ``free`` of ``x``, every other dimension held."""
    import torch
    from botorch.optim.optimize import optimize_acqf

    d = optimizer.encoder.d
    bounds = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.float64)
    held = {i: float(x[i]) for i in range(d) if i not in free}
    polished, _ = optimize_acqf(
        acqf, bounds, q=1, num_restarts=1, batch_initial_conditions=x.reshape(1, 1, d),
        fixed_features=held, options={"maxiter": optimizer.options.maxiter},
    )
    return polished.reshape(-1)
