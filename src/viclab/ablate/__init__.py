"""Ablations that peel VICReg back to Laplacian Eigenmaps (spec S4-S7).

- no variance (S4): ``viclab train`` with ``loss.var_weight=0`` (``viclab ablate no-variance``);
- neighbours as views (S6): :func:`neighbours_config` + :func:`viclab.engine.train` (its views registered on import);
- latent optimisation (S5): :func:`run_latent`, naive and graph-corrected;
- Laplacian Eigenmaps (S7): :func:`run_eigenmaps`, on the graph of :mod:`viclab.ablate.graph`.

Every one writes a run folder the evaluation commands read like a trained encoder's.
"""

from viclab.ablate.graph import run_eigenmaps
from viclab.ablate.latent import run_latent
from viclab.ablate.neighbours import neighbours_config  # importing it registers views.kind=neighbours

__all__ = ["neighbours_config", "run_eigenmaps", "run_latent"]
