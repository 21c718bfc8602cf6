"""The estimator: :class:`DiagonalGMM`, :func:`score_samples_many`, :func:`select_n_components`."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
from scipy.special import logsumexp

from audiogmm._validation import (check_float_dtype, check_frames, check_int, check_n_jobs,
                                  check_option, check_random_state, check_real, is_int,
                                  nonfinite_error)
from audiogmm.exceptions import ConvergenceWarning, NotFittedError, ParameterError

from ._em import MemoryFrameState, SerialExecutor, ThreadExecutor, em_run
from ._init import INIT_PARAMS
from ._source import as_source
from ._stats import (CHUNK_BLOCKS, Workspace, auto_block_size, design_weights, fill_design,
                     log_prob_direct, logsumexp_columns, single_blas_thread)

__all__ = ["DiagonalGMM", "score_samples_many", "select_n_components"]


def _not_finite_error(X, name="X"):
    rows = np.flatnonzero((~np.isfinite(X)).any(axis=1))
    return nonfinite_error(name, rows.size, rows[0])


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
        ``audiogmm.mixture`` logger; this module never prints). A callable is called after
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
    >>> from audiogmm.mixture import DiagonalGMM
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
        p["n_components"] = check_int("n_components", self.n_components, 1)
        p["tol"] = check_real("tol", self.tol)
        p["reg_covar"] = check_real("reg_covar", self.reg_covar)
        p["max_iter"] = check_int("max_iter", self.max_iter, 0)
        p["n_init"] = check_int("n_init", self.n_init, 1)
        check_option("init_params", self.init_params, INIT_PARAMS)
        p["dtype"] = check_float_dtype(self.dtype)
        if self.block_size is None:
            p["block_size"] = auto_block_size(p["n_components"])
        else:
            p["block_size"] = check_int("block_size", self.block_size, 1)
        p["n_jobs"] = check_n_jobs(self.n_jobs)
        if not (callable(self.verbose) or (is_int(self.verbose) and self.verbose >= 0)):
            raise ParameterError(f"verbose must be an int >= 0 or a callable, "
                                 f"got {self.verbose!r}")
        p["rng"] = check_random_state(self.random_state)
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

    def fit(self, X, y=None, *, executor=None, frame_state=None):
        """Estimate the parameters with EM (``n_init`` initialisations, best kept).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a frame source
            Frames. float32 input is not copied. A frame source
            (:class:`~audiogmm.mixture.ArraySource`, :class:`~audiogmm.mixture.ConcatSource`,
            :class:`~audiogmm.mixture.IndexedSource` or any object with their protocol) is
            read chunk by chunk and never materialised: the result is bit-identical to
            the fit on the array it stands for.
        y : ignored
        executor : object with ``map(fn, list_of_args)``, default=None
            Runs the per-partition (or per-chunk) accumulation tasks
            (:class:`~audiogmm.mixture.SerialExecutor`,
            :class:`~audiogmm.mixture.ThreadExecutor`, or an adapter to a cluster).
            None: ``ThreadExecutor(n_jobs)`` when ``n_jobs > 1``, else serial. The result
            does not depend on it. A runtime resource, not a parameter: it is neither
            stored nor part of :meth:`get_params`.
        frame_state : frame state, default=None
            Where the per-frame hint (the previous iteration's log-likelihoods) lives
            between passes: None keeps it in RAM (4 or 8 bytes per frame);
            :class:`~audiogmm.mixture.FileFrameState` keeps it in files (out of core,
            shared by worker processes). Bit-identical either way.

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
        source = as_source(X)
        n, d = source.n_frames, source.n_features
        k = params["n_components"]
        if n < k:
            raise ParameterError(f"X has n_samples={n} frames but n_components={k}; use "
                                 f"n_components <= {n} or give more frames")
        inits = self._validated_inits(k, d)
        if executor is not None and not callable(getattr(executor, "map", None)):
            raise ParameterError(f"executor must have a map(fn, list_of_args) method (e.g. "
                                 f"audiogmm.mixture.ThreadExecutor(2)), got {executor!r}")
        state = MemoryFrameState() if frame_state is None else frame_state
        if not all(callable(getattr(state, m, None)) for m in ("prepare", "views", "commit")):
            raise ParameterError(f"frame_state must be a frame state (e.g. "
                                 f"audiogmm.mixture.FileFrameState(directory)), got "
                                 f"{frame_state!r}")
        own = None
        if executor is None:
            threads = params["n_jobs"]
            chunk = min(params["block_size"], n) * CHUNK_BLOCKS
            executor = own = (ThreadExecutor(threads) if threads > 1 and n > chunk
                              else SerialExecutor())
        try:
            with single_blas_thread():
                best = em_run(source, params, inits, init_params=self.init_params,
                              executor=executor, state=state,
                              use_numba=getattr(self, "_use_numba", True),
                              verbose=self.verbose)
        finally:
            if isinstance(own, ThreadExecutor):
                own.shutdown()
        self._warn(best, params)
        self.weights_, self.means_, self.variances_ = (best["weights"], best["means"],
                                                       best["variances"])
        self.converged_, self.n_iter_ = best["converged"], best["n_iter"]
        self.lower_bound_, self.lower_bounds_ = float(best["lower_bound"]), best["history"]
        self.n_features_in_ = d
        return self

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
            return check_float_dtype(self.dtype)
        except ParameterError:
            return np.dtype(np.float64)

    def _block_size(self):
        bs = self.block_size
        if is_int(bs) and bs >= 1:
            return int(bs)
        k = np.shape(getattr(self, "weights_", ()))[0] if hasattr(self, "weights_") else 1
        return auto_block_size(k)

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
        X = check_frames(X, n_features=self._n_features(mu))
        if not np.all(np.isfinite(X)):
            raise _not_finite_error(X)
        dtype = self._compute_dtype()
        center = (w @ mu).astype(dtype)
        WT = design_weights(w, mu, var, center.astype(np.float64)).astype(dtype)
        bs = min(self._block_size(), X.shape[0])
        ws = Workspace(w.size, mu.shape[1], bs, dtype, center)
        p = WT.shape[1]
        with single_blas_thread(), np.errstate(over="ignore", under="ignore"):
            for a in range(0, X.shape[0], bs):
                b = min(a + bs, X.shape[0])
                ZT = fill_design(X[a:b], ws, b - a)
                L = (WT[:, :p - 1] @ ZT[:p - 1]).T.astype(np.float64)
                bad = ~np.all(np.isfinite(L), axis=1)
                if bad.any():
                    L[bad] = log_prob_direct(X[a:b][bad], w, mu, var)
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
        X = check_frames(X)
        return float(-2.0 * self.score(X) * X.shape[0] + self._n_parameters() * np.log(X.shape[0]))

    def aic(self, X):
        """Akaike information criterion on ``X``: ``-2 * score(X) * n + 2 * n_parameters``."""
        X = check_frames(X)
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
        n_samples = check_int("n_samples", n_samples, 1)
        rng = check_random_state(self.random_state)
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
    >>> from audiogmm.mixture import DiagonalGMM, score_samples_many
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
        block_size = bs0 if is_int(bs0) and bs0 >= 1 else auto_block_size(
            sum(p[0].size for p in params))
    block_size = check_int("block_size", block_size, 1)
    X = check_frames(X, n_features=d, estimator=type(gmms[0]).__name__)
    if not np.all(np.isfinite(X)):
        raise _not_finite_error(X)
    dtype = max((g._compute_dtype() for g in gmms), key=lambda t: t.itemsize)
    center64 = np.mean([w @ mu for w, mu, _ in params], axis=0)
    center = center64.astype(dtype)
    c64 = center.astype(np.float64)
    WT = np.vstack([design_weights(w, mu, var, c64)[:, :2 * d + 1] for w, mu, var in params])
    WT = WT.astype(dtype)
    ks = [p[0].size for p in params]
    bounds = np.concatenate([[0], np.cumsum(ks)])
    same_k = len(set(ks)) == 1
    n = X.shape[0]
    bs = min(block_size, n)
    ws = Workspace(int(bounds[-1]), d, bs, dtype, center)
    out = np.empty((n, len(gmms)))
    with single_blas_thread(), np.errstate(over="ignore", under="ignore", divide="ignore"):
        for a in range(0, n, bs):
            b = min(a + bs, n)
            ZT = fill_design(X[a:b], ws, b - a)
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
                    m, s = logsumexp_columns(E[bounds[j]:bounds[j + 1]], ws.floor)
                    out[a:b, j] = m + np.log(s, dtype=np.float64)
        bad = ~np.isfinite(out)
        if bad.any():  # float overflow on absurdly far frames: exact float64 fallback
            rows = np.flatnonzero(bad.any(axis=1))
            for j, (w, mu, var) in enumerate(params):
                out[rows, j] = logsumexp(log_prob_direct(X[rows], w, mu, var), axis=1)
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
    >>> from audiogmm.mixture import select_n_components
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
    if not cands or any(not is_int(c) or c < 1 for c in candidates):
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
    X = check_frames(X)
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
