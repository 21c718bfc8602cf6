"""MAP adaptation of a diagonal GMM from sufficient statistics (Reynolds et al. 2000).

:func:`map_statistics` computes the zeroth-, first- and second-order statistics of frames
against a GMM with the engine's own accumulate (the same E-step as EM: float32 compute by
default, float64 sums, any frame source, any executor); :func:`map_adapt` turns them into
the adapted parameters.
"""

from __future__ import annotations

import math

import numpy as np

from audiogmm._validation import check_float_dtype, check_int, check_n_jobs, check_real
from audiogmm.exceptions import ParameterError

from ._em import SerialExecutor, ThreadExecutor, _ScratchFrameState, accumulate_source
from ._source import as_source
from ._stats import auto_block_size, design_weights, numba_kernels, single_blas_thread

__all__ = ["map_statistics", "map_adapt", "check_adapt", "ADAPT_PARTS"]

#: The parameters MAP adaptation may update (``adapt`` is a comma-separated subset).
ADAPT_PARTS = ("means", "weights", "variances")


def map_statistics(X, weights, means, variances, *, dtype="float32", block_size=None,
                   n_jobs=None, executor=None):
    """Zeroth-, first- and second-order statistics of frames against a diagonal GMM.

    Computed by the EM engine's accumulate (exact per-frame maxima, the GEMMs and ``exp``
    in ``dtype``, every sum in float64) over row chunks folded in the engine's fixed order,
    so the result does not depend on ``n_jobs`` or the executor.

    Parameters
    ----------
    X : array-like of shape (n_frames, n_features), or a frame source
    weights : array-like of shape (K,)
    means, variances : array-like of shape (K, n_features)
    dtype : {"float32", "float64"}, default="float32"
        Compute precision of the E-step (as ``DiagonalGMM``; float32 falls back to
        float64 if it overflows).
    block_size : int or None, default=None
        Frames per block; None: the engine's automatic size for K components.
    n_jobs : int or None, default=None
        Threads over row chunks (the package's rule: None is 1, negative counts from the
        CPU count). Ignored when ``executor`` is given.
    executor : object with ``map(fn, list_of_args)``, default=None
        Runs the accumulation tasks (see :class:`~audiogmm.mixture.ThreadExecutor`).

    Returns
    -------
    n : ndarray of shape (K,)
        ``sum_t gamma_tk``, the soft count of frames of each component.
    F : ndarray of shape (K, n_features)
        ``sum_t gamma_tk x_t`` (uncentred).
    S : ndarray of shape (K, n_features)
        ``sum_t gamma_tk x_t ** 2`` (uncentred).
    loglik : float
        ``sum_t log p(x_t)`` under the GMM.

    Examples
    --------
    >>> import numpy as np
    >>> n, F, S, _ = map_statistics(np.array([[1.0], [3.0]]), [1.0], [[0.0]], [[1.0]])
    >>> n.tolist(), F.tolist(), S.tolist()
    ([2.0], [[4.0]], [[10.0]])
    """
    w, mu, var = _check_gmm_arrays(weights, means, variances)
    dtype = check_float_dtype(dtype)
    k, d = mu.shape
    bs = auto_block_size(k) if block_size is None else check_int("block_size", block_size, 1)
    threads = check_n_jobs(n_jobs)
    source = as_source(X)
    if source.n_features != d:
        raise ParameterError(f"X must have shape (n_frames, {d}), got "
                             f"({source.n_frames}, {source.n_features})")
    bs = min(bs, source.n_frames)
    own = None
    if executor is None:
        executor = own = ThreadExecutor(threads) if threads > 1 else SerialExecutor()
    try:
        with single_blas_thread(), np.errstate(over="ignore", under="ignore",
                                               divide="ignore", invalid="ignore"):
            for compute in ((dtype, np.dtype(np.float64)) if dtype == np.float32 else (dtype,)):
                center = (w @ mu).astype(compute)
                c64 = center.astype(np.float64)
                WT = design_weights(w, mu, var, c64).astype(compute)
                state = _ScratchFrameState()
                state.prepare(source.n_frames, compute)
                use_numba = (compute == np.float32 and getattr(source, "c_contiguous", True)
                             and numba_kernels() is not None)
                stats = accumulate_source(source, WT, center, block_size=bs,
                                             executor=executor, state=state, generation=1,
                                             use_hint=False, use_numba=use_numba)
                if math.isfinite(stats.loglik):
                    break
    finally:
        if isinstance(own, ThreadExecutor):
            own.shutdown()
    n = stats.nk
    # uncentre: sum r (x - c) + n c and sum r (x - c)^2 + 2 c sum r (x - c) + n c^2
    F = stats.sum_x + n[:, None] * c64
    S = stats.sum_xx + 2.0 * c64 * stats.sum_x + n[:, None] * (c64 * c64)
    return n, F, S, float(stats.loglik)


