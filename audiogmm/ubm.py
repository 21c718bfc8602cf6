r"""GMM-UBM: one universal background model, class models by MAP adaptation, LLR scoring.

The recipe of Reynolds, Quatieri and Dunn, "Speaker verification using adapted Gaussian
mixture models", *Digital Signal Processing* 10 (2000) 19-41:

1. **UBM.** One :class:`~audiogmm.mixture.DiagonalGMM` with ``n_components`` components is
   trained by EM on the pooled frames of every class, *balanced across classes*: each class
   contributes the same number of frames (a random subset of a large class, whole copies
   plus a random subset of a small one; at most ``ubm_max_frames`` in all), so the UBM
   is not the model of whichever class has the most audio.
2. **MAP adaptation.** For class :math:`c` the Baum-Welch statistics of its frames
   against the UBM are accumulated by the EM engine's own statistics
   (:func:`audiogmm.mixture.map_statistics`: float32 E-step, float64 sums),

   .. math::

       n_k = \sum_t \gamma_{tk}, \quad F_k = \sum_t \gamma_{tk} x_t, \quad
       S_k = \sum_t \gamma_{tk} x_t^2, \qquad
       \gamma_{tk} = P(k \mid x_t, \mathrm{UBM}),

   and each component moves towards its data by the data-dependent factor
   :math:`\alpha_k = n_k / (n_k + r)` (``relevance_factor`` :math:`r`, default 16;
   :func:`map_adapt`):

   .. math::

       \hat\mu_k &= \alpha_k F_k / n_k + (1 - \alpha_k)\,\mu_k \\
       \hat w_k &\propto \alpha_k n_k / T + (1 - \alpha_k)\, w_k \\
       \hat\sigma^2_k &= \alpha_k S_k / n_k + (1 - \alpha_k)(\sigma^2_k + \mu_k^2)
                        - \hat\mu_k^2 .

   Only the means are adapted by default (``adapt="means"``), as Reynolds et al.
   recommend; ``"means,weights"``, ``"means,variances"``, ``"means,weights,variances"``
   (any non-empty subset) are accepted. A component that sees no data of the class keeps
   the UBM's parameters, so a class model is defined everywhere the UBM is.
3. **Scoring.** A recording's score for class :math:`c` is the mean over its frames of
   the log-likelihood ratio :math:`\log p(x_t \mid c) - \log p(x_t \mid \mathrm{UBM})`.
   With **top-C scoring** (``top_c``, default 5) the UBM log-likelihood uses all its
   components, and the class log-likelihood only the ``top_c`` components that score
   highest under the UBM for that frame (the others contribute almost nothing because
   an adapted component stays close to its UBM component). Scoring then costs one
   UBM pass plus ``top_c`` components per class instead of ``n_components``; ``top_c=None``
   (or ``>= n_components``) scores every component exactly.

Since every class score has the same UBM term, the label and the probabilities
(``softmax(score + log prior)``) are the same as those from the class models'
mean log-likelihoods; only the scores themselves are shifted (LLRs near 0 mean "no
evidence either way", which makes them comparable across recordings: what the EER
and DET curves of :mod:`audiogmm.pipeline` need).

Far from the data every term is computed in float64 in log space with a per-frame
shift, so a frame millions of standard deviations away scores a very negative but finite
log-likelihood and a finite LLR, never NaN.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._validation import check_real
from .classifier import (BaseGMMClassifier, class_source, em_progress, end_em_progress, fitted_gmm, mean_score,
                         scratch_frame_state)
from .exceptions import ParameterError, TrainingError
from .mixture import ConcatSource, DiagonalGMM, IndexedSource, map_adapt, map_statistics
from .mixture.map import ADAPT_PARTS, check_adapt

__all__ = ["UBMClassifier", "map_statistics", "map_adapt", "balanced_frames", "balanced_indices", "ADAPT_PARTS"]

_LOG_2PI = math.log(2.0 * math.pi)
#: Frames per block while scoring and accumulating statistics.
_BLOCK = 1024


# --------------------------------------------------------------------------------------
# Pure functions: the mathematics, testable by hand
# --------------------------------------------------------------------------------------


def _log_joint(X, weights, means, variances):
    """``log w_k + log N(x_t | mu_k, var_k)`` for every frame and component, (n, K) float64."""
    X = np.asarray(X, dtype=np.float64)
    prec = 1.0 / variances
    const = np.log(np.maximum(weights, np.finfo(np.float64).tiny)) - 0.5 * (
        means.shape[1] * _LOG_2PI + np.log(variances).sum(axis=1) + (means * means * prec).sum(axis=1))
    # Dot-product form: x.(mu/var) - 0.5 x^2.(1/var) + const, two GEMMs (float64: no cancellation
    # worth speaking of for normalised features; far frames give large negative, finite values).
    L = X @ (means * prec).T
    L -= 0.5 * (X * X) @ prec.T
    L += const
    return L


def balanced_frames(frames, max_frames=None, random_state=None):
    """Pool per-class frame matrices so that every class contributes as many frames.

    Parameters
    ----------
    frames : sequence of ndarray of shape (n_c, D)
        One matrix per class.
    max_frames : int or None, default=None
        At most this many frames in all (``max_frames // n_classes`` per class); None: each
        class contributes as many frames as the largest class has.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    X : ndarray of shape (n_classes * n_target, D)
        A class with more frames than the target gives a random subset (without
        replacement); a smaller one gives whole copies of itself plus a random subset
        (the rows :func:`balanced_indices` picks).
    """
    idx = balanced_indices([f.shape[0] for f in frames], max_frames, random_state)
    return np.concatenate(frames)[idx]


def balanced_indices(sizes, max_frames=None, random_state=None):
    """The rows of the balanced pool, as indices into the classes' frames stacked in order.

    Parameters
    ----------
    sizes : sequence of int
        Frames of each class.
    max_frames, random_state
        As :func:`balanced_frames` (the same random draws, in the same order).

    Returns
    -------
    indices : ndarray of int64, shape (n_classes * n_target,)
        Class by class; within a class ascending (whole copies first for a small class).

    Examples
    --------
    >>> balanced_indices([3, 1], random_state=0).tolist()
    [0, 1, 2, 3, 3, 3]
    """
    rng = np.random.default_rng(random_state)
    sizes = [int(m) for m in sizes]
    target = max(sizes)
    if max_frames is not None:
        target = max(1, min(target, int(max_frames) // len(sizes)))
    parts, offset = [], 0
    for m in sizes:
        if m >= target:
            idx = np.sort(rng.choice(m, size=target, replace=False)) if m > target else np.arange(m)
        else:
            reps, rest = divmod(target, m)
            idx = np.concatenate([np.tile(np.arange(m), reps), np.sort(rng.choice(m, size=rest, replace=False))])
        parts.append(idx.astype(np.int64) + offset)
        offset += m
    return np.concatenate(parts)


def _logsumexp_rows(a):
    """``log(sum(exp(a), axis=1))`` of a 2-D array, shifted by each row's max.

    scipy's ``logsumexp`` does the same with more care (and checks) at about ten times the
    cost on the small (frames, top-C) blocks scored here once per class; the results agree to
    about 1e-13 relative. A row of ``-inf`` gives ``-inf``.
    """
    m = a.max(axis=1)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):  # log(0) = -inf for a row of -inf, as scipy gives
        return m + np.log(np.exp(a - m[:, None]).sum(axis=1))


def _frame_llr(Xb, ubm, models, top_c):
    """Per-frame LLR of every class, (n, n_classes) float64.

    ``ubm`` is ``(w, mu, var)``; ``models`` is ``(log_const, means, precisions)`` stacked over
    classes with shapes (C, K), (C, K, D), (C, K, D) (precisions may be (1, K, D) when shared).
    """
    Xb = np.asarray(Xb, dtype=np.float64)
    L = _log_joint(Xb, *ubm)
    ubm_ll = _logsumexp_rows(L)
    log_const, means, prec = models
    n_classes, k = log_const.shape
    n = Xb.shape[0]
    out = np.empty((n, n_classes))
    if top_c is None or top_c >= k:  # exact: every component of every class, by GEMM
        for c in range(n_classes):
            p = prec[0 if prec.shape[0] == 1 else c]
            lj = Xb @ (means[c] * p).T
            lj -= 0.5 * (Xb * Xb) @ p.T
            lj += log_const[c] - 0.5 * (means[c] * means[c] * p).sum(axis=1)
            out[:, c] = _logsumexp_rows(lj)
        out -= ubm_ll[:, None]
        return out
    idx = np.argpartition(L, k - top_c, axis=1)[:, k - top_c:]
    shared_prec = prec.shape[0] == 1
    if shared_prec:
        P = prec[0][idx]  # (n, C, D)
    for c in range(n_classes):
        diff = Xb[:, None, :] - means[c][idx]
        diff *= diff
        q = np.einsum("ncd,ncd->nc", diff, P if shared_prec else prec[c][idx])
        lj = log_const[c][idx] - 0.5 * q
        out[:, c] = _logsumexp_rows(lj)
    out -= ubm_ll[:, None]
    return out


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def _seed(random_state):
    if random_state is None or isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) and random_state >= 0:
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    raise ParameterError(f"random_state must be None, an int >= 0 or a numpy Generator, got {random_state!r}")


# --------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------


class UBMClassifier(BaseGMMClassifier):
    """Classify recordings with a universal background model and MAP-adapted class models.

    Same interface as :class:`~audiogmm.classifier.GMMClassifier` (``fit``,
    ``score_recordings``, ``decision_function``, ``predict``, ``predict_proba``); see the
    module docstring for the method.

    Parameters
    ----------
    n_components : int, default=64
        Components of the UBM (and so of every class model).
    relevance_factor : float, default=16.0
        MAP relevance factor ``r``: ``alpha_k = n_k / (n_k + r)``.
    adapt : str, default="means"
        Which parameters MAP adapts: a comma-separated subset of ``means``, ``weights``,
        ``variances``.
    top_c : int or None, default=5
        Class log-likelihoods use only the ``top_c`` best UBM components of each frame
        (None: all, exact).
    ubm_max_frames : int or None, default=300000
        Most frames (balanced across classes) the UBM is trained on.
    tol, reg_covar, max_iter, n_init, init_params, dtype
        Passed to the UBM's :class:`~audiogmm.mixture.DiagonalGMM`.
    priors : None, "uniform", "empirical" or array-like of shape (n_classes,), default=None
        As :class:`~audiogmm.classifier.GMMClassifier`.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds the frame balancing and the UBM's initialisation.
    n_jobs : int or None, default=None
        Threads for the UBM's EM (row blocks, see :class:`~audiogmm.mixture.DiagonalGMM`; the
        result does not depend on it). The MAP adaptation runs in this thread.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    ubm_ : DiagonalGMM
        The universal background model.
    gmms_ : list of DiagonalGMM
        The adapted model of each class, in the order of ``classes_``.
    class_prior_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    n_recordings_, n_frames_ : ndarray of shape (n_classes,)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(0, 1, (200, 3)), rng.normal(3, 1, (200, 3)), rng.normal(0, 1, (150, 3))]
    >>> clf = UBMClassifier(n_components=4, random_state=0).fit(X, ["a", "b", "a"])
    >>> clf.predict([rng.normal(3, 1, (20, 3))]).tolist()
    ['b']
    """

    method = "ubm"
    _param_names = (
        "n_components", "relevance_factor", "adapt", "top_c", "ubm_max_frames", "tol", "reg_covar",
        "max_iter", "n_init", "init_params", "dtype", "priors", "random_state", "n_jobs",
    )

    def __init__(self, n_components=64, *, relevance_factor=16.0, adapt="means", top_c=5,
                 ubm_max_frames=300_000, tol=1e-3, reg_covar=1e-3, max_iter=100, n_init=1,
                 init_params="k-means++", dtype="float32", priors=None, random_state=None, n_jobs=None):
        self.n_components = n_components
        self.relevance_factor = relevance_factor
        self.adapt = adapt
        self.top_c = top_c
        self.ubm_max_frames = ubm_max_frames
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.dtype = dtype
        self.priors = priors
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- validation ----------------------------------------------------------------------
    def validate_params(self):
        k = self.n_components
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ParameterError(f"n_components must be an int >= 1, got {k!r}")
        check_real("relevance_factor", self.relevance_factor, 0.0, include_minimum=False)
        check_adapt(self.adapt)
        c = self.top_c
        if c is not None and (not isinstance(c, numbers.Integral) or isinstance(c, bool) or c < 1):
            raise ParameterError(f"top_c must be None or an int >= 1, got {c!r}")
        m = self.ubm_max_frames
        if m is not None and (not isinstance(m, numbers.Integral) or isinstance(m, bool) or m < 1):
            raise ParameterError(f"ubm_max_frames must be None or an int >= 1, got {m!r}")
        self._validate_common()
        DiagonalGMM(**self._gmm_params())._validated_params()

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X, y, *, progress=None, executor=None, scratch_dir=None):
        """Train the UBM on the balanced pooled frames, then MAP-adapt one model per class.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_frames_i, n_features), or ndarray (n_samples, n_features)
            Items may also be frame sources (e.g. :class:`~audiogmm.mixture.ConcatSource`
            of store loaders): nothing is then held in memory but chunks (out of core).
        y : array-like of shape (n_recordings,)
        progress : callable(stage, done, total), optional
            Called after every EM iteration of the UBM as ``progress("EM UBM", n_iter, max_iter)``
            (``(stage, n_iter_, n_iter_)`` when it ends) and after each class's MAP
            adaptation as ``progress("training", n_done, n_classes)``. The model does not depend on it.
        executor : object with ``map(fn, list_of_args)``, optional
            Runs the EM tasks of the UBM's fit and of every class's MAP statistics (e.g.
            ``audiogmm._dask.DaskExecutor(client)`` for a Dask cluster); see
            :meth:`audiogmm.mixture.DiagonalGMM.fit`. The model does not depend on it.
        scratch_dir : str or path-like, optional
            A folder for the UBM fit's per-frame state (a
            :class:`~audiogmm.mixture.FileFrameState`, removed afterwards) instead of RAM.

        Returns
        -------
        self : UBMClassifier

        Raises
        ------
        ParameterError
            Bad parameters, mismatched lengths, non-finite or inconsistent features.
        TrainingError
            Fewer pooled frames than ``n_components``.
        """
        self.validate_params()
        recordings, classes, y_idx, n_features = self._check_training_data(X, y)
        members = [[recordings[i] for i in np.flatnonzero(y_idx == c)] for c in range(classes.size)]
        dtype = np.float32 if all(np.dtype(r.dtype) == np.float32 for r in recordings) else np.float64
        sources = [class_source(m, n_features, dtype) for m in members]
        # every class's recordings in class order: the balanced pool indexes into it
        everything = ConcatSource([p for s in sources for p in s.parts], [n for s in sources for n in s.lengths],
                                  n_features=n_features, dtype=dtype)
        rng = np.random.default_rng(_seed(self.random_state))
        pooled = IndexedSource(everything, balanced_indices([s.n_frames for s in sources], self.ubm_max_frames, rng))
        if pooled.n_frames < self.n_components:
            raise TrainingError(
                f"the classes have {pooled.n_frames} frame(s) in all, fewer than n_components={self.n_components}: "
                f"add audio or lower n_components"
            )
        hook = em_progress(progress, ["EM UBM"], self.max_iter, count=None)[0]
        ubm = DiagonalGMM(**self._gmm_params(), n_jobs=self.n_jobs, random_state=rng, verbose=hook)
        with scratch_frame_state(scratch_dir) as state:
            ubm.fit(pooled, executor=executor, frame_state=state)
        end_em_progress(ubm)
        del pooled
        w, mu, var = ubm.weights_, ubm.means_, ubm.variances_
        gmms = []
        if progress is not None:
            progress("training", 0, len(sources))
        for c, source in enumerate(sources):
            n, F, S, loglik = map_statistics(source, w, mu, var, dtype=self.dtype, n_jobs=self.n_jobs,
                                             executor=executor)
            if not math.isfinite(loglik):  # sources are not checked up front (that would be a pass of its own)
                raise ParameterError(f"the frames of class {classes[c]!r} contain NaN or infinity; "
                                     f"re-extract their features")
            wc, muc, varc = map_adapt(w, mu, var, n, F, S, relevance_factor=self.relevance_factor,
                                      adapt=self.adapt, var_floor=float(self.reg_covar) or 1e-6)
            g = fitted_gmm(wc, muc, varc, n_features, self._gmm_params(), {"n_iter": 0}, "class")
            g.lower_bound_ = mean_score(g, source)
            gmms.append(g)
            if progress is not None:
                progress("training", len(gmms), len(sources))
        self.ubm_ = ubm
        self._set_fitted(classes, y_idx, n_features, gmms, [s.n_frames for s in sources])
        self._prepare()
        return self

    def _prepare(self):
        """Stack the class models for scoring (also called after loading a model file)."""
        w, mu, var = (np.asarray(getattr(self.ubm_, a), dtype=np.float64) for a in ("weights_", "means_", "variances_"))
        self._ubm_arrays = (w, mu, var)
        means = np.stack([np.asarray(g.means_, dtype=np.float64) for g in self.gmms_])
        variances = np.stack([np.asarray(g.variances_, dtype=np.float64) for g in self.gmms_])
        weights = np.stack([np.asarray(g.weights_, dtype=np.float64) for g in self.gmms_])
        if means.shape[1:] != mu.shape or weights.shape[1:] != w.shape:
            raise ParameterError(f"class models must have the UBM's shape {mu.shape}, got {means.shape[1:]}")
        log_const = np.log(np.maximum(weights, np.finfo(np.float64).tiny)) - 0.5 * (
            mu.shape[1] * _LOG_2PI + np.log(variances).sum(axis=2))
        prec = 1.0 / variances
        if np.all(variances == variances[:1]):
            prec = prec[:1]
        self._models = (log_const, means, prec)

    # -- scoring -------------------------------------------------------------------------
    def _check_fitted(self):
        super()._check_fitted()
        if not hasattr(self, "_models"):
            self._prepare()

    def score_frames(self, X):
        """Per-frame log-likelihood ratio of every class against the UBM.

        Parameters
        ----------
        X : ndarray of shape (n_frames, n_features)

        Returns
        -------
        llr : ndarray of shape (n_frames, n_classes), float64
        """
        self._check_fitted()
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ParameterError(f"X must have shape (n_frames, {self.n_features_in_}), got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ParameterError("X contains NaN or infinity")
        out = np.empty((X.shape[0], len(self.gmms_)))
        for a in range(0, X.shape[0], _BLOCK):
            out[a:a + _BLOCK] = _frame_llr(X[a:a + _BLOCK], self._ubm_arrays, self._models, self.top_c)
        return out

    def _extra_arrays(self):
        return {f"ubm_{name}": np.asarray(getattr(self.ubm_, f"{name}_"), dtype=np.float64)
                for name in ("weights", "means", "variances")}

    def _restore_extra(self, state, arrays, gmm_params):
        w, mu, var = (np.asarray(arrays[f"ubm_{name}"], dtype=np.float64) for name in ("weights", "means", "variances"))
        self.ubm_ = fitted_gmm(w, mu, var, self.n_features_in_, gmm_params, state.get("ubm"), "UBM")
        self._prepare()

    def to_arrays(self):
        state, arrays = super().to_arrays()
        u = self.ubm_
        state["ubm"] = {"n_components": int(u.weights_.shape[0]), "converged": bool(u.converged_),
                        "n_iter": int(u.n_iter_), "lower_bound": float(u.lower_bound_)}
        return state, arrays
