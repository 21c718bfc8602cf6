"""One Gaussian mixture per class; recordings labelled by highest mean frame log-likelihood.

Scoring
-------
A recording is a matrix ``X`` of shape ``(n_frames, n_features)``. Its *score* for class
``c`` is the mean over its frames of the log-likelihood under that class's mixture::

    s_c(X) = (1 / n_frames) * sum_t log p(x_t | c)

The predicted label is ``argmax_c s_c(X) + log pi_c`` where ``pi`` are the class priors
(uniform by default, so the label is the class of highest mean log-likelihood).

Probabilities
-------------
``predict_proba`` returns ``softmax_c(s_c(X) + log pi_c)``: each class's probability is
proportional to its prior times the *geometric mean* of the frame likelihoods,
``pi_c * prod_t p(x_t | c) ** (1 / n_frames)``. Using the mean rather than the sum of the
frame log-likelihoods keeps the probabilities comparable across recordings of different
lengths (the sum would make every long recording look certain, since frames are not
independent); the price is that they are not calibrated posteriors. They rank classes
exactly as the scores do.

Inputs
------
``fit``, ``predict`` and friends take either a sequence of 2-D arrays (one per recording)
or a single 2-D array, read as one recording per *row* (so frame-level use and
scikit-learn's estimator checks work unchanged).
"""

import numbers
import warnings

import numpy as np
from scipy.special import log_softmax, softmax

from .exceptions import NotFittedError, ParameterError, TrainingError
from .gmm import DiagonalGMM, _n_threads, score_samples_many, select_n_components

__all__ = ["GMMClassifier", "N_COMPONENTS_GRID"]

#: Frames scored together when many short recordings are scored at once.
_BATCH_FRAMES = 1 << 16
#: Candidate numbers of components for ``n_components="auto"`` (those above a class's
#: number of frames are skipped); each class keeps the K of lowest BIC.
N_COMPONENTS_GRID = (1, 2, 4, 8, 16, 32, 64)


def _not_fitted_error(message):
    """audiogmm's NotFittedError, also a scikit-learn NotFittedError when sklearn is installed.

    scikit-learn's checks (and ``check_is_fitted`` users) catch their own class; importing it
    only here keeps scikit-learn out of ``import audiogmm``.
    """
    try:
        from sklearn.exceptions import NotFittedError as SkNotFittedError
    except ImportError:  # pragma: no cover
        return NotFittedError(message)
    cls = type("NotFittedError", (NotFittedError, SkNotFittedError), {"__module__": NotFittedError.__module__})
    return cls(message)


def _as_float(x, name):
    """``x`` as a float32 (kept) or float64 array; rejects complex, sparse and non-numbers."""
    if np.iscomplexobj(x):
        raise ParameterError(f"{name}: Complex data not supported; pass real-valued features")
    if x.dtype == object:
        return x.astype(np.float64)  # TypeError for non-numbers, as NumPy/scikit-learn
    if x.dtype.kind not in "biuf":
        raise ParameterError(f"{name} must hold numbers, got dtype {x.dtype}")
    return np.asarray(x, dtype=np.float32 if x.dtype == np.float32 else np.float64)


def _is_sparse(X):
    return hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse")


