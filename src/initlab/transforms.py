"""Model transforms that add the parameters residual-family init schemes need (skip gates, Fixup
scalars): a re-export of :mod:`initlab.model.transforms`."""

from initlab.model import transforms as _transforms
from initlab.model.transforms import *  # noqa: F403  (the same public names)

__all__ = list(_transforms.__all__)
