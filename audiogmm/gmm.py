"""Compatibility module: the engine now lives in :mod:`audiogmm.mixture`.

Re-exports what the rest of the package and its tests import from ``audiogmm.gmm`` today;
it goes away once the callers import from :mod:`audiogmm.mixture` and
:mod:`audiogmm._validation`.
"""

from audiogmm._validation import check_n_jobs as _n_threads  # noqa: F401
from audiogmm.mixture import DiagonalGMM, score_samples_many, select_n_components
from audiogmm.mixture._stats import (DEFAULT_BLOCK_SIZE,  # noqa: F401
                                     auto_block_size as _auto_block_size,
                                     numba_kernels as _numba_kernels)

__all__ = ["DiagonalGMM", "score_samples_many", "select_n_components"]
