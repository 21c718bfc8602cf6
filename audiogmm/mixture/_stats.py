"""Sufficient statistics: the design, the block E-step, accumulate and update.

The pure maths of EM (see :mod:`audiogmm.mixture` for the equations): :func:`accumulate_range`
turns a range of frames into float64 sums (:class:`SuffStats`, which add up and fold in a
fixed order) and :func:`update` turns summed statistics into parameters. The same two
functions serve in-memory, out-of-core and distributed training (:mod:`._em` drives them).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import warnings
from typing import NamedTuple

import numpy as np

_LOGGER = logging.getLogger("audiogmm.mixture")
_LOG_2PI = math.log(2.0 * math.pi)

#: Default number of frames per block (``block_size=None``). Measured on the target machine
#: (bench/gmm.py, D=40): 1024 rows beat 512, 2048, 4096 and 8192 for K = 8, 64 and 256 --
#: the block's design (2D+2 rows), centred frames and responsibilities (K rows) then stay
#: in the 2 MiB L2 cache, and the M-step GEMM ``E @ Z`` at K=8 is 2-3x slower from 2048
#: rows on. Beyond K=256 the block shrinks to keep E (K x B float32) near 1 MiB.
DEFAULT_BLOCK_SIZE = 1024


def auto_block_size(n_components):
    """Frames per block for ``block_size=None``: 1024, or fewer for K > 256 (min 256)."""
    return int(max(256, min(DEFAULT_BLOCK_SIZE, (1 << 18) // max(n_components, 1))))
#: Variances never go below this (matters only with reg_covar=0).
_MIN_VARIANCE = 1e-12
#: Safe window for the per-frame shifted sum of exponentials during fit.
_SUM_LOW, _SUM_HIGH = 1e-10, 1e10
_SUM_LOW32, _SUM_HIGH32 = np.float32(_SUM_LOW), np.float32(_SUM_HIGH)
#: Exponents are clipped below at this value before exp (no subnormals).
_EXP_FLOOR = {np.dtype(np.float32): -60.0, np.dtype(np.float64): -600.0}
#: The M-step GEMM runs as ``ZT @ E.T`` (instead of ``E @ ZT.T``) up to this K.
_SWAP_GEMM_MAX_K = 64
#: Up to this many components the numba path runs a whole chunk of blocks in one call of
#: ``_kernels.accumulate_range`` (its GEMMs through numba's ``np.dot``, i.e. SciPy's
#: OpenBLAS); above it, one call per kernel with NumPy's ``matmul`` in between. Measured here
#: (1 BLAS thread): numba's ``np.dot`` is about as fast as NumPy's at K=8 (23 vs 26 us per
#: block GEMM) but 15-19 % slower at K=64 (190 vs 160 us), which made the single-thread
#: iteration 8 % slower at K=64 (alternating processes: 0.559 vs 0.518, 0.435 vs 0.396 s)
#: while the GIL-free chunk made K=8 15-20 % faster (0.13-0.15 vs 0.16-0.17 s).
_CHUNK_KERNEL_MAX_K = 16

#: Statistics are summed per chunk of this many blocks, then over chunks in order (the unit
#: of work of the row-block threads; fixed so results do not depend on the thread count).
CHUNK_BLOCKS = 16


# --------------------------------------------------------------------------------------
# The pure maths: design matrix, block E-step, accumulate, update
# --------------------------------------------------------------------------------------


class SuffStats(NamedTuple):
    """Sufficient statistics summed over frames, about a centre ``c`` (the currency of EM).

    Statistics of disjoint frame sets add up (``a + b``); :meth:`fold` sums a sequence in
    the order given, which is how the engine keeps results bit-identical for any number of
    threads, processes or machines (float addition is not associative: the order is fixed).

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
        return SuffStats(self.nk + other.nk, self.sum_x + other.sum_x,
                         self.sum_xx + other.sum_xx, self.loglik + other.loglik,
                         self.n_samples + other.n_samples)

    @staticmethod
    def fold(parts):
        """``((parts[0] + parts[1]) + parts[2]) + ...``: the sum in exactly this order."""
        parts = list(parts)
        if not parts:
            raise ValueError("SuffStats.fold needs at least one part")
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    @classmethod
    def from_sums(cls, acc, loglik, n_samples):
        """From the (K, 2D+2) float64 block sums ``[sum_x | sum_xx | nk | -]`` of the design."""
        d = (acc.shape[1] - 2) // 2
        return cls(acc[:, 2 * d].copy(), acc[:, :d].copy(), acc[:, d:2 * d].copy(),
                   float(loglik), int(n_samples))


def design_weights(weights, means, variances, center):
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


class Workspace:
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


def fill_design(Xb, ws, n):
    """Write ``x - c`` and ``(x - c)**2`` of the block's ``n`` frames into ``ws.ZT[:2D]``."""
    d = ws.d
    Xc = ws.Xc[:n]
    np.subtract(Xb, ws.C[:n], out=Xc, casting="same_kind")
    ZT = ws.ZT[:, :n]
    np.copyto(ZT[:d], Xc.T)
    np.square(ZT[:d], out=ZT[d:2 * d])
    return ZT


