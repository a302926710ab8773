"""Space-filling baselines: scrambled Sobol and uniform random."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from search.optimizers.base import Observation, Optimizer, register_optimizer

_MAX_ROUNDS = 16


@register_optimizer("sobol")
class SobolOptimizer(Optimizer):
    """Scrambled Sobol points, decoded so each grid value gets an equal share.

    The sequence continues at position ``len(history)``, so a resumed study draws the points an
    uninterrupted one would have drawn. Duplicates (after rounding) are skipped; when the Sobol
    stream runs dry, uniform random points fill in.
    """

    def suggest(self, history: list[Observation], n: int,
                pending: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """Return up to ``n`` new Sobol configurations (see :meth:`Optimizer.suggest`).

        The sequence continues after the points already drawn: the history's and the pending ones.
        """
        taken = self.observed_keys(history, pending)
        out = self.take_new(self._sobol_stream(len(history) + len(pending), n), taken, n)
        if len(out) < n:
            seed = self.call_seed(history, "fill", pending)
            out += self.take_new(uniform_stream(self, seed, n), taken, n - len(out))
        return out

    def _sobol_stream(self, start: int, n: int) -> Iterator[dict[str, Any]]:
        import torch

        if self.encoder.d == 0:
            yield self.encoder.decode([])
            return
        engine = torch.quasirandom.SobolEngine(self.encoder.d, scramble=True, seed=self.seed)
        engine.fast_forward(start)
        for _ in range(_MAX_ROUNDS):
            for u in engine.draw(4 * n + 8, dtype=torch.float64).tolist():
                yield self.encoder.from_uniform(u)


@register_optimizer("random")
class RandomOptimizer(Optimizer):
    """Independent uniform draws over the grid values of every dimension."""

    def suggest(self, history: list[Observation], n: int,
                pending: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """Return up to ``n`` new random configurations (see :meth:`Optimizer.suggest`)."""
        seed = self.call_seed(history, pending=pending)
        return self.take_new(uniform_stream(self, seed, n), self.observed_keys(history, pending), n)


def uniform_stream(optimizer: Optimizer, seed: int, n: int) -> Iterator[dict[str, Any]]:
    """Uniform random configurations from a seeded generator (a bounded number of them)."""
    import torch

    if optimizer.encoder.d == 0:
        yield optimizer.encoder.decode([])
        return
    generator = torch.Generator().manual_seed(seed)
    for _ in range(_MAX_ROUNDS):
        for u in torch.rand(4 * n + 8, optimizer.encoder.d, generator=generator, dtype=torch.float64).tolist():
            yield optimizer.encoder.from_uniform(u)
