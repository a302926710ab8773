"""Discrete local search of an acquisition function, started from the observed front.

``optimize_acqf_mixed_alternating`` starts from a continuous relaxation (L-BFGS over the relaxed
cube) and then moves at most ``maxiter_discrete x maxiter_alternating`` single steps. On the MiLP
spaces that start is blind to the known storage objective (it is computed on the rounded point,
so it is piecewise constant and has no gradient), and a relaxed start with twenty irrelevant
layer flags on needs twenty single steps to turn them off.

Here the search stays on the grid:

- **moves** (:func:`neighbours`): flip one flag, move one int or ordinal value by 1, 2, 4, ...
  grid steps either way (a count in 1..32 crosses its range in a few moves), or switch one
  categorical value; every neighbour is canonicalised (an inactive conditional parameter takes
  its default), so equivalent configurations are one point;
- **starts**: every point of the observed front (the best region to look around; the front's
  one-move neighbourhood is a few hundred points), plus the best of ``raw_samples`` random points
  whose layer flags are drawn at a random density (so sparse and dense masks are both tried);
- **climb** (:func:`hill_climb`): every climber moves to its best neighbour while that improves
  the acquisition value; all neighbours of all climbers are scored in one batched call per step.

The caller takes the best scored point that is not yet observed or pending. Continuous dimensions
(none in the MiLP spaces) are left where the start has them; :class:`~search.optimizers.nehvi.NEHVIOptimizer`
polishes them afterwards with L-BFGS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:
    import torch

    from search.encoding import Encoder

Row = tuple[float, ...]


def grid_moves(grid: Sequence[float], kind: str, value: float) -> list[float]:
    """The values one move away from ``value`` on a dimension's grid.

    Binary and categorical: every other value. Ordered (int, ordinal): 1, 2, 4, ... grid steps down
    and up, within the grid.
    """
    if kind in ("binary", "categorical"):
        return [g for g in grid if g != value]
    k = min(range(len(grid)), key=lambda j: abs(grid[j] - value))
    out, step = [], 1
    while step < len(grid):
        out += [grid[j] for j in (k - step, k + step) if 0 <= j < len(grid)]
        step *= 2
    return out


def canonical_row(encoder: "Encoder", row: Sequence[float]) -> Row:
    """The encoded canonical configuration of ``row`` (grid values snapped, inactive parameters at defaults)."""
    return tuple(encoder.encode(encoder.decode(row)))


def neighbours(encoder: "Encoder", row: Row, frozen: Iterable[int] = ()) -> list[Row]:
    """Distinct canonical rows one move (:func:`grid_moves`) away from ``row``; ``frozen`` dimensions stay."""
    frozen = set(frozen)
    out: dict[Row, None] = {}
    for i, dim in enumerate(encoder.dims):
        if dim.grid is None or i in frozen:
            continue
        for value in grid_moves(dim.grid, dim.kind, row[i]):
            moved = canonical_row(encoder, row[:i] + (value,) + row[i + 1 :])
            if moved != row:
                out[moved] = None
    return list(out)


def random_rows(encoder: "Encoder", n: int, generator: "torch.Generator", fixed: dict[int, float]) -> list[Row]:
    """``n`` random canonical rows; the binary dimensions of each row are on with a random probability.

    Uniform flags put about half of a mask on; drawing the density first spreads the number of
    flags on (and with it the storage) over its whole range, like BoTorch's ``equally_spaced``
    start for binary dimensions.
    """
    import torch

    u = torch.rand(n, encoder.d, generator=generator, dtype=torch.float64)
    density = torch.rand(n, 1, generator=generator, dtype=torch.float64)
    rows = []
    for ui, p in zip(u.tolist(), density[:, 0].tolist()):
        x = []
        for i, (dim, v) in enumerate(zip(encoder.dims, ui)):
            if i in fixed:
                x.append(fixed[i])
            elif dim.grid is None:
                x.append(v)
            elif dim.kind == "binary":
                x.append(1.0 if v < p else 0.0)
            else:
                x.append(dim.grid[min(int(v * len(dim.grid)), len(dim.grid) - 1)])
        rows.append(canonical_row(encoder, x))
    return rows


class Scorer:
    """Acquisition values of rows, computed once per row in batches of ``batch_limit``."""

    def __init__(self, acqf: Any, batch_limit: int = 256) -> None:
        self.acqf = acqf
        self.batch_limit = batch_limit
        self.values: dict[Row, float] = {}
        self.calls = 0

    def __call__(self, rows: Iterable[Row]) -> list[float]:
        import torch

        rows = list(rows)
        todo = list(dict.fromkeys(r for r in rows if r not in self.values))
        for start in range(0, len(todo), self.batch_limit):
            chunk = todo[start : start + self.batch_limit]
            with torch.no_grad():
                X = torch.tensor(chunk, dtype=torch.float64).unsqueeze(1)
                vals = self.acqf(X).reshape(-1).tolist()
            self.calls += 1
            self.values.update(zip(chunk, vals))
        return [self.values[r] for r in rows]


def hill_climb(
    scorer: Scorer,
    starts: Sequence[Row],
    moves: Callable[[Row], list[Row]],
    *,
    max_steps: int = 32,
    max_climbers: int = 16,
) -> None:
    """Best-improvement ascent from each start until no neighbour improves (values land in ``scorer``).

    Climbers that meet are merged; after each step only the ``max_climbers`` best go on.
    """
    climbers = list(dict.fromkeys(starts))
    scorer(climbers)
    for _ in range(max_steps):
        hood = {c: moves(c) for c in climbers}
        scorer(r for rows in hood.values() for r in rows)
        moved = {}
        for c, rows in hood.items():
            if not rows:
                continue
            best = max(rows, key=lambda r: scorer.values[r])
            if scorer.values[best] > scorer.values[c]:
                moved[best] = None
        if not moved:
            return
        climbers = sorted(moved, key=lambda r: scorer.values[r], reverse=True)[:max_climbers]