def map_adapt(weights, means, variances, n, F, S=None, *, relevance_factor=16.0, adapt="means",
              var_floor=1e-6):
    """MAP-adapt a diagonal GMM to data summarised by its statistics (Reynolds et al. 2000).

    Parameters
    ----------
    weights : array-like of shape (K,)
    means, variances : array-like of shape (K, D)
        The prior model (the UBM).
    n, F, S : array-like of shapes (K,), (K, D), (K, D)
        Statistics from :func:`map_statistics` (uncentred). ``S`` is needed only to adapt variances.
    relevance_factor : float > 0, default=16
        ``r`` in ``alpha_k = n_k / (n_k + r)``: how many frames a component must see before
        its data outweigh the prior.
    adapt : str, default="means"
        Comma-separated subset of ``"means"``, ``"weights"``, ``"variances"``.
    var_floor : float, default=1e-6
        Adapted variances never go below this.

    Returns
    -------
    weights, means, variances : ndarrays of shapes (K,), (K, D), (K, D), float64
        Parameters not adapted are returned as (copies of) the prior's.

    Examples
    --------
    One component, prior mean 0 and variance 1; 4 frames with mean 2, relevance factor 16:
    ``alpha = 4 / 20 = 0.2`` and the mean moves to ``0.2 * 2 = 0.4``.

    >>> w, mu, var = map_adapt([1.0], [[0.0]], [[1.0]], [4.0], [[8.0]], relevance_factor=16)
    >>> float(mu[0, 0])
    0.4
    """
    w, mu, var = _check_gmm_arrays(weights, means, variances)
    parts = check_adapt(adapt)
    r = check_real("relevance_factor", relevance_factor, 0.0, include_minimum=False)
    n = np.asarray(n, dtype=np.float64)
    F = np.asarray(F, dtype=np.float64)
    if n.shape != w.shape or F.shape != mu.shape:
        raise ParameterError(f"n and F must have shapes {w.shape} and {mu.shape}, got {n.shape} and {F.shape}")
    if "variances" in parts:
        if S is None:
            raise ParameterError("S (second-order statistics) is required to adapt variances")
        S = np.asarray(S, dtype=np.float64)
        if S.shape != mu.shape:
            raise ParameterError(f"S must have shape {mu.shape}, got {S.shape}")
    alpha = n / (n + r)
    safe_n = np.where(n > 0, n, 1.0)[:, None]
    Ex = F / safe_n  # only used where alpha > 0, i.e. n > 0
    new_mu = alpha[:, None] * Ex + (1.0 - alpha[:, None]) * mu if "means" in parts else mu.copy()
    new_w = w.copy()
    if "weights" in parts:
        total = n.sum()
        new_w = alpha * (n / total if total > 0 else 0.0) + (1.0 - alpha) * w
        new_w /= new_w.sum()
    new_var = var.copy()
    if "variances" in parts:
        Exx = S / safe_n
        a = alpha[:, None]
        new_var = a * Exx + (1.0 - a) * (var + mu * mu) - new_mu * new_mu
        new_var = np.maximum(new_var, var_floor)
    return new_w, new_mu, new_var


def _check_gmm_arrays(weights, means, variances):
    w = np.asarray(weights, dtype=np.float64)
    mu = np.asarray(means, dtype=np.float64)
    var = np.asarray(variances, dtype=np.float64)
    if mu.ndim != 2 or var.shape != mu.shape or w.shape != mu.shape[:1]:
        raise ParameterError(f"weights, means and variances must have shapes (K,), (K, D), (K, D), "
                             f"got {w.shape}, {mu.shape}, {var.shape}")
    if np.any(var <= 0):
        raise ParameterError("variances must all be > 0")
    return w, mu, var


def check_adapt(adapt):
    if not isinstance(adapt, str):
        raise ParameterError(f"adapt must be a comma-separated subset of {', '.join(ADAPT_PARTS)}, got {adapt!r}")
    parts = [p.strip() for p in adapt.split(",") if p.strip()]
    bad = [p for p in parts if p not in ADAPT_PARTS]
    if not parts or bad:
        raise ParameterError(
            f"adapt must be a comma-separated subset of {', '.join(ADAPT_PARTS)} (e.g. 'means' or "
            f"'means,variances'), got {adapt!r}"
        )
    return frozenset(parts)
