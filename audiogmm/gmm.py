r"""Diagonal-covariance Gaussian mixture models trained by EM, in NumPy.

This module is audiogmm's engine: one :class:`DiagonalGMM` per class, trained on MFCC
frames, scored frame by frame. It imports only NumPy, SciPy and the standard library
(threadpoolctl is imported lazily, when available, to keep BLAS on one thread; numba, when
available, at the first float32 fit -- see "Numba kernels" below).

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
One EM iteration is a single pass over row blocks: :func:`_accumulate` computes for each
block the responsibilities and sums the sufficient statistics (counts :math:`N_k`, first
moments :math:`\sum_n r_{nk} x_n`, second moments :math:`\sum_n r_{nk} x_n^2` and the total
log-likelihood) into float64 accumulators; :func:`_update` turns the summed statistics into
new parameters (``variances = E_k[x^2] - mean^2 + reg_covar``, exactly as scikit-learn).
The N x K responsibility matrix is never held whole (memory O(block_size x K)).

Per block (1024 frames by default, so that the design, the centred frames and the
responsibilities stay in L2 cache) the work is: one contiguous subtraction of the tiled
centre, one transposing copy and one square into the preallocated design, the E-step GEMM
``WT @ ZT``, three in-place passes over ``E`` (clip, ``exp``, column sums), a float32
``log`` of the B column sums, the scaling of ``E`` by ``1/s`` and the M-step GEMM (as
``ZT @ E.T`` up to K=64, which OpenBLAS runs faster for small K). The block statistics are
summed in float64 per fixed chunk of 16 blocks and the chunks in order, so the result is
the same bit for bit whether the chunks run in one thread or several.

Numba kernels
-------------
For float32 compute on C-contiguous frames, the NumPy passes around the two GEMMs are
replaced by numba kernels (:mod:`audiogmm._numba_em`; numba comes with librosa). Per block
the work is: build the design (``ZT`` for the E-step GEMM ``WT @ ZT`` and its row-major
copy ``Z`` for the M-step GEMM ``E @ Z``, the fastest orientations here), the two GEMMs,
and in between clip, float32 ``exp`` (a vectorised polynomial), the per-frame sums, the
window check, ``log`` and the normalisation. Up to K=16 (``_CHUNK_KERNEL_MAX_K``) a whole
chunk of blocks runs in one call of :func:`audiogmm._numba_em.accumulate_range` (a block
with a frame out of the window is redone with exact maxima); above, the kernels are called
per block with NumPy's ``matmul`` in between (only the out-of-window frames are redone),
because numba's ``np.dot`` goes to SciPy's OpenBLAS, 15-19 % slower than NumPy's on these
shapes at K=64 and about equal at K=8. Same maths, results equal to the NumPy path to
float32 rounding (a test checks both). Measured in one process, alternating with the NumPy
path (D=40, 1 BLAS thread; NumPy/numba CPU time per iteration): K=64 1.19-1.26x, K=256
1.03-1.26x. The chunk kernel runs without the GIL (no Python between blocks), so row-block
threads scale: measured in alternating processes (N=1e6, K=8), one chunk per call against
one Python call per kernel and GEMM: 0.13-0.15 vs 0.16-0.17 s/iter on one thread,
0.075-0.08 vs 0.12-0.13 s wall with two (CPU 0.15 vs 0.21). numba is imported and the
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

from __future__ import annotations

import inspect
import logging
import math
import numbers
import queue
import warnings
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

from audiogmm.exceptions import ConvergenceWarning, NotFittedError, ParameterError

__all__ = ["DiagonalGMM", "score_samples_many", "select_n_components"]

_LOGGER = logging.getLogger(__name__)
_LOG_2PI = math.log(2.0 * math.pi)

#: Default number of frames per block (``block_size=None``). Measured on the target machine
#: (bench/gmm.py, D=40): 1024 rows beat 512, 2048, 4096 and 8192 for K = 8, 64 and 256 --
#: the block's design (2D+2 rows), centred frames and responsibilities (K rows) then stay
#: in the 2 MiB L2 cache, and the M-step GEMM ``E @ Z`` at K=8 is 2-3x slower from 2048
#: rows on. Beyond K=256 the block shrinks to keep E (K x B float32) near 1 MiB.
DEFAULT_BLOCK_SIZE = 1024


def _auto_block_size(n_components):
    """Frames per block for ``block_size=None``: 1024, or fewer for K > 256 (min 256)."""
    return int(max(256, min(DEFAULT_BLOCK_SIZE, (1 << 18) // max(n_components, 1))))
#: k-means++ initialisation works on a random subsample of at most
#: ``max(_INIT_MAX_SAMPLES, _INIT_SAMPLES_PER_COMPONENT * n_components)`` frames ...
_INIT_MAX_SAMPLES = 20_000
_INIT_SAMPLES_PER_COMPONENT = 50
#: ... followed by at most this many Lloyd iterations.
_INIT_LLOYD_ITER = 10
#: A component whose responsibility sum falls below this is "empty".
_EMPTY_COUNT = 1e-3
#: A variance counts as "at the floor" when its raw value (before reg_covar) is at most
#: reg_covar + this fraction of the data variance in that dimension.
_FLOOR_RELATIVE = 1e-4
#: At most this many EM iterations per initialisation may re-seed components.
_MAX_RESEED_ROUNDS = 5
#: Variances never go below this (matters only with reg_covar=0).
_MIN_VARIANCE = 1e-12
#: Safe window for the per-frame shifted sum of exponentials during fit.
_SUM_LOW, _SUM_HIGH = 1e-10, 1e10
_SUM_LOW32, _SUM_HIGH32 = np.float32(_SUM_LOW), np.float32(_SUM_HIGH)
#: Exponents are clipped below at this value before exp (no subnormals).
_EXP_FLOOR = {np.dtype(np.float32): -60.0, np.dtype(np.float64): -600.0}
_INIT_PARAMS = ("k-means++", "random")
#: The M-step GEMM runs as ``ZT @ E.T`` (instead of ``E @ ZT.T``) up to this K.
_SWAP_GEMM_MAX_K = 64
#: Up to this many components the numba path runs a whole chunk of blocks in one call of
#: ``_numba_em.accumulate_range`` (its GEMMs through numba's ``np.dot``, i.e. SciPy's
#: OpenBLAS); above it, one call per kernel with NumPy's ``matmul`` in between. Measured here
#: (1 BLAS thread): numba's ``np.dot`` is about as fast as NumPy's at K=8 (23 vs 26 us per
#: block GEMM) but 15-19 % slower at K=64 (190 vs 160 us), which made the single-thread
#: iteration 8 % slower at K=64 (alternating processes: 0.559 vs 0.518, 0.435 vs 0.396 s)
#: while the GIL-free chunk made K=8 15-20 % faster (0.13-0.15 vs 0.16-0.17 s).
_CHUNK_KERNEL_MAX_K = 16

#: Statistics are summed per chunk of this many blocks, then over chunks in order (the unit
#: of work of the row-block threads; fixed so results do not depend on the thread count).
_CHUNK_BLOCKS = 16


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int(name, value, minimum):
    if not _is_int(value) or value < minimum:
        raise ParameterError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_real(name, value, minimum=0.0):
    if not _is_real(value) or not math.isfinite(float(value)) or value < minimum:
        raise ParameterError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")
    return float(value)


def _n_threads(n_jobs, name="n_jobs"):
    """``n_jobs`` (None, int >= 1, or negative as in joblib) as a worker count >= 1.

    The one rule for every ``n_jobs``/``--jobs`` of the package: None is 1, a negative count
    is counted from the number of CPUs (-1 all, -2 all but one), as joblib and scikit-learn.
    """
    if n_jobs is None:
        return 1
    if not _is_int(n_jobs) or n_jobs == 0:
        raise ParameterError(f"{name} must be None or a non-zero int (-1: all CPUs, -2: all "
                             f"but one), got {n_jobs!r}")
    if n_jobs > 0:
        return int(n_jobs)
    import os

    return max(1, (os.cpu_count() or 1) + 1 + int(n_jobs))


def _check_dtype(value):
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ParameterError(f"dtype must be 'float32' or 'float64', got {value!r}")
    return dtype


def _check_random_state(random_state):
    """Turn ``random_state`` (None, int, Generator or RandomState) into a Generator."""
    if random_state is None:
        return np.random.default_rng()
    if _is_int(random_state):
        if random_state < 0:
            raise ParameterError(f"random_state must be None, an int >= 0, a numpy Generator "
                                 f"or RandomState, got {random_state!r}")
        return np.random.default_rng(int(random_state))
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1, size=4))
    raise ParameterError(f"random_state must be None, an int >= 0, a numpy Generator or "
                         f"RandomState, got {random_state!r}")


def _check_X(X, *, name="X", n_features=None, estimator="DiagonalGMM"):
    """Return X as a 2-D float32/float64 array (float32 and float64 input is not copied)."""
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise ParameterError(f"{name}: sparse input is not supported; pass a dense array "
                             f"(e.g. {name}.toarray())")
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise ParameterError(f"{name}: Complex data not supported; pass real-valued features")
    if X.dtype not in (np.float32, np.float64):
        if X.dtype.kind not in "biuf" and X.dtype != object:
            raise ParameterError(f"{name} must be numeric, got dtype {X.dtype}")
        X = X.astype(np.float64)  # object arrays of non-numbers raise TypeError here
    if X.ndim != 2:
        raise ParameterError(
            f"{name} must be a 2-D array of shape (n_samples, n_features), got shape "
            f"{X.shape}; Reshape your data with {name}.reshape(-1, 1) for a single feature "
            f"or {name}.reshape(1, -1) for a single frame")
    if X.shape[0] < 1:
        raise ParameterError(f"Found array with 0 sample(s) (shape={X.shape}) while a "
                             f"minimum of 1 is required: {name} has no frames")
    if X.shape[1] < 1:
        raise ParameterError(f"Found array with 0 feature(s) (shape={X.shape}) while a "
                             f"minimum of 1 is required: {name} has no features")
    if n_features is not None and X.shape[1] != n_features:
        raise ParameterError(
            f"{name} has {X.shape[1]} features, but {estimator} is expecting {n_features} "
            f"features as input; pass frames with the same features used in fit")
    return X


def _not_finite_error(X, name="X"):
    bad = ~np.isfinite(X)
    rows = np.flatnonzero(bad.any(axis=1))
    return ParameterError(
        f"{name} contains NaN or inf in {rows.size} row(s) (first at row {rows[0]}); "
        f"remove or impute those frames before fitting")


def _column_moments(X, block_size):
    """One blocked pass over X: finiteness check, column mean, variance and max |x - mean|.

    Returns float64 ``(mean, var, max_abs_dev)``; raises ParameterError on NaN/inf.
    """
    n, d = X.shape
    x0 = np.asarray(X[0], dtype=np.float64)
    s1 = np.zeros(d)
    s2 = np.zeros(d)
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    step = max(block_size, 16384)
    with np.errstate(over="ignore", invalid="ignore"):
        for a in range(0, n, step):
            b = np.asarray(X[a:a + step], dtype=np.float64) - x0
            s1 += b.sum(axis=0)
            s2 += np.einsum("ij,ij->j", b, b)
            np.minimum(lo, b.min(axis=0), out=lo)
            np.maximum(hi, b.max(axis=0), out=hi)
    if not (np.all(np.isfinite(s2)) and np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        if not np.all(np.isfinite(X)):
            raise _not_finite_error(X)
        raise ParameterError("X has values too large to square in float64 (|x| > 1e150); "
                             "rescale the features")
    m = s1 / n
    var = np.maximum(s2 / n - m * m, 0.0)
    mean = x0 + m
    max_dev = float(np.max(np.maximum(np.abs(lo - m), np.abs(hi - m))))
    return mean, var, max_dev


# --------------------------------------------------------------------------------------
# The pure maths: design matrix, block E-step, accumulate, update
# --------------------------------------------------------------------------------------


class _Stats(NamedTuple):
    """Sufficient statistics summed over frames, about ``center``.

    Attributes
    ----------
    nk : ndarray of shape (K,)
        Responsibility sums.
    sum_x : ndarray of shape (K, D)
        ``sum_n r_nk (x_n - center)``.
    sum_xx : ndarray of shape (K, D)
        ``sum_n r_nk (x_n - center)**2``.
    loglik : float
        ``sum_n log p(x_n)`` under the parameters used for the E-step.
    n_samples : int
        Number of frames summed.
    """

    nk: np.ndarray
    sum_x: np.ndarray
    sum_xx: np.ndarray
    loglik: float
    n_samples: int

    def __add__(self, other):  # statistics of disjoint frame sets add up
        return _Stats(self.nk + other.nk, self.sum_x + other.sum_x,
                      self.sum_xx + other.sum_xx, self.loglik + other.loglik,
                      self.n_samples + other.n_samples)


def _design_weights(weights, means, variances, center):
    """Weight matrix ``WT`` of shape (K, 2D + 2) for the design ``[x-c, (x-c)**2, 1, -h]``.

    ``WT @ Z.T`` gives ``log p(x, k) - h`` in one GEMM. Computed in float64.
    """
    weights = np.asarray(weights, dtype=np.float64)
    variances = np.asarray(variances, dtype=np.float64)
    mu = np.asarray(means, dtype=np.float64) - center
    k, d = mu.shape
    prec = 1.0 / variances
    wt = np.empty((k, 2 * d + 2))
    wt[:, :d] = mu * prec
    wt[:, d:2 * d] = -0.5 * prec
    wt[:, 2 * d] = (np.log(np.maximum(weights, np.finfo(np.float64).tiny))
                    - 0.5 * (d * _LOG_2PI + np.log(variances).sum(axis=1)
                             + (mu * mu * prec).sum(axis=1)))
    wt[:, 2 * d + 1] = 1.0
    return wt


class _Workspace:
    """Reused buffers for one block (one per thread).

    ``ZT`` (2D+2, B) is the design ``[x-c, (x-c)**2, 1, -h]`` stored transposed (the layout
    in which the E-step GEMM ``WT @ ZT`` runs fastest here); ``Xc`` (B, D) holds ``x - c``
    row-major, computed against the tiled centre ``C`` (B, D) so that the subtraction is one
    contiguous pass (NumPy is slow on short strided rows); ``E`` (K, B) holds the
    responsibilities; ``s`` (B,) their column sums.
    """

    def __init__(self, n_components, n_features, block_size, dtype, center=None):
        self.dtype = np.dtype(dtype)
        self.d = n_features
        self.k = n_components
        self.ZT = np.empty((2 * n_features + 2, block_size), dtype=self.dtype)
        self.ZT[2 * n_features] = 1.0
        self.ZT[2 * n_features + 1] = 0.0
        self.Xc = np.empty((block_size, n_features), dtype=self.dtype)
        self.C = np.empty((block_size, n_features), dtype=self.dtype)
        if center is not None:
            self.C[:] = center
        self.E = np.empty((n_components, block_size), dtype=self.dtype)
        self.s = np.empty(block_size, dtype=self.dtype)
        self.l = np.empty(block_size, dtype=self.dtype)
        self.G = np.empty((n_components, 2 * n_features + 2), dtype=self.dtype)
        self.GT = np.empty((2 * n_features + 2, n_components), dtype=self.dtype)
        self.floor = self.dtype.type(_EXP_FLOOR[self.dtype])
        # scratch of the numba kernels (float32 fit): column shift / zeros and exp bits
        self.m = np.empty(block_size, dtype=self.dtype)
        self.zero = np.zeros(block_size, dtype=self.dtype)
        self.ib = np.empty(block_size, dtype=np.int32)
        self.Z = np.empty((block_size, 2 * n_features + 2), dtype=self.dtype)
        #: M-step GEMM orientation: ``ZT @ E.T`` is about 2x faster than ``E @ ZT.T``
        #: for small K with this OpenBLAS (measured), equal at K=64, slower at K=256.
        self.swap = n_components <= _SWAP_GEMM_MAX_K
        #: (The numba path runs it as ``E @ Z`` on a row-major copy of the design instead:
        #: measured 1.2-1.4x faster than either for K >= 32, equal at K = 8 and 16.)


def _fill_design(Xb, ws, n):
    """Write ``x - c`` and ``(x - c)**2`` of the block's ``n`` frames into ``ws.ZT[:2D]``."""
    d = ws.d
    Xc = ws.Xc[:n]
    np.subtract(Xb, ws.C[:n], out=Xc, casting="same_kind")
    ZT = ws.ZT[:, :n]
    np.copyto(ZT[:d], Xc.T)
    np.square(ZT[:d], out=ZT[d:2 * d])
    return ZT