def _as_recordings(X, *, name="X"):
    """Return ``(recordings, stacked)``: a list of float 2-D arrays (one per recording), and
    the 2-D array itself when ``X`` was one recording per row (else None).

    A list or tuple whose first item is 2-D is a sequence of recordings; anything else
    (an array, a list of rows, an object with ``__array__``) must be 2-D, one recording per row.
    """
    if _is_sparse(X):
        raise ParameterError(f"{name}: sparse input is not supported; pass a dense array "
                             f"({name}.toarray()) or a list of dense (n_frames, n_features) arrays")
    if isinstance(X, (list, tuple)) and len(X) > 0 and np.ndim(X[0]) == 2:
        recordings = []
        for i, x in enumerate(X):
            if _is_sparse(x):
                raise ParameterError(f"{name}[{i}]: sparse input is not supported; pass dense arrays")
            x = np.asarray(x)
            if x.ndim != 2:
                raise ParameterError(f"{name}[{i}] must be a 2-D (n_frames, n_features) array, got shape {x.shape}")
            recordings.append(_as_float(x, f"{name}[{i}]"))
        return recordings, None
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{name} must be a sequence of (n_frames, n_features) arrays or one 2-D array "
                             f"({exc})") from None
    if arr.ndim != 2:
        raise ParameterError(
            f"{name} must be a sequence of (n_frames, n_features) arrays or one 2-D array (one recording "
            f"per row), got {type(X).__name__} with shape {arr.shape}. Reshape your data with "
            f"{name}.reshape(-1, 1) for a single feature or {name}.reshape(1, -1) for a single recording"
        )
    arr = _as_float(arr, name)
    return [arr[i : i + 1] for i in range(arr.shape[0])], arr


