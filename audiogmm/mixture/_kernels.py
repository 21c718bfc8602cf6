"""Numba kernels for the float32 EM block pass of :mod:`audiogmm.mixture` (optional).

This module imports numba at its top, so it is itself the lazy part: the loader
:func:`audiogmm.mixture._stats.numba_kernels` imports it at the first float32 fit and warms
it up; when numba is missing or a kernel fails to compile, the engine uses its NumPy path
instead (same maths, same block layout). ``cache=True`` keeps the compiled kernels in
numba's on-disk cache next to this file.

:func:`accumulate_range` runs the whole block pass over a range of frames in one call (the GEMMs in BLAS through numba's ``np.dot``), using per block:

- :func:`design` writes the design ``[x - c, (x - c)**2, 1, -h]`` both row-major (``Z``,
  for the M-step GEMM ``E @ Z``) and transposed (``ZT``, for the E-step GEMM ``WT @ ZT``),
  with the same float32 values as the NumPy path;
- :func:`resp_hint` takes the E-step GEMM output ``E = log p(x, k) - h`` (K, B) and clips,
  exponentiates, sums per frame, checks the safe window and, if every frame is inside it,
  writes ``log p(x) = log(sum) + h`` and scales ``E`` by ``1 / sum``;
- :func:`resp_exact` does the same with the exact per-frame maximum as the shift (first EM
  iteration); :func:`finish` is the last step alone (after the rare out-of-window redo).

``exp`` is a Cephes-style float32 polynomial (relative error below 2e-7, arguments clipped
to [floor, 88] so that neither subnormals nor overflow occur) that LLVM vectorises, unlike
the scalar libm call numba would emit. fastmath is limited to ``contract``, ``nsz`` and
``arcp``: NaN and inf keep their IEEE meaning, so a NaN or an argument above 88 gives a sum
outside the safe window and takes the caller's exact fallback, as in the NumPy path.
"""

import numpy as np
from numba import njit

_FM = {"contract", "nsz", "arcp"}

_LOG2E = np.float32(1.4426950408889634)
_C1 = np.float32(0.693359375)
_C2 = np.float32(-2.12194440e-4)
_HI = np.float32(88.0)
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)


@njit(nogil=True, cache=True, fastmath=_FM)
def design(Xb, c, hint, use_hint, ZT, Z):
    """Fill ``Z[:n]`` = ``[x - c, (x - c)**2, 1, -hint (or 0)]`` and its transpose ``ZT``.

    ``ZT`` (2D+2, B) feeds the E-step GEMM ``WT @ ZT``, ``Z`` (B, 2D+2) the M-step GEMM
    ``E @ Z`` (the fastest orientations here). ``Xb`` may be float32 or float64 (the
    subtraction is done in its precision, then rounded, as NumPy's ``subtract``).
    """
    n, d = Xb.shape
    for i in range(n):
        for j in range(d):
            Z[i, j] = Xb[i, j] - c[j]
        for j in range(d):
            v = Z[i, j]
            Z[i, d + j] = v * v
        Z[i, 2 * d] = 1.0
        Z[i, 2 * d + 1] = -hint[i] if use_hint else 0.0
    for j in range(d):
        for i in range(n):
            ZT[j, i] = Z[i, j]
    for j in range(d):
        for i in range(n):
            v = ZT[j, i]
            ZT[d + j, i] = v * v
    for i in range(n):
        ZT[2 * d, i] = 1.0
    if use_hint:
        for i in range(n):
            ZT[2 * d + 1, i] = -hint[i]
    else:
        for i in range(n):
            ZT[2 * d + 1, i] = 0.0


@njit(nogil=True, cache=True, fastmath=_FM)
def _exp_sum(E, n, sub, floor, s, ib):
    """``E[:, :n] <- exp(clip(E - sub, floor, 88))`` column-wise shift; ``s`` = column sums."""
    k = E.shape[0]
    fb = ib.view(np.float32)
    one = np.float32(1.0)
    half = np.float32(0.5)
    for i in range(n):
        s[i] = 0.0
    for r in range(k):
        row = E[r]
        for i in range(n):
            x = row[i] - sub[i]
            x = floor if x < floor else x  # NaN stays NaN here ...
            x = x if x < _HI else _HI      # ... and becomes 88: a sum far outside the window
            fx = np.floor(x * _LOG2E + half)
            x = x - fx * _C1 - fx * _C2
            z = x * x
            row[i] = (((((_P0 * x + _P1) * x + _P2) * x + _P3) * x + _P4) * x + _P5) * z + x + one
            ib[i] = (np.int32(fx) + np.int32(127)) << np.int32(23)
        for i in range(n):
            e = row[i] * fb[i]
            row[i] = e
            s[i] += e