def _logsumexp_columns(E, floor):
    """In place: ``E <- exp(E - max)`` per column; returns (max, sum) per column."""
    m = E.max(axis=0)
    E -= m
    np.maximum(E, floor, out=E)
    np.exp(E, out=E)
    return m, E.sum(axis=0)


def _redo_out_of_window(WT, ZT, E, s, hint, floor):
    """Redo with exact maxima the frames whose shifted sum ``s`` left the safe window.

    Updates their columns of ``E`` and entries of ``s`` in place; returns the per-frame
    shift (``hint``, with the exact maxima for those frames).
    """
    p = WT.shape[1]
    idx = np.flatnonzero(~((s > _SUM_LOW) & (s < _SUM_HIGH)))
    Eb = WT[:, :p - 1] @ ZT[:p - 1, idx]
    mb, sb = _logsumexp_columns(Eb, floor)
    E[:, idx] = Eb
    s[idx] = sb
    shift = hint.copy()
    shift[idx] = mb
    return shift


def _e_step_block(Xb, WT, ws, hint, out):
    """Unnormalised responsibilities of one block, left in ``ws.E[:, :n]``.

    Parameters
    ----------
    Xb : ndarray of shape (n, D)
    WT : ndarray of shape (K, 2D + 2), in the compute dtype
    ws : _Workspace (its centre set)
    hint : ndarray of shape (n,) or None
        Expected per-frame log-likelihood (the shift); None for the exact per-frame max.
    out : ndarray of shape (n,)
        Receives the per-frame log-likelihood (compute dtype); may be ``hint`` itself.

    Returns
    -------
    s : ndarray of shape (n,)
        Column sums of ``E`` (``sum_k exp(log p(x, k) - shift)``), in the compute dtype
        (a view of ``ws.s``).
    """
    n = Xb.shape[0]
    k, p = WT.shape
    ZT = _fill_design(Xb, ws, n)
    E = ws.E[:, :n]
    s = ws.s[:n]
    if k > p:
        ZT[p - 2] = 1.0  # the row of ones, scaled by the previous block's M-step
    if hint is None:
        np.matmul(WT[:, :p - 1], ZT[:p - 1], out=E)
        shift, s[:] = _logsumexp_columns(E, ws.floor)
    else:
        np.negative(hint, out=ZT[p - 1])
        np.matmul(WT, ZT, out=E)
        np.maximum(E, ws.floor, out=E)
        np.exp(E, out=E)
        np.add.reduce(E, axis=0, out=s)
        shift = hint
        if not (s.min() > _SUM_LOW and s.max() < _SUM_HIGH):  # rare: redo those frames
            shift = _redo_out_of_window(WT, ZT, E, s, hint, ws.floor)
    np.add(np.log(s, out=ws.l[:n]), shift, out=out)
    return s


