r"""The EM engine: diagonal-covariance Gaussian mixtures trained by EM, in NumPy (+ numba).

audiogmm's engine: one :class:`DiagonalGMM` per class, trained on MFCC frames, scored
frame by frame. It imports only NumPy, SciPy, the standard library and the package's
``exceptions``/``_validation`` (threadpoolctl is imported lazily, when available, to keep
BLAS on one thread; numba, when available, at the first float32 fit -- see "Numba
kernels" below).

Layout: ``_stats`` (the block E-step, accumulate -> :class:`SuffStats`, update), ``_init``
(k-means++ on a sample), ``_kernels`` (numba), ``_source`` (frame sources), ``_em`` (the EM
driver over a source, partitions and the fold order, executors, per-frame state), ``gmm``
(the estimator) and ``map`` (MAP adaptation from the same statistics).

The mathematics
---------------
A mixture of :math:`K` Gaussians with diagonal covariances in :math:`D` dimensions has
weights :math:`w_k`, means :math:`\mu_{kd}` and variances :math:`\sigma^2_{kd}`. The joint
log-density of frame :math:`x` and component :math:`k` is

.. math::

    \log p(x, k) = \log w_k - \tfrac12 \sum_d \Big(\log 2\pi + \log\sigma^2_{kd}
                   + \frac{(x_d - \mu_{kd})^2}{\sigma^2_{kd}}\Big).

Expanding the square gives the *dot-product form* used throughout,

.. math::

    \log p(x, k) = \sum_d x_d \frac{\mu_{kd}}{\sigma^2_{kd}}
                   - \tfrac12 \sum_d x_d^2 \frac{1}{\sigma^2_{kd}} + c_k, \qquad
    c_k = \log w_k - \tfrac12 \sum_d \Big(\log 2\pi + \log \sigma^2_{kd}
          + \frac{\mu_{kd}^2}{\sigma^2_{kd}}\Big),

so a block of frames is scored against every component by matrix products. We stack the
design ``Z = [x, x**2, 1]`` (``2D + 1`` columns; one more, ``-h``, during ``fit``) and the
matching weight matrix, so the two products ``X @ (mu/var).T`` and ``X**2 @ (-0.5/var).T``
plus the constants are **one** GEMM per block; the M-step's ``R.T @ X`` and ``R.T @ X**2``
(and the counts, via the column of ones) are the second GEMM. The frames are centred on
the data mean before squaring (GMMs are translation-equivariant; the means are shifted back)
which keeps float32 cancellation small.

``log p(x) = logsumexp_k log p(x, k)`` is computed with a per-frame shift so that the
exponentials neither overflow nor underflow: far-away frames score a finite, very negative
value, never ``-inf`` or NaN. While scoring the shift is the per-frame maximum. During
``fit`` it is the frame's log-likelihood from the previous EM iteration, folded into the
GEMM as the extra ``-h`` column so no separate max/subtract pass is needed; frames whose
shifted sum leaves a safe window (``1e-10 .. 1e10``) are recomputed with the exact maximum.
Exponents are clipped below at -60 (-600 in float64) before ``exp``: the clipped terms are
below 1e-16 of the frame's total and this keeps subnormal numbers (which slow BLAS down by
two orders of magnitude on x86) out of the GEMMs.

EM and the lower bound
----------------------
One EM iteration is a single pass over row blocks: :func:`accumulate_range` computes for each
block the responsibilities and sums the sufficient statistics (counts :math:`N_k`, first
moments :math:`\sum_n r_{nk} x_n`, second moments :math:`\sum_n r_{nk} x_n^2` and the total
log-likelihood) into float64 accumulators; :func:`update` turns the summed statistics into
new parameters (``variances = E_k[x^2] - mean^2 + reg_covar``, exactly as scikit-learn).
The N x K responsibility matrix is never held whole (memory O(block_size x K)).

Per block (1024 frames by default, so that the design, the centred frames and the
responsibilities stay in L2 cache) the work is: one contiguous subtraction of the tiled
centre, one transposing copy and one square into the preallocated design, the E-step GEMM
``WT @ ZT``, three in-place passes over ``E`` (clip, ``exp``, column sums), a float32
``log`` of the B column sums, the scaling of ``E`` by ``1/s`` and the M-step GEMM (as
``ZT @ E.T`` up to K=64, which OpenBLAS runs faster for small K). The block statistics are
summed in float64 per fixed chunk of 16 blocks, the chunks in order within a partition of
64 chunks and the partitions in order (``_em``), so the result is the same bit for bit
whether the chunks run in one thread, several, or other processes.

Numba kernels
-------------
For float32 compute on C-contiguous frames, the NumPy passes around the two GEMMs are
replaced by numba kernels (:mod:`audiogmm.mixture._kernels`; numba comes with librosa). Per block
the work is: build the design (``ZT`` for the E-step GEMM ``WT @ ZT`` and its row-major
copy ``Z`` for the M-step GEMM ``E @ Z``, the fastest orientations here), the two GEMMs,
and in between clip, float32 ``exp`` (a vectorised polynomial), the per-frame sums, the
window check, ``log`` and the normalisation. Up to K=16 (``_CHUNK_KERNEL_MAX_K``) a whole
chunk of blocks runs in one call of ``_kernels.accumulate_range`` (a block
with a frame out of the window is redone with exact maxima); above, the kernels are called
per block with NumPy's ``matmul`` in between (only the out-of-window frames are redone),
because numba's ``np.dot`` goes to SciPy's OpenBLAS, slower than NumPy's on these shapes at
large K (``bench/gmm.py`` measures both paths). Same maths, results equal to the NumPy path to
float32 rounding (a test checks both). The chunk kernel runs without the GIL (no Python
between blocks), so row-block threads scale. numba is imported and the
kernels compiled (several seconds, once) or loaded from numba's cache next to the module
(about 1 s) at the first float32 fit; without numba, if compilation fails, or with
``AUDIOGMM_NUMBA=0``, the NumPy path runs, silently.

Because E-step and M-step are fused, the mean log-likelihood computed in iteration ``i``
belongs to the parameters **before** that iteration's M-step. This is also scikit-learn's
semantics: ``lower_bound_`` is the value from the last E-step, ``n_iter_`` counts E+M steps,
and EM stops when ``|lower_bound_i - lower_bound_{i-1}| < tol``. The final parameters are
those after the last M-step (so they are at least as good as ``lower_bound_`` says).
``lower_bounds_`` keeps the whole trace of the selected initialisation; EM never decreases
it, up to float rounding, except right after a component is re-seeded (see below).

Precision policy
----------------
``dtype="float32"`` (default): the GEMMs and ``exp`` run in float32 (float32 ``exp`` is
vectorised and GEMM rates double), while the sufficient statistics and the log-likelihood
sums are accumulated across blocks in float64, and the parameter update is done in float64.
Parameters are stored in float64. Results agree with a float64 EM to about 1e-5 relative.
``dtype="float64"`` does all compute in float64 (used for tight parity tests).
float32 input is used as is (no copy); float64 input is cast block by block.

Degenerate components
---------------------
A component that loses all responsibility (``N_k < 1e-3``) or collapses on a single frame
(``N_k < 2`` with every variance at the ``reg_covar`` floor) is re-seeded on the frames the
mixture explains worst (a bounded number of times per initialisation), with a
:class:`~audiogmm.exceptions.ConvergenceWarning`. Components sitting on several duplicated
frames (variance at the floor with ``N_k >= 2``) cannot be repaired by re-seeding; they are
kept and reported in a warning. Nothing here produces NaN.
"""

from audiogmm.mixture._em import (PARTITION_CHUNKS, FileFrameState, MemoryFrameState,
                                  PartitionTask, SerialExecutor, ThreadExecutor,
                                  accumulate_partition, worst_partition)
from audiogmm.mixture._source import ArraySource, ConcatSource, IndexedSource, is_source
from audiogmm.mixture._stats import DEFAULT_BLOCK_SIZE, SuffStats, auto_block_size
from audiogmm.mixture.gmm import DiagonalGMM, score_samples_many, select_n_components
from audiogmm.mixture.map import map_adapt, map_statistics

__all__ = ["DiagonalGMM", "score_samples_many", "select_n_components", "SuffStats",
           "map_adapt", "map_statistics", "ArraySource", "ConcatSource", "IndexedSource",
           "SerialExecutor", "ThreadExecutor", "MemoryFrameState", "FileFrameState",
           "PartitionTask", "accumulate_partition", "worst_partition", "PARTITION_CHUNKS",
           "DEFAULT_BLOCK_SIZE", "auto_block_size", "is_source"]