def logsumexp_columns(E, floor):
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
    mb, sb = logsumexp_columns(Eb, floor)
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
    ws : Workspace (its centre set)
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
    ZT = fill_design(Xb, ws, n)
    E = ws.E[:, :n]
    s = ws.s[:n]
    if k > p:
        ZT[p - 2] = 1.0  # the row of ones, scaled by the previous block's M-step
    if hint is None:
        np.matmul(WT[:, :p - 1], ZT[:p - 1], out=E)
        shift, s[:] = logsumexp_columns(E, ws.floor)
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


def accumulate_range(X, WT, ws, a0, a1, block_size, hint, loglik_out, nb=None):
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


def accumulate(X, WT, center, ws, *, block_size, hint=None, loglik_out=None, nb=None):
    """Sum the sufficient statistics of all frames of ``X`` in memory (one fused pass).

    The chunks of ``CHUNK_BLOCKS`` blocks are summed in order, as the EM driver's canonical
    fold does for fewer frames than one partition (:mod:`audiogmm.mixture._em` runs the
    same per-chunk function over a frame source with an executor).

    Parameters
    ----------
    X : ndarray of shape (N, D)
        Frames (any float dtype; cast block by block to the compute dtype).
    WT : ndarray of shape (K, 2D + 2)
        From :func:`design_weights`, in the compute dtype.
    center : ndarray of shape (D,)
        Centre of the design, in the compute dtype.
    ws : Workspace
        Reused block buffers (compute dtype = ``ws.dtype``).
    block_size : int
        Frames per block.
    hint : ndarray of shape (N,) or None
        Per-frame shift (previous log-likelihoods); None computes exact maxima.
    loglik_out : ndarray of shape (N,) or None
        If given, receives every frame's log-likelihood (may be the same array as ``hint``).
    nb : module or None
        The numba kernels (:func:`numba_kernels`; float32 compute, C-contiguous X only) or
        None for the NumPy path.

    Returns
    -------
    SuffStats
        Float64 sums over all frames, about ``center``.
    """
    n = X.shape[0]
    ws.C[:] = center
    if loglik_out is None:
        loglik_out = np.empty(n, dtype=ws.dtype)
    chunk = block_size * CHUNK_BLOCKS
    parts = []
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        acc, total = accumulate_range(X, WT, ws, a, b, block_size, hint, loglik_out, nb)
        parts.append(SuffStats.from_sums(acc, total, b - a))
    return SuffStats.fold(parts)


def update(stats, center, reg_covar):
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


def log_prob_direct(X, weights, means, variances):
    """Reference-form ``log p(x, k)`` in float64, (n, K); used for rare fallback rows."""
    X = np.asarray(X, dtype=np.float64)
    q = ((X[:, None, :] - means[None]) ** 2 / variances[None]).sum(axis=2)
    return (np.log(np.maximum(weights, np.finfo(np.float64).tiny))
            - 0.5 * (means.shape[1] * _LOG_2PI + np.log(variances).sum(axis=1)) - 0.5 * q)



# --------------------------------------------------------------------------------------
# Optional numba kernels
# --------------------------------------------------------------------------------------

_NUMBA = []


_NUMBA_LOCK = threading.Lock()


def numba_kernels():
    """The numba kernel module :mod:`audiogmm.mixture._kernels`, compiled, or None.

    Imported at the first float32 fit (not at ``import audiogmm.mixture``) and warmed up on tiny
    arrays, so that a missing numba or a failed compilation shows here, once, and the
    engine silently keeps the NumPy path. ``AUDIOGMM_NUMBA=0`` in the environment disables
    it. With ``cache=True`` the compiled kernels are stored next to the module, so only the
    first process pays the compilation (a few seconds).
    """
    if _NUMBA:
        return _NUMBA[0]
    # One thread loads: warnings.catch_warnings is not thread-safe (two threads entering and
    # leaving it at once left 'ignore' in the global filters, silencing every later warning).
    with _NUMBA_LOCK:
        if _NUMBA:
            return _NUMBA[0]
        kernels = None
        if os.environ.get("AUDIOGMM_NUMBA", "1") != "0":
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from audiogmm.mixture import _kernels as kernels

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
        ws = Workspace(2, 2, 4, f32, np.zeros(2, dtype=f32))
        out = np.zeros(3, dtype=f32)
        WT = np.zeros((2, 6), dtype=f32)
        accumulate_range(X, WT, ws, 0, 3, 2, None, out, nb)  # exact maxima
        accumulate_range(X, WT, ws, 0, 3, 2, out, out, nb)  # with the hint
        accumulate_range(X, WT, ws, 0, 3, 2, out - 100.0, out, nb)  # out of window: redo
        ws = Workspace(_CHUNK_KERNEL_MAX_K + 1, 2, 4, f32, np.zeros(2, dtype=f32))
        WT = np.zeros((_CHUNK_KERNEL_MAX_K + 1, 6), dtype=f32)
        _e_step_block_numba(nb, X, WT, ws, None, out)  # the per-block kernels (larger K)
        _e_step_block_numba(nb, X, WT, ws, out, out)
        _e_step_block_numba(nb, X, WT, ws, out - 100.0, out)



# --------------------------------------------------------------------------------------
# BLAS threads
# --------------------------------------------------------------------------------------

_CONTROLLER = []


def single_blas_thread():
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
        import contextlib

        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")