def _e_step_block_numba(nb, Xb, WT, ws, hint, out):
    """:func:`_e_step_block` plus the normalisation, by the numba kernels (float32 only).

    Same maths as the NumPy path; leaves the normalised responsibilities in ``ws.E``
    and the design also row-major in ``ws.Z`` (for the M-step GEMM ``E @ Z``).
    """
    n = Xb.shape[0]
    use = hint is not None
    nb.design(Xb, ws.C[0], hint if use else out, use, ws.ZT, ws.Z)
    E = ws.E[:, :n]
    ZT = ws.ZT[:, :n]
    np.matmul(WT, ZT, out=E)
    M = ws.E
    if not use:
        nb.resp_exact(ws.E, n, ws.floor, ws.m, ws.s, ws.ib, M, out)
    elif not nb.resp_hint(ws.E, n, ws.floor, ws.zero, hint, ws.s, ws.ib, _SUM_LOW32,
                          _SUM_HIGH32, M, out):  # rare: redo the out-of-window frames
        shift = _redo_out_of_window(WT, ZT, E, ws.s[:n], hint, ws.floor)
        nb.finish(M, n, ws.s, shift, out)


def _accumulate_range(X, WT, ws, a0, a1, block_size, hint, loglik_out, nb=None):
    """Statistics of frames ``a0:a1``: float64 (K, 2D+2) sums and the log-likelihood sum.

    ``nb``: the numba kernel module (float32 only) or None for the NumPy path.
    """
    k, p = WT.shape
    acc = np.zeros((k, p))
    if nb is not None and k <= _CHUNK_KERNEL_MAX_K:  # the whole range in one call, no GIL
        total = nb.accumulate_range(
            X, a0, a1, block_size, WT, ws.C[0], loglik_out if hint is None else hint,
            hint is not None, loglik_out, ws.ZT.reshape(-1), ws.Z.reshape(-1), ws.E.reshape(-1),
            ws.G, acc, ws.floor, ws.m, ws.s, ws.ib, ws.zero, _SUM_LOW32, _SUM_HIGH32)
        return acc, float(total)
    for a in range(a0, a1, block_size):
        b = min(a + block_size, a1)
        E = ws.E[:, :b - a]
        ZT = ws.ZT[:, :b - a]
        if nb is not None:  # numba kernels per block; the GEMMs in NumPy's BLAS
            _e_step_block_numba(nb, X[a:b], WT, ws, None if hint is None else hint[a:b],
                                loglik_out[a:b])
            np.matmul(E, ws.Z[:b - a], out=ws.G)
            acc += ws.G
            continue
        s = _e_step_block(X[a:b], WT, ws, None if hint is None else hint[a:b],
                          loglik_out[a:b])
        np.reciprocal(s, out=s)
        if k <= p:
            E *= s
        else:
            ZT *= s
        if ws.swap:
            np.matmul(ZT, E.T, out=ws.GT)
            acc += ws.GT.T
        else:
            np.matmul(E, ZT.T, out=ws.G)
            acc += ws.G
    return acc, float(loglik_out[a0:a1].sum(dtype=np.float64))