@njit(nogil=True, cache=True, fastmath=_FM)
def finish(M, n, s, shift, out):
    """``out = log(s) + shift``; ``s <- 1/s``; ``M[:, :n] *= s`` (the normalisation)."""
    one = np.float32(1.0)
    for i in range(n):
        out[i] = np.log(s[i]) + shift[i]
        s[i] = one / s[i]
    for r in range(M.shape[0]):
        row = M[r]
        for i in range(n):
            row[i] *= s[i]


@njit(nogil=True, cache=True, fastmath=_FM)
def resp_hint(E, n, floor, zero, hint, s, ib, lo, hi, M, out):
    """``E = log p(x, k) - hint``: exponentiate and sum; if every sum is in ``(lo, hi)``,
    normalise (``finish``) and return True; else return False with ``E``/``s`` unnormalised.
    ``zero`` is an array of zeros (the column shift)."""
    _exp_sum(E, n, zero, floor, s, ib)
    for i in range(n):
        if not (s[i] > lo and s[i] < hi):
            return False
    finish(M, n, s, hint, out)
    return True


@njit(nogil=True, cache=True, fastmath=_FM)
def resp_exact(E, n, floor, m, s, ib, M, out):
    """``E = log p(x, k)``: shift by the exact per-frame maximum ``m``, exp, normalise."""
    k = E.shape[0]
    for i in range(n):
        m[i] = E[0, i]
    for r in range(1, k):
        row = E[r]
        for i in range(n):
            x = row[i]
            if x > m[i] or x != x:  # NaN propagates, as numpy's max
                m[i] = x
    _exp_sum(E, n, m, floor, s, ib)
    finish(M, n, s, m, out)


@njit(nogil=True, cache=True, fastmath=_FM)
def accumulate_range(X, a0, a1, block, WT, c, hint, use_hint, out, ZTbuf, Zbuf, Ebuf, G, acc,
                     floor, m, s, ib, zero, lo, hi):
    """The whole fused block pass over frames ``a0:a1``, in one call (no GIL, no Python).

    Per block of ``block`` frames: :func:`design`, the E-step GEMM ``E = WT @ ZT``,
    :func:`resp_hint` (or :func:`resp_exact` without a hint, and for a whole block again
    when a frame's shifted sum leaves the window ``(lo, hi)``), the M-step GEMM
    ``G = E @ Z`` (BLAS, through numba's ``np.dot``) and ``acc += G`` in float64. The
    block buffers are flat and viewed C-contiguous at the block's length. Writes every
    frame's log-likelihood into ``out`` and returns their float64 sum.
    """
    k, p = WT.shape
    total = 0.0
    for a in range(a0, a1, block):
        b = min(a + block, a1)
        n = b - a
        ZT = ZTbuf[:p * n].reshape((p, n))
        Z = Zbuf[:n * p].reshape((n, p))
        E = Ebuf[:k * n].reshape((k, n))
        h = hint[a:b]
        o = out[a:b]
        design(X[a:b], c, h if use_hint else o, use_hint, ZT, Z)
        np.dot(WT, ZT, E)
        if not use_hint:
            resp_exact(E, n, floor, m, s, ib, E, o)
        elif not resp_hint(E, n, floor, zero, h, s, ib, lo, hi, E, o):
            # rare (a frame far from its previous log-likelihood): redo the block exactly
            for i in range(n):
                ZT[p - 1, i] = 0.0
            np.dot(WT, ZT, E)
            resp_exact(E, n, floor, m, s, ib, E, o)
        np.dot(E, Z, G)
        for r in range(k):
            for j in range(p):
                acc[r, j] += G[r, j]
        for i in range(n):
            total += o[i]
    return total
