"""The SAAS method: ``saas-nehvi`` and ``saas-map`` (importing this package registers both).

- :mod:`~search.optimizers.saas.optimizer`: the optimiser (one class, two registered names);
- :mod:`~search.optimizers.saas.settings`: :class:`SaasSettings`, its switches;
- :mod:`~search.optimizers.saas.fits`: the MAP ensemble, BoTorch's NUTS and the vectorised NUTS fit;
- :mod:`~search.optimizers.saas.nuts`: the vectorised NUTS program (JAX);
- :mod:`~search.optimizers.saas.warm_chains`: warm NUTS chains from an anchor fit;
- :mod:`~search.optimizers.saas.padded_model`: BoTorch's SAAS model padded so compilations are reused;
- :mod:`~search.optimizers.saas.flag_screen`: which layer flags the surrogates see one by one;
- :mod:`~search.optimizers.saas.start_design`: the start spread over storage;
- :mod:`~search.optimizers.saas.acquisition_search`, :mod:`~search.optimizers.saas.local_search`: the
  acquisition searched on the grid from the front;
- :mod:`~search.optimizers.saas.relevance`: which continuous dimensions a surrogate ignores.

The modules that import JAX (``nuts``, ``padded_model``, ``flag_screen``) are imported inside the
functions that fit, so importing this package is cheap.
"""

from search.optimizers.saas.optimizer import SaasMAP, SaasNEHVI
from search.optimizers.saas.settings import MAP_DEFAULTS, NUTS_DEFAULTS, SaasSettings

__all__ = ["MAP_DEFAULTS", "NUTS_DEFAULTS", "SaasMAP", "SaasNEHVI", "SaasSettings"]