def _accumulate(X, WT, center, ws, *, block_size, hint=None, loglik_out=None, pool=None,
                nb=None):
    """Sum the sufficient statistics of all frames of ``X`` (one fused E-step pass).

    Parameters
    ----------
    X : ndarray of shape (N, D)
        Frames (any float dtype; cast block by block to the compute dtype).
    WT : ndarray of shape (K, 2D + 2)
        From :func:`_design_weights`, in the compute dtype.
    center : ndarray of shape (D,)
        Centre of the design, in the compute dtype.
    ws : _Workspace or list of _Workspace
        Reused block buffers (compute dtype = ``ws.dtype``); one per thread of ``pool``.
    block_size : int
        Frames per block.
    hint : ndarray of shape (N,) or None
        Per-frame shift (previous log-likelihoods); None computes exact maxima.
    loglik_out : ndarray of shape (N,) or None
        If given, receives every frame's log-likelihood (may be the same array as ``hint``).
    pool : concurrent.futures.ThreadPoolExecutor or None
        Threads over row chunks (one workspace each). The frames are always summed in the
        same fixed chunks of ``_CHUNK_BLOCKS`` blocks, in the same order, so the result does
        not depend on the number of threads (bit for bit).
    nb : module or None
        The numba kernels (:func:`_numba_kernels`; float32 compute, C-contiguous X only) or
        None for the NumPy path.

    Returns
    -------
    _Stats
        Float64 sums over all frames, about ``center``.
    """
    n, d = X.shape
    wss = ws if isinstance(ws, list) else [ws]
    for w in wss:
        w.C[:] = center
    if loglik_out is None:
        loglik_out = np.empty(n, dtype=wss[0].dtype)
    chunk = block_size * _CHUNK_BLOCKS
    starts = range(0, n, chunk)
    if pool is None or len(wss) == 1 or len(starts) == 1:
        parts = [_accumulate_range(X, WT, wss[0], a, min(a + chunk, n), block_size, hint,
                                   loglik_out, nb) for a in starts]
    else:
        free = queue.SimpleQueue()
        for w in wss:
            free.put(w)

        def job(a):
            w = free.get()
            try:
                return _accumulate_range(X, WT, w, a, min(a + chunk, n), block_size, hint,
                                         loglik_out, nb)
            finally:
                free.put(w)

        parts = list(pool.map(job, starts))
    acc = parts[0][0]
    total = parts[0][1]
    for part, t in parts[1:]:
        acc += part
        total += t
    return _Stats(acc[:, 2 * d].copy(), acc[:, :d].copy(), acc[:, d:2 * d].copy(), total, n)


def _update(stats, center, reg_covar):
    """M-step from summed statistics (float64), as scikit-learn's diagonal M-step.

    Returns
    -------
    weights : (K,), means : (K, D), variances : (K, D), raw_variances : (K, D)
        ``raw_variances`` are the variances before ``reg_covar`` is added.
    """
    nk = stats.nk + 10.0 * np.finfo(np.float64).eps
    mean_c = stats.sum_x / nk[:, None]
    raw = stats.sum_xx / nk[:, None] - mean_c * mean_c
    variances = np.maximum(np.maximum(raw, 0.0) + reg_covar, _MIN_VARIANCE)
    weights = nk / nk.sum()
    return weights, mean_c + center, variances, raw


def _log_prob_direct(X, weights, means, variances):
    """Reference-form ``log p(x, k)`` in float64, (n, K); used for rare fallback rows."""
    X = np.asarray(X, dtype=np.float64)
    q = ((X[:, None, :] - means[None]) ** 2 / variances[None]).sum(axis=2)
    return (np.log(np.maximum(weights, np.finfo(np.float64).tiny))
            - 0.5 * (means.shape[1] * _LOG_2PI + np.log(variances).sum(axis=1)) - 0.5 * q)


# --------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------


def _sq_dist(S, sq, C):
    d = sq[:, None] - 2.0 * (S @ C.T) + (C * C).sum(axis=1)[None, :]
    return np.maximum(d, 0.0, out=d)


def _kmeans_plusplus(S, n_clusters, rng):
    """Greedy k-means++ seeding (as scikit-learn's) on the float64 subsample ``S``."""
    n = S.shape[0]
    sq = np.einsum("ij,ij->i", S, S)
    n_trials = 2 + int(np.log(n_clusters))
    centers = np.empty((n_clusters, S.shape[1]))
    centers[0] = S[rng.integers(n)]
    closest = _sq_dist(S, sq, centers[:1])[:, 0]
    pot = closest.sum()
    for c in range(1, n_clusters):
        if not pot > 0:  # every frame sits on a centre already: pick uniformly
            cand = rng.integers(n, size=1)
        else:
            cand = np.searchsorted(np.cumsum(closest), rng.random(n_trials) * pot)
            np.minimum(cand, n - 1, out=cand)
        dist = _sq_dist(S[cand], sq[cand], S)  # (n_trials, n)
        np.minimum(dist, closest[None, :], out=dist)
        pots = dist.sum(axis=1)
        best = int(np.argmin(pots))
        closest, pot = dist[best], pots[best]
        centers[c] = S[cand[best]]
    return centers


def _hard_stats(S, labels, centers, gvar, reg_covar):
    """Weights, means and variances of a hard partition of ``S`` (empty clusters kept)."""
    k, d = centers.shape
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    means = centers.copy()
    variances = np.tile(gvar + reg_covar, (k, 1))
    for j in range(d):
        sums = np.bincount(labels, weights=S[:, j], minlength=k)
        ok = counts > 0
        means[ok, j] = sums[ok] / counts[ok]
    dev2 = (S - means[labels]) ** 2
    for j in range(d):
        ss = np.bincount(labels, weights=dev2[:, j], minlength=k)
        ok = counts >= 2
        variances[ok, j] = ss[ok] / counts[ok] + reg_covar
    weights = np.maximum(counts, 1.0)
    return weights / weights.sum(), means, np.maximum(variances, _MIN_VARIANCE)


def _initial_parameters(X, n_components, init_params, rng, reg_covar, gvar,
                        weights_init, means_init, variances_init):
    """Starting (weights, means, variances), float64. Given inits are used exactly."""
    if weights_init is not None and means_init is not None and variances_init is not None:
        return weights_init.copy(), means_init.copy(), variances_init.copy()
    n = X.shape[0]
    cap = max(_INIT_MAX_SAMPLES, _INIT_SAMPLES_PER_COMPONENT * n_components)
    if n > cap:
        idx = np.sort(rng.choice(n, size=cap, replace=False))
        S = np.asarray(X[idx], dtype=np.float64)
    else:
        S = np.asarray(X, dtype=np.float64)
    sq = np.einsum("ij,ij->i", S, S)
    if means_init is not None:
        centers = means_init.copy()
        labels = np.argmin(_sq_dist(S, sq, centers), axis=1)
        weights, means, variances = _hard_stats(S, labels, centers, gvar, reg_covar)
        means = centers
    elif init_params == "random":
        resp = rng.random((S.shape[0], n_components))
        resp /= resp.sum(axis=1, keepdims=True)
        nk = resp.sum(axis=0) + 10.0 * np.finfo(np.float64).eps
        means = (resp.T @ S) / nk[:, None]
        variances = (resp.T @ (S * S)) / nk[:, None] - means**2
        variances = np.maximum(np.maximum(variances, 0.0) + reg_covar, _MIN_VARIANCE)
        weights = nk / nk.sum()
    else:  # k-means++ seeding + a few Lloyd iterations on the subsample
        centers = _kmeans_plusplus(S, n_components, rng)
        labels = None
        for _ in range(_INIT_LLOYD_ITER):
            new = np.argmin(_sq_dist(S, sq, centers), axis=1)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            counts = np.bincount(labels, minlength=n_components)
            ok = counts > 0
            for j in range(S.shape[1]):
                sums = np.bincount(labels, weights=S[:, j], minlength=n_components)
                centers[ok, j] = sums[ok] / counts[ok]
        labels = np.argmin(_sq_dist(S, sq, centers), axis=1)
        weights, means, variances = _hard_stats(S, labels, centers, gvar, reg_covar)
    if weights_init is not None:
        weights = weights_init.copy()
    if variances_init is not None:
        variances = variances_init.copy()
    return weights, means, variances


