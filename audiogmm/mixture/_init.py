"""Initialisation on a sample of the frames: k-means++ (as scikit-learn's) or random."""

from __future__ import annotations

import numpy as np

from ._stats import _MIN_VARIANCE

#: k-means++ initialisation works on a random subsample of at most
#: ``max(_INIT_MAX_SAMPLES, _INIT_SAMPLES_PER_COMPONENT * n_components)`` frames ...
_INIT_MAX_SAMPLES = 20_000
_INIT_SAMPLES_PER_COMPONENT = 50
#: ... followed by at most this many Lloyd iterations.
_INIT_LLOYD_ITER = 10
INIT_PARAMS = ("k-means++", "random")


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


def initial_parameters(source, n_components, init_params, rng, reg_covar, gvar,
                       weights_init, means_init, variances_init):
    """Starting (weights, means, variances), float64. Given inits are used exactly.

    Works on a random sample of at most ``max(_INIT_MAX_SAMPLES, _INIT_SAMPLES_PER_COMPONENT
    * n_components)`` frames of ``source`` (a frame source, :mod:`._source`), fetched with
    ``source.take(sorted_indices)``: the frames are never materialised whole.
    """
    if weights_init is not None and means_init is not None and variances_init is not None:
        return weights_init.copy(), means_init.copy(), variances_init.copy()
    n = source.n_frames
    cap = max(_INIT_MAX_SAMPLES, _INIT_SAMPLES_PER_COMPONENT * n_components)
    if n > cap:
        idx = np.sort(rng.choice(n, size=cap, replace=False))
        S = np.asarray(source.take(idx), dtype=np.float64)
    else:
        S = np.asarray(source.read(0, n), dtype=np.float64)
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