class ParamsMixin:
    """scikit-learn's parameter protocol from a class's ``_param_names`` (no sklearn import)."""

    _param_names = ()

    def get_params(self, deep=True):
        """Parameters of this estimator, as a dict (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self, **params):
        """Set parameters (scikit-learn protocol); returns ``self``."""
        name_of = type(self).__name__
        for name, value in params.items():
            if name not in self._param_names:
                raise ParameterError(f"invalid parameter {name!r} for {name_of}; valid: {', '.join(self._param_names)}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = type(self)().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v is not defaults[k] and not _equal(v, defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"


class GMMClassifier(ParamsMixin):
    """Classify recordings with one diagonal-covariance GMM per class.

    Parameters
    ----------
    n_components : int or "auto", default=8
        Mixture components per class. ``"auto"``: each class's K is chosen by BIC over
        :data:`N_COMPONENTS_GRID` = (1, 2, 4, 8, 16, 32, 64) (candidates above the class's
        number of frames are skipped) with :func:`audiogmm.gmm.select_n_components`; the
        chosen K are in ``n_components_`` (fits one mixture per candidate: about 2x the
        time of fitting K=64 alone).
    tol, reg_covar, max_iter, n_init, init_params, dtype
        Passed to each class's :class:`~audiogmm.gmm.DiagonalGMM`.
    priors : None, "uniform", "empirical" or array-like of shape (n_classes,), default=None
        Class priors added (as logs) to the scores. ``None``/``"uniform"``: equal priors, so
        the label is the class of highest mean log-likelihood. ``"empirical"``: proportional
        to the number of training recordings of each class. An array: in the order of
        ``classes_`` (sorted labels); it is normalised to sum to one.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds every class's initialisation (each class gets its own stream derived from it).
    n_jobs : int or None, default=None
        Classes trained in parallel (threads; BLAS capped at one thread each). ``None`` = 1;
        negative as joblib (-1 = all CPUs, -2 = all but one). The result does not depend on it
        (each class has its own seed).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Sorted class labels.
    gmms_ : list of DiagonalGMM
        The fitted mixture of each class, in the order of ``classes_``.
    class_prior_ : ndarray of shape (n_classes,)
        The priors in use.
    n_features_in_ : int
    n_recordings_ : ndarray of shape (n_classes,)
        Training recordings per class.
    n_frames_ : ndarray of shape (n_classes,)
        Training frames per class.
    n_components_ : ndarray of shape (n_classes,)
        Components of each class's mixture (differs between classes with ``"auto"``).
    bic_ : list of dict or None
        With ``n_components="auto"``: per class, the BIC of every candidate K fitted.
    n_iter_ : ndarray of shape (n_classes,)
        EM iterations of each class's mixture.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(0, 1, (50, 3)), rng.normal(3, 1, (50, 3)), rng.normal(0, 1, (40, 3))]
    >>> clf = GMMClassifier(n_components=2, random_state=0).fit(X, ["a", "b", "a"])
    >>> clf.predict([rng.normal(3, 1, (20, 3))]).tolist()
    ['b']
    """

    def __init__(
        self,
        n_components=8,
        *,
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="k-means++",
        dtype="float32",
        priors=None,
        random_state=None,
        n_jobs=None,
    ):
        self.n_components = n_components
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.dtype = dtype
        self.priors = priors
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- scikit-learn estimator protocol -------------------------------------------------
    _param_names = (
        "n_components", "tol", "reg_covar", "max_iter", "n_init", "init_params", "dtype",
        "priors", "random_state", "n_jobs",
    )

    def __sklearn_is_fitted__(self):
        return hasattr(self, "gmms_")

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags  # only when sklearn asks

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
            input_tags=InputTags(allow_nan=False),
        )

    # -- validation ----------------------------------------------------------------------
    def _gmm_params(self):
        return dict(
            n_components=self.n_components, tol=self.tol, reg_covar=self.reg_covar,
            max_iter=self.max_iter, n_init=self.n_init, init_params=self.init_params, dtype=self.dtype,
        )

    def _auto(self):
        return isinstance(self.n_components, str) and self.n_components == "auto"

    def _validate_params(self):
        k = self.n_components
        if not self._auto() and (not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1):
            raise ParameterError(f"n_components must be an int >= 1, got {k!r}; or 'auto' to choose it by BIC")
        _n_threads(self.n_jobs)
        if not (self.priors is None or isinstance(self.priors, str) or np.ndim(self.priors) == 1):
            raise ParameterError(f"priors must be None, 'uniform', 'empirical' or a 1-D array, got {self.priors!r}")
        if isinstance(self.priors, str) and self.priors not in ("uniform", "empirical"):
            raise ParameterError(f"priors must be 'uniform' or 'empirical' when a string, got {self.priors!r}")
        # Let DiagonalGMM check its own parameters before any work.
        DiagonalGMM(**{**self._gmm_params(), "n_components": 1 if self._auto() else k})._validated_params()
        _entropy(self.random_state, check_only=True)

    def _resolve_priors(self, n_recordings):
        p = self.priors
        if p is None or (isinstance(p, str) and p == "uniform"):
            return np.full(len(n_recordings), 1.0 / len(n_recordings))
        if isinstance(p, str):  # empirical
            return n_recordings / n_recordings.sum()
        p = np.asarray(p, dtype=float)
        if p.shape != (len(n_recordings),) or not np.all(np.isfinite(p)) or np.any(p <= 0):
            raise ParameterError(
                f"priors must hold {len(n_recordings)} positive numbers (one per class, in the order "
                f"{list(self.classes_)}), got {self.priors!r}"
            )
        return p / p.sum()

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X, y):
        """Train one mixture per class.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_frames_i, n_features), or ndarray (n_samples, n_features)
            The recordings' frames (a 2-D array is one recording per row).
        y : array-like of shape (n_recordings,)
            The label of each recording.

        Returns
        -------
        self : GMMClassifier

        Raises
        ------
        ParameterError
            Bad parameters, mismatched lengths, non-finite or inconsistent features.
        TrainingError
            A class has fewer frames than ``n_components``.
        """
        self._validate_params()
        if y is None:
            raise ParameterError("GMMClassifier requires y to be passed, but the target y is None: "
                                 "give one label per recording")
        recordings, _ = _as_recordings(X)
        y = _check_y(y, len(recordings))
        if len(recordings) == 0:
            raise ParameterError("X holds no recording: give at least one recording per class")
        widths = {r.shape[1] for r in recordings}
        if len(widths) != 1:
            raise ParameterError(f"all recordings must have the same number of features, got {sorted(widths)}")
        for i, r in enumerate(recordings):
            if not np.all(np.isfinite(r)):
                raise ParameterError(f"X[{i}] contains NaN or infinity")
        classes, y_idx = np.unique(y, return_inverse=True)
        auto = self._auto()
        frames = []
        for c, label in enumerate(classes):
            parts = [recordings[i] for i in np.flatnonzero(y_idx == c)]
            Xc = np.concatenate(parts) if len(parts) > 1 else parts[0]
            if not auto and Xc.shape[0] < self.n_components:
                raise TrainingError(
                    f"class {_plain(label)!r} has {Xc.shape[0]} frame(s) from {len(parts)} recording(s), fewer than "
                    f"n_components={self.n_components}: add audio to it or lower n_components"
                )
            frames.append(Xc)
        seeds = np.random.SeedSequence(_entropy(self.random_state)).spawn(classes.size)
        params = self._gmm_params()
        if auto:
            del params["n_components"]
            tasks = [(_select_one, (Xc, dict(params, random_state=np.random.default_rng(sd))))
                     for Xc, sd in zip(frames, seeds)]
        else:
            tasks = [(_fit_one, (DiagonalGMM(**params, random_state=np.random.default_rng(sd)), Xc))
                     for Xc, sd in zip(frames, seeds)]
        results = _run_all(tasks, self.n_jobs)
        self.classes_ = classes
        self.n_features_in_ = widths.pop()
        self.n_recordings_ = np.bincount(y_idx, minlength=classes.size)
        self.n_frames_ = np.array([f.shape[0] for f in frames])
        if auto:
            self.gmms_ = [g for g, _ in results]
            self.bic_ = [values for _, values in results]
        else:
            self.gmms_ = results
            self.bic_ = None
        self.n_components_ = np.array([g.weights_.shape[0] for g in self.gmms_])
        self.n_iter_ = np.array([g.n_iter_ for g in self.gmms_])
        self.class_prior_ = self._resolve_priors(self.n_recordings_)
        return self

    # -- scoring -------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "gmms_"):
            raise _not_fitted_error("this GMMClassifier is not fitted yet: call fit() first")

    def score_recordings(self, X):
        """Mean frame log-likelihood of each recording under each class's mixture.

        Parameters
        ----------
        X : sequence of ndarray (n_frames_i, n_features), or ndarray (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_recordings, n_classes)
            Column ``c`` is ``s_c(X)`` for ``classes_[c]`` (priors not included).
        """
        self._check_fitted()
        recordings, stacked = _as_recordings(X)
        for i, r in enumerate(recordings if stacked is None else recordings[:1]):
            if r.shape[1] != self.n_features_in_:
                raise ParameterError(
                    f"{'X' if stacked is not None else f'X[{i}]'} has {r.shape[1]} features, but GMMClassifier "
                    f"is expecting {self.n_features_in_} features as input (the features it was trained on)"
                )
            if r.shape[0] == 0:
                raise ParameterError(f"X[{i}] has no frame: a recording needs at least one frame to be scored")
        if stacked is not None:  # one frame per recording: one pass over all rows
            return score_samples_many(self.gmms_, stacked)
        return _mean_per_recording(recordings, lambda frames: score_samples_many(self.gmms_, frames),
                                   len(self.gmms_))

    def joint_scores(self, X):
        """Scores plus log priors, shape (n_recordings, n_classes); argmax gives the label.

        Unlike :meth:`decision_function`, always one column per class.
        """
        return self.score_recordings(X) + np.log(self.class_prior_)

    def decision_function(self, X):
        """Scores plus log priors, as scikit-learn classifiers return them.

        Returns
        -------
        decision : ndarray of shape (n_recordings, n_classes), or (n_recordings,) for two classes
            :meth:`joint_scores`; with two classes, as in scikit-learn, the difference
            ``column 1 - column 0`` (the log-odds of ``classes_[1]``: > 0 predicts it).
        """
        d = self.joint_scores(X)
        return d[:, 1] - d[:, 0] if d.shape[1] == 2 else d

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, shape (n_recordings, n_classes)."""
        return log_softmax(self.joint_scores(X), axis=1)

    def predict_proba(self, X):
        """Class probabilities ``softmax(score + log prior)``, shape (n_recordings, n_classes).

        See the module docstring for what they mean (and do not mean).
        """
        return softmax(self.joint_scores(X), axis=1)

    def predict(self, X):
        """The label of highest ``score + log prior`` for each recording, shape (n_recordings,)."""
        best = np.argmax(self.joint_scores(X), axis=1)  # checks fitted first
        return self.classes_[best]

    def score(self, X, y):
        """Accuracy of :meth:`predict` on ``(X, y)`` (scikit-learn protocol)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


def _plain(value):
    """A NumPy scalar as the Python value it holds (for readable messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _equal(a, b):
    try:
        return bool(a == b)
    except Exception:  # arrays and other odd values
        return False


def _check_y(y, n_recordings):
    """Labels as a 1-D array of ``n_recordings`` class labels (scikit-learn's rules)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        try:
            from sklearn.exceptions import DataConversionWarning as warning_class
        except ImportError:  # pragma: no cover
            warning_class = UserWarning
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                      "to (n_samples,), for example using ravel().", warning_class, stacklevel=3)
        y = y.ravel()
    if y.ndim != 1 or y.shape[0] != n_recordings:
        raise ParameterError(f"y must be 1-D with one label per recording ({n_recordings}), got shape {y.shape}")
    if y.dtype.kind in "fc":
        if not np.all(np.isfinite(y)):
            raise ParameterError("Input y contains NaN or infinity: every recording needs a label")
        if np.any(y != np.round(y.real)):
            raise ParameterError("Unknown label type: continuous. GMMClassifier needs class labels "
                                 "(str or int), not continuous targets")
    return y


def _entropy(random_state, check_only=False):
    """An integer seed for SeedSequence from None, an int or a Generator/RandomState."""
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ParameterError(f"random_state must be None, an int >= 0 or a numpy Generator, got {random_state!r}")
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return None if check_only else int(random_state.integers(2**63))
    if isinstance(random_state, np.random.RandomState):
        return None if check_only else int(random_state.randint(2**31))
    raise ParameterError(f"random_state must be None, an int >= 0 or a numpy Generator, got {random_state!r}")


def _fit_one(gmm, X):
    return gmm.fit(X)


def _select_one(X, params):
    return select_n_components(X, N_COMPONENTS_GRID, **params)


def _mean_per_recording(recordings, score_frames, n_columns):
    """Mean over each recording's frames of ``score_frames(frames)`` (n_frames, n_columns).

    Many short recordings are scored in one pass: up to ``_BATCH_FRAMES`` frames are
    concatenated, scored at once, and each recording's rows averaged.
    """
    out = np.empty((len(recordings), n_columns))
    start = 0
    while start < len(recordings):
        stop, n = start, 0
        while stop < len(recordings) and (n == 0 or n + recordings[stop].shape[0] <= _BATCH_FRAMES):
            n += recordings[stop].shape[0]
            stop += 1
        batch = recordings[start:stop]
        lengths = np.array([r.shape[0] for r in batch])
        scores = score_frames(batch[0] if len(batch) == 1 else np.concatenate(batch))
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        out[start:stop] = np.add.reduceat(scores, offsets, axis=0) / lengths[:, None]
        start = stop
    return out


def _run_all(tasks, n_jobs):
    """Run ``fn(*args)`` for each task, in order; in ``n_jobs`` threads when > 1.

    Threads (not processes): the EM spends its time in BLAS and NumPy loops that release the
    GIL, so threads share the frames without copying them to worker processes. BLAS is capped
    at one thread for the whole run (threadpoolctl, process-wide) so that ``n_jobs`` classes do
    not each start a BLAS pool; each fit's own one-thread limit then nests inside it and
    restores one thread on exit. Results are identical for any ``n_jobs``: every class has its
    own seed and its fit does not depend on the others.
    """
    n_jobs = _n_threads(n_jobs)
    if n_jobs == 1 or len(tasks) == 1:
        return [fn(*args) for fn, args in tasks]
    from joblib import Parallel, delayed
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return Parallel(n_jobs=min(n_jobs, len(tasks)), prefer="threads")(
            delayed(fn)(*args) for fn, args in tasks)