# --------------------------------------------------------------------------------------
# Optional numba kernels
# --------------------------------------------------------------------------------------

_NUMBA = []


def _numba_kernels():
    """The numba kernel module :mod:`audiogmm._numba_em`, compiled, or None.

    Imported at the first float32 fit (not at ``import audiogmm.gmm``) and warmed up on tiny
    arrays, so that a missing numba or a failed compilation shows here, once, and the
    engine silently keeps the NumPy path. ``AUDIOGMM_NUMBA=0`` in the environment disables
    it. With ``cache=True`` the compiled kernels are stored next to the module, so only the
    first process pays the compilation (a few seconds).
    """
    if not _NUMBA:
        import os

        kernels = None
        if os.environ.get("AUDIOGMM_NUMBA", "1") != "0":
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from audiogmm import _numba_em as kernels

                    _warm_up(kernels)
            except Exception:  # numba missing, too old or failing to compile
                _LOGGER.debug("numba kernels unavailable; using the NumPy path", exc_info=True)
                kernels = None
        _NUMBA.append(kernels)
    return _NUMBA[0]


def _warm_up(nb):
    """Compile (or load from the cache) every kernel signature the engine uses."""
    f32 = np.dtype(np.float32)
    for xdtype in (np.float32, np.float64):  # the frames' dtype (cast inside the kernel)
        X = np.zeros((3, 2), dtype=xdtype)
        ws = _Workspace(2, 2, 4, f32, np.zeros(2, dtype=f32))
        out = np.zeros(3, dtype=f32)
        WT = np.zeros((2, 6), dtype=f32)
        _accumulate_range(X, WT, ws, 0, 3, 2, None, out, nb)  # exact maxima
        _accumulate_range(X, WT, ws, 0, 3, 2, out, out, nb)  # with the hint
        _accumulate_range(X, WT, ws, 0, 3, 2, out - 100.0, out, nb)  # out of window: redo
        ws = _Workspace(_CHUNK_KERNEL_MAX_K + 1, 2, 4, f32, np.zeros(2, dtype=f32))
        WT = np.zeros((_CHUNK_KERNEL_MAX_K + 1, 6), dtype=f32)
        _e_step_block_numba(nb, X, WT, ws, None, out)  # the per-block kernels (larger K)
        _e_step_block_numba(nb, X, WT, ws, out, out)
        _e_step_block_numba(nb, X, WT, ws, out - 100.0, out)


# --------------------------------------------------------------------------------------
# BLAS threads
# --------------------------------------------------------------------------------------

_CONTROLLER = []


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _single_blas_thread():
    """Context limiting BLAS to one thread (threadpoolctl, imported lazily), if available.

    On the 2-core target machine two BLAS threads make the small per-block GEMMs stall
    (PERFORMANCE.md); parallelise across models, files or processes instead.
    """
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
        except Exception:  # pragma: no cover - threadpoolctl missing or broken
            _CONTROLLER.append(None)
    controller = _CONTROLLER[0]
    if controller is None:  # pragma: no cover
        return _NullContext()
    return controller.limit(limits=1, user_api="blas")


# --------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------


class DiagonalGMM:
    """Gaussian mixture model with diagonal covariances, trained by EM (NumPy engine).

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components K.
    tol : float, default=1e-3
        EM stops when the mean log-likelihood per frame changes by less than ``tol``
        between two iterations (as scikit-learn).
    reg_covar : float, default=1e-6
        Added to every variance after each M-step (the variance floor).
    max_iter : int, default=100
        Maximum number of EM iterations per initialisation. 0 keeps the initial parameters.
    n_init : int, default=1
        Number of initialisations; the one with the best final lower bound is kept.
    init_params : {"k-means++", "random"}, default="k-means++"
        "k-means++": greedy k-means++ seeding then at most 10 Lloyd iterations on a random
        subsample of at most ``max(20000, 50 * n_components)`` frames; weights, means and
        variances of the resulting partition. "random": random responsibilities on the
        same subsample.
    weights_init : array-like of shape (K,), default=None
        Initial weights (non-negative, summing to 1).
    means_init : array-like of shape (K, D), default=None
        Initial means.
    variances_init : array-like of shape (K, D), default=None
        Initial variances (> 0). scikit-learn's ``precisions_init`` is ``1 / variances_init``.
        When all three ``*_init`` are given, EM starts from exactly those parameters.
    random_state : None, int, numpy.random.Generator or RandomState, default=None
        Seed for the initialisation and :meth:`sample`.
    dtype : {"float32", "float64"}, default="float32"
        Compute precision of the E-step GEMMs and exponentials. Statistics and
        log-likelihood sums are always accumulated in float64.
    block_size : int or None, default=None
        Frames processed per block (memory O(block_size x K)). None: 1024, fewer for
        K > 256 (measured fastest; see ``DEFAULT_BLOCK_SIZE``).
    n_jobs : int or None, default=None
        Threads over row blocks during ``fit``, each with one BLAS thread. None means 1;
        negative values count back from the number of CPUs as in joblib (-1: all). The
        statistics are summed in fixed chunks, so the result is bit-identical for any value.
        Worth it for one large fit (a UBM: two threads cut the wall time of an EM iteration
        by about a third on 2 cores, see ``bench/gmm.py``); :class:`GMMClassifier` already
        trains its classes in parallel instead.
    verbose : int or callable, default=0
        0: silent. 1: log each initialisation's result, 2: log every iteration (to the
        ``audiogmm.gmm`` logger; this module never prints). A callable is called after
        every iteration as ``verbose(init=..., n_iter=..., lower_bound=..., change=...)``.

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
    means_ : ndarray of shape (K, D)
    variances_ : ndarray of shape (K, D)
        All float64.
    converged_ : bool
    n_iter_ : int
        EM iterations of the selected initialisation.
    lower_bound_ : float
        Mean log-likelihood per frame from the last E-step (see the module docstring).
    lower_bounds_ : list of float
        The lower bound after every iteration of the selected initialisation.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from audiogmm.gmm import DiagonalGMM
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (500, 2)), rng.normal(3, 1, (500, 2))])
    >>> gmm = DiagonalGMM(n_components=2, random_state=0).fit(X)
    >>> np.sort(gmm.means_[:, 0]).round(0)
    array([-3.,  3.])
    >>> gmm.score_samples(X[:3]).shape
    (3,)
    """

    def __init__(self, n_components=1, *, tol=1e-3, reg_covar=1e-6, max_iter=100, n_init=1,
                 init_params="k-means++", weights_init=None, means_init=None,
                 variances_init=None, random_state=None, dtype="float32",
                 block_size=None, n_jobs=None, verbose=0):
        self.n_components = n_components
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.variances_init = variances_init
        self.random_state = random_state
        self.dtype = dtype
        self.block_size = block_size
        self.n_jobs = n_jobs
        self.verbose = verbose

    # -- scikit-learn protocol (without importing scikit-learn) ------------------------

    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep=True):
        """Parameters of this estimator, as a dict (scikit-learn protocol).

        Parameters
        ----------
        deep : bool, default=True
            Ignored (no sub-estimators).

        Returns
        -------
        params : dict
        """
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set parameters (scikit-learn protocol); validated at ``fit``.

        Returns
        -------
        self : DiagonalGMM
        """
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ParameterError(f"Invalid parameter {name!r} for estimator DiagonalGMM; "
                                     f"valid parameters are {valid}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__)
                    .parameters.values() if p.name != "self"}
        parts = []
        for name in self._get_param_names():
            value = getattr(self, name, None)
            default = defaults.get(name)
            if isinstance(value, np.ndarray) or value is not default and value != default:
                text = "array(...)" if isinstance(value, np.ndarray) else repr(value)
                parts.append(f"{name}={text}")
        return f"DiagonalGMM({', '.join(parts)})"

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(estimator_type="density_estimator", target_tags=TargetTags(required=False),
                    input_tags=InputTags(allow_nan=False))

    def __sklearn_is_fitted__(self):
        return all(hasattr(self, a) for a in ("weights_", "means_", "variances_"))

    # -- validation ---------------------------------------------------------------------

    def _validated_params(self):
        p = {}
        p["n_components"] = _check_int("n_components", self.n_components, 1)
        p["tol"] = _check_real("tol", self.tol)
        p["reg_covar"] = _check_real("reg_covar", self.reg_covar)
        p["max_iter"] = _check_int("max_iter", self.max_iter, 0)
        p["n_init"] = _check_int("n_init", self.n_init, 1)
        if self.init_params not in _INIT_PARAMS:
            raise ParameterError(f"init_params must be one of {_INIT_PARAMS}, "
                                 f"got {self.init_params!r}")
        p["dtype"] = _check_dtype(self.dtype)
        if self.block_size is None:
            p["block_size"] = _auto_block_size(p["n_components"])
        else:
            p["block_size"] = _check_int("block_size", self.block_size, 1)
        p["n_jobs"] = _n_threads(self.n_jobs)
        if not (callable(self.verbose) or (_is_int(self.verbose) and self.verbose >= 0)):
            raise ParameterError(f"verbose must be an int >= 0 or a callable, "
                                 f"got {self.verbose!r}")
        p["rng"] = _check_random_state(self.random_state)
        return p

    def _validated_inits(self, k, d):
        """The ``*_init`` arrays as float64, checked against (K, D)."""
        out = []
        for name, shape in (("weights_init", (k,)), ("means_init", (k, d)),
                            ("variances_init", (k, d))):
            value = getattr(self, name)
            if value is None:
                out.append(None)
                continue
            arr = np.array(value, dtype=np.float64)
            if arr.shape != shape:
                raise ParameterError(f"{name} must have shape {shape} (n_components, "
                                     f"n_features), got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ParameterError(f"{name} contains NaN or inf; pass finite values")
            if name == "weights_init":
                if np.any(arr < 0) or abs(arr.sum() - 1.0) > 1e-6:
                    raise ParameterError(f"weights_init must be non-negative and sum to 1, "
                                         f"got sum {arr.sum():.6g}; normalise it")
            if name == "variances_init" and np.any(arr <= 0):
                raise ParameterError("variances_init must be > 0 everywhere; got "
                                     f"min {arr.min():.3g} (precisions_init = 1/variances)")
            out.append(arr)
        return out

    def _check_is_fitted(self):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError("This DiagonalGMM instance is not fitted yet; call fit(X) "
                                 "or set weights_, means_ and variances_ first")

    def _fitted_arrays(self):
        self._check_is_fitted()
        w = np.asarray(self.weights_, dtype=np.float64)
        mu = np.asarray(self.means_, dtype=np.float64)
        var = np.asarray(self.variances_, dtype=np.float64)
        if mu.ndim != 2 or var.shape != mu.shape or w.shape != mu.shape[:1]:
            raise ParameterError(f"inconsistent fitted shapes: weights_ {w.shape}, means_ "
                                 f"{mu.shape}, variances_ {var.shape}; expected (K,), (K, D), "
                                 f"(K, D)")
        return w, mu, var

    def _n_features(self, means):
        return int(getattr(self, "n_features_in_", means.shape[1]))

    # -- fit ----------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Estimate the parameters with EM (``n_init`` initialisations, best kept).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Frames. float32 input is not copied.
        y : ignored

        Returns
        -------
        self : DiagonalGMM

        Raises
        ------
        ParameterError
            Invalid parameters, X not 2-D / not finite, or ``n_samples < n_components``
            (a ValueError, as in scikit-learn: use fewer components or more frames).

        Warns
        -----
        ConvergenceWarning
            EM did not converge within ``max_iter``, or components were re-seeded or
            collapsed onto duplicated frames.
        """
        params = self._validated_params()
        X = _check_X(X)
        n, d = X.shape
        k = params["n_components"]
        if n < k:
            raise ParameterError(f"X has n_samples={n} frames but n_components={k}; use "
                                 f"n_components <= {n} or give more frames")
        inits = self._validated_inits(k, d)
        with _single_blas_thread():
            result = self._fit(X, params, inits)
        (self.weights_, self.means_, self.variances_, self.converged_, self.n_iter_,
         self.lower_bound_, self.lower_bounds_) = result
        self.n_features_in_ = d
        return self

    def _fit(self, X, params, inits):
        n, d = X.shape
        k, rng, bs = params["n_components"], params["rng"], params["block_size"]
        dtype = params["dtype"]
        bs = min(bs, n)
        center64, gvar, max_dev = _column_moments(X, bs)
        if dtype == np.float32 and max_dev > 1e15:  # squares would overflow float32
            dtype = np.dtype(np.float64)
        deterministic = inits[1] is not None
        n_init = 1 if deterministic else params["n_init"]
        best = None
        for init in range(n_init):
            w, mu, var = _initial_parameters(X, k, self.init_params, rng, params["reg_covar"],
                                             gvar, *inits)
            run = self._em(X, w, mu, var, params, dtype, center64, gvar, init, bs)
            if best is None or run["lower_bound"] > best["lower_bound"]:
                best = run
            if self.verbose and not callable(self.verbose):
                _LOGGER.info("init %d: lower bound %.6f after %d iterations (converged=%s)",
                             init, run["lower_bound"], run["n_iter"], run["converged"])
        self._warn(best, params)
        return (best["weights"], best["means"], best["variances"], best["converged"],
                best["n_iter"], float(best["lower_bound"]), best["history"])

    def _em(self, X, w, mu, var, params, dtype, center64, gvar, init, bs):
        n, d = X.shape
        k = w.shape[0]
        # Row-block threads (each with one BLAS thread; the numba kernels release the GIL).
        threads = params["n_jobs"]
        pool = None
        if threads > 1 and n > bs * _CHUNK_BLOCKS:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(threads)
            ws = [_Workspace(k, d, bs, dtype) for _ in range(threads)]
        else:
            ws = _Workspace(k, d, bs, dtype)
        try:
            return self._em_loop(X, w, mu, var, params, dtype, center64, gvar, init, bs, ws, pool)
        finally:
            if pool is not None:
                pool.shutdown()

    def _em_loop(self, X, w, mu, var, params, dtype, center64, gvar, init, bs, ws, pool):
        n, d = X.shape
        k = w.shape[0]
        reg, tol = params["reg_covar"], params["tol"]
        center = center64.astype(dtype)
        c64 = center.astype(np.float64)  # the centre actually used
        hint = np.empty(n, dtype=dtype)
        have_hint = False
        history, events = [], []
        lower_bound, converged, n_iter = -np.inf, False, 0
        reseed_rounds, quiet_until = 0, 0
        floor = reg + _FLOOR_RELATIVE * gvar
        raw = None
        nk = None
        # numba kernels for the non-GEMM passes (float32, C-contiguous frames), else NumPy
        nb = None
        if dtype == np.float32 and X.flags.c_contiguous and getattr(self, "_use_numba", True):
            nb = _numba_kernels()
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            if params["max_iter"] == 0:
                WT = _design_weights(w, mu, var, c64).astype(dtype)
                stats = _accumulate(X, WT, center, ws, block_size=bs, pool=pool, nb=nb)
                lower_bound = stats.loglik / n
            for n_iter in range(1, params["max_iter"] + 1):
                WT = _design_weights(w, mu, var, c64).astype(dtype)
                stats = _accumulate(X, WT, center, ws, block_size=bs, pool=pool,
                                    hint=hint if have_hint else None, loglik_out=hint, nb=nb)
                if not math.isfinite(stats.loglik) and dtype == np.float32:
                    # float32 overflow (e.g. reg_covar=0 on wide data): redo in float64
                    nb = None
                    dtype = np.dtype(np.float64)
                    ws = [_Workspace(k, d, bs, dtype) for _ in range(len(ws))] if \
                        isinstance(ws, list) else _Workspace(k, d, bs, dtype)
                    center = center64.copy()
                    c64 = center64
                    hint = hint.astype(np.float64)
                    WT = _design_weights(w, mu, var, c64)
                    stats = _accumulate(X, WT, center, ws, block_size=bs, loglik_out=hint,
                                        pool=pool)
                have_hint = True
                prev, lower_bound = lower_bound, stats.loglik / n
                history.append(lower_bound)
                w, mu, var, raw = _update(stats, c64, reg)
                nk = stats.nk
                change = lower_bound - prev
                reseeded = False
                if reseed_rounds < _MAX_RESEED_ROUNDS:
                    bad = (nk < _EMPTY_COUNT) | ((nk < 2) & np.all(raw <= floor, axis=1))
                    if bad.any() and bad.sum() < k:
                        self._reseed(X, w, mu, var, bad, hint, gvar, reg)
                        events.append((n_iter, np.flatnonzero(bad).tolist(), nk[bad].tolist()))
                        reseed_rounds += 1
                        reseeded = True
                        quiet_until = n_iter + 1
                if callable(self.verbose):
                    self.verbose(init=init, n_iter=n_iter, lower_bound=lower_bound,
                                 change=change)
                elif self.verbose and self.verbose >= 2:
                    _LOGGER.info("init %d iteration %d: lower bound %.6f (change %.3g)",
                                 init, n_iter, lower_bound, change)
                if abs(change) < tol and not reseeded and n_iter > quiet_until:
                    converged = True
                    break
        collapsed = []
        if raw is not None:
            collapsed = np.flatnonzero((nk >= 2) & np.all(raw <= floor, axis=1)).tolist()
        return {"weights": w, "means": mu, "variances": var, "converged": converged,
                "n_iter": n_iter, "lower_bound": lower_bound, "history": history,
                "events": events, "collapsed": collapsed, "change": change if history else 0}

    @staticmethod
    def _reseed(X, w, mu, var, bad, loglik, gvar, reg):
        """Move the ``bad`` components onto the worst-explained frames (in place)."""
        idx = np.flatnonzero(bad)
        good = ~bad
        m = idx.size
        worst = np.argpartition(loglik, m - 1)[:m] if m < loglik.size else np.arange(m)
        mu[idx] = np.asarray(X[worst], dtype=np.float64)
        typical = (w[good, None] * var[good]).sum(axis=0) / w[good].sum()
        var[idx] = np.maximum(typical, gvar + reg)
        w[idx] = 1.0 / w.size
        w /= w.sum()

    def _warn(self, best, params):
        if best["events"]:
            desc = "; ".join(f"iteration {it}: component(s) {comps} (N_k={[f'{c:.3g}' for c in nks]})"
                             for it, comps, nks in best["events"][:5])
            warnings.warn(
                f"{len(best['events'])} EM iteration(s) re-seeded components that lost all "
                f"responsibility or collapsed on a single frame ({desc}); the lower bound may "
                f"drop right after a re-seed. Consider fewer n_components or more frames.",
                ConvergenceWarning, stacklevel=3)
        if best["collapsed"]:
            warnings.warn(
                f"component(s) {best['collapsed']} collapsed onto duplicated frames (all "
                f"variances at the reg_covar floor {params['reg_covar']:g}); remove duplicate "
                f"frames (e.g. digital silence), increase reg_covar or use fewer n_components.",
                ConvergenceWarning, stacklevel=3)
        if not best["converged"] and params["max_iter"] > 0:
            warnings.warn(
                f"EM did not converge within max_iter={params['max_iter']} iterations (last "
                f"change of the mean log-likelihood {best['change']:.3g} >= tol="
                f"{params['tol']:g}); increase max_iter or tol.", ConvergenceWarning,
                stacklevel=3)

    # -- scoring ------------------------------------------------------------------------

    def _compute_dtype(self):
        try:
            return _check_dtype(self.dtype)
        except ParameterError:
            return np.dtype(np.float64)

    def _block_size(self):
        bs = self.block_size
        if _is_int(bs) and bs >= 1:
            return int(bs)
        k = np.shape(getattr(self, "weights_", ()))[0] if hasattr(self, "weights_") else 1
        return _auto_block_size(k)

    def score_samples(self, X):
        """Log-likelihood of every frame.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,), float64
        """
        return score_samples_many([self], X)[:, 0]

    def score(self, X, y=None):
        """Mean log-likelihood per frame of ``X`` (float)."""
        return float(self.score_samples(X).mean())

    def _log_resp_blocks(self, X):
        """Yield (a, b, log p(x, k) as (n, K) float64) over row blocks."""
        w, mu, var = self._fitted_arrays()
        X = _check_X(X, n_features=self._n_features(mu))
        if not np.all(np.isfinite(X)):
            raise _not_finite_error(X)
        dtype = self._compute_dtype()
        center = (w @ mu).astype(dtype)
        WT = _design_weights(w, mu, var, center.astype(np.float64)).astype(dtype)
        bs = min(self._block_size(), X.shape[0])
        ws = _Workspace(w.size, mu.shape[1], bs, dtype, center)
        p = WT.shape[1]
        with _single_blas_thread(), np.errstate(over="ignore", under="ignore"):
            for a in range(0, X.shape[0], bs):
                b = min(a + bs, X.shape[0])
                ZT = _fill_design(X[a:b], ws, b - a)
                L = (WT[:, :p - 1] @ ZT[:p - 1]).T.astype(np.float64)
                bad = ~np.all(np.isfinite(L), axis=1)
                if bad.any():
                    L[bad] = _log_prob_direct(X[a:b][bad], w, mu, var)
                yield a, b, L

    def predict_proba(self, X):
        """Posterior probability of each component for every frame.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components), float64, rows summing to 1
        """
        out = None
        for a, b, L in self._log_resp_blocks(X):
            if out is None:
                out = np.empty((np.shape(X)[0], L.shape[1]))
            L -= L.max(axis=1, keepdims=True)
            np.exp(L, out=L)
            L /= L.sum(axis=1, keepdims=True)
            out[a:b] = L
        return out

    def predict(self, X):
        """Most probable component of every frame.

        Returns
        -------
        labels : ndarray of shape (n_samples,), int
        """
        out = None
        for a, b, L in self._log_resp_blocks(X):
            if out is None:
                out = np.empty(np.shape(X)[0], dtype=np.intp)
            out[a:b] = L.argmax(axis=1)
        return out

    def _n_parameters(self):
        _, mu, _ = self._fitted_arrays()
        k, d = mu.shape
        return int(2 * k * d + k - 1)

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better), as scikit-learn.

        ``-2 * score(X) * n_samples + n_parameters * log(n_samples)`` with
        ``n_parameters = 2 K D + K - 1``.
        """
        X = _check_X(X)
        return float(-2.0 * self.score(X) * X.shape[0] + self._n_parameters() * np.log(X.shape[0]))

    def aic(self, X):
        """Akaike information criterion on ``X``: ``-2 * score(X) * n + 2 * n_parameters``."""
        X = _check_X(X)
        return float(-2.0 * self.score(X) * X.shape[0] + 2 * self._n_parameters())

    def sample(self, n_samples=1):
        """Draw frames from the fitted mixture (as scikit-learn).

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features), float64
            Grouped by component.
        labels : ndarray of shape (n_samples,), int
            The component of each frame.
        """
        w, mu, var = self._fitted_arrays()
        n_samples = _check_int("n_samples", n_samples, 1)
        rng = _check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, w / w.sum())
        X = np.vstack([m + np.sqrt(v) * rng.standard_normal((c, mu.shape[1]))
                       for m, v, c in zip(mu, var, counts)])
        labels = np.repeat(np.arange(w.size), counts)
        return X, labels


# --------------------------------------------------------------------------------------
# Module functions
# --------------------------------------------------------------------------------------


def score_samples_many(gmms, X, *, block_size=None):
    """Per-frame log-likelihood of ``X`` under every model, in one blocked pass.

    All models' components are stacked into one GEMM per block (the classifier's hot path).
    Computed in float32 unless some model has ``dtype="float64"``.

    Parameters
    ----------
    gmms : sequence of fitted DiagonalGMM
        All must share ``n_features_in_``.
    X : array-like of shape (n_samples, n_features)
    block_size : int, default=None
        Frames per block; None uses the first model's ``block_size`` if it is an int, else
        the automatic size for all the models' components stacked.

    Returns
    -------
    log_prob : ndarray of shape (n_samples, len(gmms)), float64

    Examples
    --------
    >>> import numpy as np
    >>> from audiogmm.gmm import DiagonalGMM, score_samples_many
    >>> rng = np.random.default_rng(0)
    >>> a = DiagonalGMM(2, random_state=0).fit(rng.normal(0, 1, (200, 3)))
    >>> b = DiagonalGMM(2, random_state=0).fit(rng.normal(5, 1, (200, 3)))
    >>> score_samples_many([a, b], rng.normal(5, 1, (4, 3))).argmax(axis=1)
    array([1, 1, 1, 1])
    """
    gmms = list(gmms)
    if not gmms:
        raise ParameterError("gmms must contain at least one fitted DiagonalGMM, got none")
    params = [g._fitted_arrays() for g in gmms]
    nfeat = {g._n_features(p[1]) for g, p in zip(gmms, params)}
    if len(nfeat) != 1:
        raise ParameterError(f"all models must share n_features_in_, got {sorted(nfeat)}; "
                             f"train them on the same features")
    d = nfeat.pop()
    if block_size is None:
        bs0 = gmms[0].block_size
        block_size = bs0 if _is_int(bs0) and bs0 >= 1 else _auto_block_size(
            sum(p[0].size for p in params))
    block_size = _check_int("block_size", block_size, 1)
    X = _check_X(X, n_features=d, estimator=type(gmms[0]).__name__)
    if not np.all(np.isfinite(X)):
        raise _not_finite_error(X)
    dtype = max((g._compute_dtype() for g in gmms), key=lambda t: t.itemsize)
    center64 = np.mean([w @ mu for w, mu, _ in params], axis=0)
    center = center64.astype(dtype)
    c64 = center.astype(np.float64)
    WT = np.vstack([_design_weights(w, mu, var, c64)[:, :2 * d + 1] for w, mu, var in params])
    WT = WT.astype(dtype)
    ks = [p[0].size for p in params]
    bounds = np.concatenate([[0], np.cumsum(ks)])
    same_k = len(set(ks)) == 1
    n = X.shape[0]
    bs = min(block_size, n)
    ws = _Workspace(int(bounds[-1]), d, bs, dtype, center)
    out = np.empty((n, len(gmms)))
    with _single_blas_thread(), np.errstate(over="ignore", under="ignore", divide="ignore"):
        for a in range(0, n, bs):
            b = min(a + bs, n)
            ZT = _fill_design(X[a:b], ws, b - a)
            E = ws.E[:, :b - a]
            np.matmul(WT, ZT[:2 * d + 1], out=E)
            if same_k:
                E3 = E.reshape(len(gmms), ks[0], b - a)
                m = E3.max(axis=1)
                E3 -= m[:, None, :]
                np.maximum(E3, ws.floor, out=E3)
                np.exp(E3, out=E3)
                out[a:b] = (m + np.log(E3.sum(axis=1), dtype=np.float64)).T
            else:
                for j in range(len(gmms)):
                    m, s = _logsumexp_columns(E[bounds[j]:bounds[j + 1]], ws.floor)
                    out[a:b, j] = m + np.log(s, dtype=np.float64)
        bad = ~np.isfinite(out)
        if bad.any():  # float overflow on absurdly far frames: exact float64 fallback
            rows = np.flatnonzero(bad.any(axis=1))
            for j, (w, mu, var) in enumerate(params):
                out[rows, j] = logsumexp(_log_prob_direct(X[rows], w, mu, var), axis=1)
    return out


def select_n_components(X, candidates=(1, 2, 4, 8, 16, 32, 64), *, criterion="bic",
                        random_state=None, **gmm_params):
    """Fit one DiagonalGMM per candidate K and keep the one with the lowest BIC (or AIC).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    candidates : sequence of int, default=(1, 2, 4, 8, 16, 32, 64)
        Numbers of components to try; those larger than ``n_samples`` are skipped.
    criterion : {"bic", "aic"}, default="bic"
    random_state : None, int, Generator or RandomState, default=None
        Passed to every candidate model.
    **gmm_params
        Other :class:`DiagonalGMM` parameters (e.g. ``max_iter``, ``dtype``).

    Returns
    -------
    best_gmm : DiagonalGMM
        The fitted model with the lowest criterion.
    values : dict of {int: float}
        The criterion of every fitted candidate.

    Examples
    --------
    >>> import numpy as np
    >>> from audiogmm.gmm import select_n_components
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(m, 0.5, (300, 2)) for m in (-5, 0, 5)])
    >>> best, values = select_n_components(X, (1, 2, 3, 4), random_state=0)
    >>> best.n_components
    3
    """
    if criterion not in ("bic", "aic"):
        raise ParameterError(f"criterion must be 'bic' or 'aic', got {criterion!r}")
    try:
        cands = [int(c) for c in candidates]
    except (TypeError, ValueError):
        raise ParameterError(f"candidates must be a sequence of ints >= 1, got {candidates!r}")
    if not cands or any(not _is_int(c) or c < 1 for c in candidates):
        raise ParameterError(f"candidates must be a non-empty sequence of ints >= 1, "
                             f"got {candidates!r}")
    for name in ("n_components",):
        if name in gmm_params:
            raise ParameterError(f"{name} is chosen from candidates; do not pass it")
    valid = set(DiagonalGMM._get_param_names())
    unknown = sorted(set(gmm_params) - valid)
    if unknown:
        raise ParameterError(f"unknown DiagonalGMM parameter(s) {unknown}; valid are "
                             f"{sorted(valid)}")
    X = _check_X(X)
    usable = sorted({c for c in cands if c <= X.shape[0]})
    if not usable:
        raise ParameterError(f"every candidate exceeds n_samples={X.shape[0]}; pass smaller "
                             f"candidates or more frames")
    values, best, best_value = {}, None, np.inf
    for k in usable:
        gmm = DiagonalGMM(n_components=k, random_state=random_state, **gmm_params)
        gmm._validated_params()  # before any work
    for k in usable:
        gmm = DiagonalGMM(n_components=k, random_state=random_state, **gmm_params).fit(X)
        value = gmm.bic(X) if criterion == "bic" else gmm.aic(X)
        values[k] = value
        if value < best_value:
            best, best_value = gmm, value
    return best, values
