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
``predict_proba`` hands the scores and the log priors to the classifier's calibrator
(``calibrator_``, :mod:`audiogmm.calibration`), the one place where probabilities are made.
The default, :class:`~audiogmm.calibration.SoftmaxCalibrator`, returns
``softmax_c(s_c(X) + log pi_c)``: each class's probability is proportional to its prior times
the *geometric mean* of the frame likelihoods, ``pi_c * prod_t p(x_t | c) ** (1 / n_frames)``.
Using the mean rather than the sum of the frame log-likelihoods keeps the probabilities
comparable across recordings of different lengths (the sum would make every long recording
look certain, since frames are not independent); the price is that they are not calibrated
posteriors. They rank classes exactly as the scores do.

The base class
--------------
:class:`BaseGMMClassifier` holds what every classifier of the package shares: the parameter
protocol, the input checks, the priors, ``decision_function``, the single ``predict_proba``
(through the calibrator) and the plain-array state of the model file (``to_arrays`` /
``from_arrays``). :class:`GMMClassifier` (one mixture per class by EM) and
:class:`~audiogmm.ubm.UBMClassifier` (GMM-UBM with MAP adaptation) add ``fit`` and
``score_frames``.

Inputs
------
``fit``, ``predict`` and friends take either a sequence of 2-D arrays (one per recording)
or a single 2-D array, read as one recording per *row* (so frame-level use and
scikit-learn's estimator checks work unchanged).
"""

import contextlib
import numbers
import os
import shutil
import warnings

import numpy as np

from .calibration import SoftmaxCalibrator, calibrator_from_state
from .exceptions import ConvergenceWarning, NotFittedError, ParameterError, TrainingError
from ._validation import check_n_jobs, seed_entropy
from .mixture import (ConcatSource, DiagonalGMM, FileFrameState, auto_block_size, is_source, score_samples_many,
                      select_n_components)

__all__ = ["BaseGMMClassifier", "GMMClassifier", "N_COMPONENTS_GRID", "as_recordings", "class_source", "fitted_gmm",
           "mean_per_recording", "mean_score", "scratch_frame_state"]

#: Frames scored together when many short recordings are scored at once.
_BATCH_FRAMES = 1 << 16
#: Candidate numbers of components for ``n_components="auto"``, tried in increasing order
#: (those above the frames a class has to fit on are skipped).
N_COMPONENTS_GRID = (1, 2, 4, 8, 16, 32, 64)
#: ``n_components="auto"`` stops at the first step of :data:`N_COMPONENTS_GRID` whose held-out
#: log-likelihood gains less than this, in nats per frame and per feature (0.12 nats per frame
#: for 60 features), and keeps the K before it. BIC cannot serve here: its penalty grows like
#: log(n_frames) while the likelihood grows like n_frames, so on a few minutes of audio it keeps
#: choosing the grid's top. On data where every doubling still gains more than this on frames
#: of recordings the mixture never saw, the largest K is kept and a warning says so: more
#: components really do fit new recordings better there (bench/defaults.py --auto-k).
AUTO_MIN_GAIN = 0.002
#: ``n_components="auto"`` holds out every ``AUTO_HOLDOUT``-th recording of a class, counting
#: from its last (a class of one recording: the last 1/AUTO_HOLDOUT of its frames).
AUTO_HOLDOUT = 5


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


def as_recordings(X, *, name="X"):
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


#: The parameters of a class mixture kept in the model file, per class ``i``.
_GMM_ARRAYS = ("weights", "means", "variances")


class BaseGMMClassifier(ParamsMixin):
    """What every mixture classifier shares: checks, priors, scores, probabilities, state.

    Subclasses set ``_param_names`` and ``method`` and implement ``fit`` and
    :meth:`score_frames`; everything else lives here once. Fitted attributes common to all:
    ``classes_``, ``gmms_`` (one :class:`~audiogmm.mixture.DiagonalGMM` per class),
    ``class_prior_``, ``n_features_in_``, ``n_recordings_``, ``n_frames_`` and
    ``calibrator_`` (:class:`~audiogmm.calibration.SoftmaxCalibrator` unless another was fitted).
    """

    #: The name of this classifier in the registry (:mod:`audiogmm.recipes`) and the model file.
    method = None

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
    def _validate_common(self):
        """Checks shared by every classifier: n_jobs, priors, random_state."""
        check_n_jobs(self.n_jobs)
        if not (self.priors is None or isinstance(self.priors, str) or np.ndim(self.priors) == 1):
            raise ParameterError(f"priors must be None, 'uniform', 'empirical' or a 1-D array, got {self.priors!r}")
        if isinstance(self.priors, str) and self.priors not in ("uniform", "empirical"):
            raise ParameterError(f"priors must be 'uniform' or 'empirical' when a string, got {self.priors!r}")
        seed_entropy(self.random_state, check_only=True)

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

    def _check_training_data(self, X, y):
        """``(recordings, classes, y_idx, n_features)`` after every check of ``fit``'s input."""
        name = type(self).__name__
        if y is None:
            raise ParameterError(f"{name} requires y to be passed, but the target y is None: "
                                 "give one label per recording")
        stacked = None
        if isinstance(X, (list, tuple)) and any(is_source(x) for x in X):
            # frame sources (e.g. store entries) are never read here: their NaN/inf check is the
            # fit's own pass over the frames (column moments; MAP: a non-finite log-likelihood)
            recordings = [x if is_source(x) else as_recordings([x], name=f"X[{i}]")[0][0]
                          for i, x in enumerate(X)]
        else:
            recordings, stacked = as_recordings(X)
        y = _check_y(y, len(recordings), name)
        if len(recordings) == 0:
            raise ParameterError("X holds no recording: give at least one recording per class")
        widths = {_width(r) for r in recordings}
        if len(widths) != 1:
            raise ParameterError(f"all recordings must have the same number of features, got {sorted(widths)}")
        if min(widths) < 1:  # scikit-learn's wording (its estimator checks look for it)
            shape = stacked.shape if stacked is not None else (sum(_length(r) for r in recordings), 0)
            raise ParameterError(f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is "
                                 f"required: X has no features")
        for i, r in enumerate(recordings):
            if isinstance(r, np.ndarray) and not np.all(np.isfinite(r)):
                raise ParameterError(f"X[{i}] contains NaN or infinity")
        classes, y_idx = np.unique(y, return_inverse=True)
        return recordings, classes, y_idx, widths.pop()

    def _set_fitted(self, classes, y_idx, n_features, gmms, n_frames):
        """The fitted attributes every classifier shares."""
        self.classes_ = classes
        self.n_features_in_ = n_features
        self.n_recordings_ = np.bincount(y_idx, minlength=classes.size)
        self.n_frames_ = np.asarray(n_frames)
        self.gmms_ = gmms
        self.class_prior_ = self._resolve_priors(self.n_recordings_)
        self.calibrator_ = SoftmaxCalibrator()

    def _check_fitted(self):
        if not hasattr(self, "gmms_"):
            raise _not_fitted_error(f"this {type(self).__name__} is not fitted yet: call fit() first")

    def _check_recordings(self, X):
        """``(recordings, stacked)`` of scoring input, checked against the fitted features."""
        self._check_fitted()
        recordings, stacked = as_recordings(X)
        for i, r in enumerate(recordings if stacked is None else recordings[:1]):
            if r.shape[1] != self.n_features_in_:
                raise ParameterError(
                    f"{'X' if stacked is not None else f'X[{i}]'} has {r.shape[1]} features, but "
                    f"{type(self).__name__} is expecting {self.n_features_in_} features as input (the "
                    f"features it was trained on)"
                )
            if r.shape[0] == 0:
                raise ParameterError(f"X[{i}] has no frame: a recording needs at least one frame to be scored")
        return recordings, stacked

    # -- scores and probabilities -------------------------------------------------------
    def score_frames(self, X):
        """Per-frame score of every class, shape (n_frames, n_classes) (subclasses)."""
        raise NotImplementedError

    def score_recordings(self, X):
        """Mean frame score of each recording for each class (priors not included).

        Parameters
        ----------
        X : sequence of ndarray (n_frames_i, n_features), or ndarray (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_recordings, n_classes)
            Column ``c`` is the score for ``classes_[c]``.
        """
        recordings, _ = self._check_recordings(X)
        return mean_per_recording(recordings, self.score_frames, len(self.gmms_))

    def score_recording_frames(self, X):
        """One recording's scores and those of each of its frames, from one scoring pass.

        Parameters
        ----------
        X : ndarray of shape (n_frames, n_features)

        Returns
        -------
        scores : ndarray of shape (n_classes,)
            Exactly ``score_recordings([X])[0]``.
        frame_scores : ndarray of shape (n_frames, n_classes)
            ``score_frames(X)``, whose mean ``scores`` is.
        """
        (recording,), _ = self._check_recordings([X])
        frames = []

        def score(block):  # mean_per_recording scores a single recording in one call
            frames.append(self.score_frames(block))
            return frames[-1]

        scores = mean_per_recording([recording], score, len(self.gmms_))[0]
        return scores, frames[0]

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

    def log_proba_from_scores(self, scores, *, n_frames=None):
        """Log class probabilities of ``scores`` (n, n_classes) by the model's calibrator.

        The one place where probabilities are made: :meth:`predict_proba`, segment
        timelines and the pipeline's predictions all call it. ``n_frames`` (frames behind each
        row) lets a calibrator temper scores averaged over fewer frames than the recordings it
        was fitted on (a short trailing segment); None: as long as those.
        """
        self._check_fitted()
        calibrator = getattr(self, "calibrator_", None) or SoftmaxCalibrator()
        return calibrator.log_proba(np.atleast_2d(scores), np.log(self.class_prior_), n_frames=n_frames)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, shape (n_recordings, n_classes)."""
        recordings, _ = self._check_recordings(X)
        return self.log_proba_from_scores(self.score_recordings(X), n_frames=[r.shape[0] for r in recordings])

    def predict_proba(self, X):
        """Class probabilities by the calibrator, shape (n_recordings, n_classes).

        With the default calibrator ``softmax(score + log prior)``; see the module docstring
        for what they mean (and do not mean).
        """
        return np.exp(self.predict_log_proba(X))

    def predict(self, X):
        """The label of highest ``score + log prior`` for each recording, shape (n_recordings,)."""
        best = np.argmax(self.joint_scores(X), axis=1)  # checks fitted first
        return self.classes_[best]

    def score(self, X, y):
        """Accuracy of :meth:`predict` on ``(X, y)`` (scikit-learn protocol)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # -- plain-array state (the model file) ----------------------------------------------
    def _extra_arrays(self):
        """Arrays besides the class mixtures (subclasses: e.g. the UBM)."""
        return {}

    def _restore_extra(self, state, arrays, gmm_params):
        """Rebuild what :meth:`_extra_arrays` saved (subclasses)."""

    def to_arrays(self):
        """The fitted state as ``(state, arrays)``: JSON-safe facts and named float64 arrays.

        ``arrays`` holds ``weights_<i>``, ``means_<i>``, ``variances_<i>`` per class ``i`` (and
        whatever the subclass adds); ``state`` the per-class facts and the calibrator. With the
        parameters (:meth:`get_params`) they are everything :meth:`from_arrays` needs.
        """
        self._check_fitted()
        arrays = {}
        for i, g in enumerate(self.gmms_):
            for name in _GMM_ARRAYS:
                arrays[f"{name}_{i}"] = np.asarray(getattr(g, f"{name}_"), dtype=np.float64)
        arrays.update(self._extra_arrays())
        calibrator = getattr(self, "calibrator_", None) or SoftmaxCalibrator()
        for name, value in calibrator.to_arrays().items():
            arrays[f"calibration_{name}"] = np.asarray(value, dtype=np.float64)
        state = {
            "classes": [str(c) for c in self.classes_],
            "class_prior": self.class_prior_.tolist(),
            "n_recordings": [int(n) for n in self.n_recordings_],
            "n_frames": [int(n) for n in self.n_frames_],
            "n_features": int(self.n_features_in_),
            "gmms": [{"n_components": int(g.weights_.shape[0]), "converged": bool(g.converged_),
                      "n_iter": int(g.n_iter_), "lower_bound": float(g.lower_bound_)} for g in self.gmms_],
            "calibration": calibrator.to_dict(),
        }
        return state, arrays

    def _gmm_params(self):
        return dict(n_components=self.n_components, tol=self.tol, reg_covar=self.reg_covar,
                    max_iter=self.max_iter, n_init=self.n_init, init_params=self.init_params, dtype=self.dtype)

    @classmethod
    def from_arrays(cls, params, state, arrays):
        """A fitted classifier from :meth:`get_params` and :meth:`to_arrays` output.

        Raises
        ------
        ValueError, KeyError, TypeError
            Inconsistent state (the model loader turns them into a ModelFileError).
        """
        clf = cls(**params)
        gmm_params = clf._gmm_params()
        n_features = int(state["n_features"])
        gmms = []
        for i, info in enumerate(state["gmms"]):
            w, mu, var = (np.asarray(arrays[f"{name}_{i}"], dtype=np.float64) for name in _GMM_ARRAYS)
            gmms.append(fitted_gmm(w, mu, var, n_features, gmm_params, info, f"class {i}"))
        classes = state["classes"]
        if len(gmms) != len(classes):
            raise ValueError(f"{len(classes)} classes but {len(gmms)} mixtures")
        clf.classes_ = np.array(classes, dtype=object).astype(str)
        clf.gmms_ = gmms
        clf.n_features_in_ = n_features
        clf.class_prior_ = np.asarray(state["class_prior"], dtype=np.float64)
        if clf.class_prior_.shape != (len(classes),):
            raise ValueError("class_prior does not match the classes")
        clf.n_recordings_ = np.asarray(state["n_recordings"], dtype=np.int64)
        clf.n_frames_ = np.asarray(state["n_frames"], dtype=np.int64)
        calibration = state.get("calibration") or {"kind": "softmax"}
        cal_arrays = {k[len("calibration_"):]: v for k, v in arrays.items() if k.startswith("calibration_")}
        try:
            clf.calibrator_ = calibrator_from_state(calibration, cal_arrays)
        except ParameterError as exc:
            raise ValueError(str(exc)) from None
        clf._restore_extra(state, arrays, gmm_params)
        return clf


def fitted_gmm(w, mu, var, n_features, gmm_params, info, what):
    """A DiagonalGMM holding checked parameters (what the model file restores)."""
    k = w.shape[0] if w.ndim == 1 else -1
    if w.ndim != 1 or mu.shape != (k, n_features) or var.shape != (k, n_features):
        raise ValueError(f"{what}: arrays of shapes {w.shape}, {mu.shape}, {var.shape} do not fit together")
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(mu)) and np.all(np.isfinite(var))):
        raise ValueError(f"{what}: non-finite parameters")
    if np.any(var <= 0) or np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-6):
        raise ValueError(f"{what}: variances must be > 0 and weights sum to 1")
    g = DiagonalGMM(**{**gmm_params, "n_components": k})
    g.weights_, g.means_, g.variances_ = w, mu, var
    g.n_features_in_ = n_features
    info = info or {}
    g.converged_ = bool(info.get("converged", True))
    g.n_iter_ = int(info.get("n_iter", 0))
    lb = info.get("lower_bound", float("nan"))
    g.lower_bound_ = float("nan") if lb is None else float(lb)
    return g


class GMMClassifier(BaseGMMClassifier):
    """Classify recordings with one diagonal-covariance GMM per class.

    Parameters
    ----------
    n_components : int or "auto", default=8
        Mixture components per class. ``"auto"``: each class's K is chosen by held-out
        log-likelihood: every :data:`AUTO_HOLDOUT`-th recording of the class is held out,
        the K of :data:`N_COMPONENTS_GRID` = (1, 2, 4, 8, 16, 32, 64) are fitted on the rest
        in increasing order until one gains less than :data:`AUTO_MIN_GAIN` nats per frame
        and feature on the held-out frames, the K before it is kept and fitted on all the
        class's frames (the same mixture as ``n_components=K``). The chosen K are in
        ``n_components_``, the held-out scores in ``heldout_scores_``; a
        :class:`~audiogmm.exceptions.ConvergenceWarning` says when a class kept the largest K
        it could try.
    tol, max_iter, n_init, init_params, dtype
        Passed to each class's :class:`~audiogmm.mixture.DiagonalGMM`.
    reg_covar : float, default=1e-3
        Added to every variance (passed to each class's mixture). The classifiers default to
        1e-3, not :class:`~audiogmm.mixture.DiagonalGMM`'s 1e-6 (scikit-learn's, for arbitrary
        data): audiogmm's features are normalised per recording, so 1e-3 is a small fraction of
        their variance and keeps components from collapsing onto near-duplicate frames
        (digital silence). The same default as :class:`~audiogmm.ubm.UBMClassifier`, the
        pipeline and the command line.
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
    heldout_scores_ : list of dict or None
        With ``n_components="auto"``: per class, ``{K: held-out mean log-likelihood per
        frame}`` of every candidate K fitted (None otherwise).
    bic_ : None
        Kept for models of earlier versions (``"auto"`` chose K by BIC then); always None.
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

    method = "per-class"

    def __init__(
        self,
        n_components=8,
        *,
        tol=1e-3,
        reg_covar=1e-3,
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

    def _auto(self):
        return isinstance(self.n_components, str) and self.n_components == "auto"

    def validate_params(self):
        k = self.n_components
        if not self._auto() and (not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1):
            raise ParameterError(f"n_components must be an int >= 1, got {k!r}; or 'auto' to choose it by held-out likelihood")
        self._validate_common()
        # Let DiagonalGMM check its own parameters before any work.
        DiagonalGMM(**{**self._gmm_params(), "n_components": 1 if self._auto() else k})._validated_params()

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X, y, *, progress=None, executor=None, scratch_dir=None):
        """Train one mixture per class.

        Parameters
        ----------
        X : sequence of ndarray of shape (n_frames_i, n_features), or ndarray (n_samples, n_features)
            The recordings' frames (a 2-D array is one recording per row). Items may also be
            frame sources (:class:`~audiogmm.mixture.ConcatSource`, e.g. of store loaders):
            each class is then read chunk by chunk and never held in memory (out of core).
        y : array-like of shape (n_recordings,)
            The label of each recording.
        progress : callable(stage, done, total), optional
            Called after every EM iteration as ``progress("EM <label>", n_iter, max_iter)``
            (and ``(stage, n_iter_, n_iter_)`` when the class's fit ends), and after every
            class as ``progress("training", n_done, n_classes)``. The model does not depend on it.
        executor : object with ``map(fn, list_of_args)``, optional
            Runs the EM tasks of every class's fit (e.g. ``audiogmm._dask.DaskExecutor(client)``
            for a Dask cluster); see :meth:`audiogmm.mixture.DiagonalGMM.fit`. The model does not
            depend on it. Not used with ``n_components="auto"`` (the BIC search fits in process).
        scratch_dir : str or path-like, optional
            A folder for the per-frame state of the fits (one
            :class:`~audiogmm.mixture.FileFrameState` per class, removed afterwards) instead
            of RAM: 4 bytes per frame of the largest class off the heap. The model does not
            depend on it.

        Returns
        -------
        self : GMMClassifier

        Raises
        ------
        ParameterError
            Bad parameters, mismatched lengths, non-finite or inconsistent features;
            ``n_components="auto"`` with frame sources (BIC selection needs arrays).
        TrainingError
            A class has fewer frames than ``n_components``.
        """
        self.validate_params()
        recordings, classes, y_idx, n_features = self._check_training_data(X, y)
        auto = self._auto()
        frames = []
        for c, label in enumerate(classes):
            members = np.flatnonzero(y_idx == c)
            Xc = class_source([recordings[i] for i in members], n_features)
            if not auto and Xc.n_frames < self.n_components:
                raise TrainingError(
                    f"class {_plain(label)!r} has {Xc.n_frames} frame(s) from {len(members)} recording(s), fewer than "
                    f"n_components={self.n_components}: add audio to it or lower n_components"
                )
            frames.append(Xc)
        if auto:
            if not all(all(isinstance(p, np.ndarray) for p in f.parts) for f in frames):
                raise ParameterError("n_components='auto' needs the features in memory (the BIC selection works on "
                                     "arrays): give an int n_components for out-of-core training")
            # the held-out search takes arrays: the classes are concatenated, as before sources
            frames = [f.parts[0] if len(f.parts) == 1 else np.concatenate(f.parts) for f in frames]
        seeds = np.random.SeedSequence(seed_entropy(self.random_state)).spawn(classes.size)
        params = self._gmm_params()
        hooks = em_progress(progress, [f"EM {_plain(label)}" for label in classes], self.max_iter)
        if auto:
            del params["n_components"]
            tasks = [(_select_one, (Xc, [recordings[i] for i in np.flatnonzero(y_idx == c)], params, sd, hook))
                     for c, (Xc, sd, hook) in enumerate(zip(frames, seeds, hooks))]
        else:
            tasks = [(_fit_one, (DiagonalGMM(**params, random_state=np.random.default_rng(sd), verbose=hook), Xc,
                                 executor, None if scratch_dir is None else os.path.join(scratch_dir, f"class-{c}")))
                     for c, (Xc, sd, hook) in enumerate(zip(frames, seeds, hooks))]
        results = _run_all(tasks, self.n_jobs)
        self.bic_ = None
        if auto:
            gmms = [g for g, _, _ in results]
            self.heldout_scores_ = [scores for _, scores, _ in results]
            at_end = [(_plain(label), g.n_components) for label, (g, _, end) in zip(classes, results) if end]
            if at_end:  # in the calling thread, once, after every class is done
                warnings.warn(
                    f"n_components='auto' kept the largest candidate it could try for {len(at_end)} class(es) "
                    f"({', '.join(f'{lab!r}: K={k}' for lab, k in at_end[:5])}"
                    f"{', ...' if len(at_end) > 5 else ''}): more components still gained held-out likelihood "
                    f"(or the class has too few frames for more); pass a fixed n_components instead",
                    ConvergenceWarning, stacklevel=2)
        else:
            gmms, self.heldout_scores_ = results, None
        self._set_fitted(classes, y_idx, n_features, gmms, [_length(f) for f in frames])
        self.n_components_ = np.array([g.weights_.shape[0] for g in self.gmms_])
        self.n_iter_ = np.array([g.n_iter_ for g in self.gmms_])
        return self

    # -- scoring -------------------------------------------------------------------------
    def score_frames(self, X):
        """Log-likelihood of every frame under each class's mixture, shape (n_frames, n_classes)."""
        self._check_fitted()
        return score_samples_many(self.gmms_, X)

    def score_recordings(self, X):
        """Mean frame log-likelihood ``s_c(X)`` of each recording (see the base class)."""
        recordings, stacked = self._check_recordings(X)
        if stacked is not None:  # one frame per recording: one pass over all rows
            return score_samples_many(self.gmms_, stacked)
        return mean_per_recording(recordings, self.score_frames, len(self.gmms_))

    def _restore_extra(self, state, arrays, gmm_params):
        # each class's own K (they differ with n_components="auto")
        self.n_components_ = np.array([g.weights_.shape[0] for g in self.gmms_])
        self.n_iter_ = np.array([g.n_iter_ for g in self.gmms_])
        self.bic_ = None
        self.heldout_scores_ = None


def _plain(value):
    """A NumPy scalar as the Python value it holds (for readable messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _equal(a, b):
    try:
        return bool(a == b)
    except Exception:  # arrays and other odd values
        return False


def _check_y(y, n_recordings, estimator="GMMClassifier"):
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
            raise ParameterError(f"Unknown label type: continuous. {estimator} needs class labels "
                                 "(str or int), not continuous targets")
    return y


def _fit_one(gmm, X, executor=None, scratch=None):
    with scratch_frame_state(scratch) as state:
        gmm.fit(X, executor=executor, frame_state=state)
    return end_em_progress(gmm)


@contextlib.contextmanager
def scratch_frame_state(directory):
    """A :class:`~audiogmm.mixture.FileFrameState` in ``directory`` for the duration of a fit.

    Yields None when ``directory`` is None (the fit keeps its state in RAM); else the state,
    whose files and folder are removed on exit, also after an error.
    """
    if directory is None:
        yield None
        return
    state = FileFrameState(directory)
    try:
        yield state
    finally:
        state.remove()
        shutil.rmtree(directory, ignore_errors=True)


def _width(recording):
    return recording.n_features if is_source(recording) else recording.shape[1]


def _length(frames):
    return frames.n_frames if is_source(frames) else frames.shape[0]


def class_source(recordings, n_features, dtype=None):
    """The recordings of one class as one :class:`~audiogmm.mixture.ConcatSource` (nothing copied).

    Parameters
    ----------
    recordings : sequence of ndarray or frame source
        In order. A :class:`~audiogmm.mixture.ConcatSource` contributes its own parts (so a
        store loader stays a loader); another source is read whole when touched.
    n_features : int
    dtype : dtype, optional
        Default: NumPy's result type of the arrays (as ``np.concatenate``); float32 when
        every source is float32 and no array says otherwise.

    Returns
    -------
    ConcatSource
        Reads give exactly the values of ``np.concatenate(recordings)``.
    """
    parts, lengths, dtypes = [], [], []
    for r in recordings:
        if isinstance(r, ConcatSource):
            parts += list(r.parts)
            lengths += [int(n) for n in r.lengths]
            dtypes.append(r.dtype)
        elif is_source(r):
            parts.append(_WholeSource(r))
            lengths.append(int(r.n_frames))
            dtypes.append(np.dtype(r.dtype))
        else:
            parts.append(r)
            lengths.append(r.shape[0])
            dtypes.append(r.dtype)
    if dtype is None:
        dtype = np.result_type(*dtypes)
    return ConcatSource(parts, lengths, n_features=n_features, dtype=dtype)


class _WholeSource:
    """A frame source as a ConcatSource part: called, it reads all of its frames."""

    def __init__(self, source):
        self.source = source

    def __call__(self):
        return self.source.read(0, self.source.n_frames)


def _score_block_size(gmm):
    """The block size ``gmm.score_samples`` uses (``score_samples_many``'s rule for one model)."""
    bs = gmm.block_size
    if isinstance(bs, numbers.Integral) and not isinstance(bs, bool) and bs >= 1:
        return int(bs)
    return auto_block_size(gmm.weights_.shape[0])


def mean_score(gmm, X, *, chunk_blocks=64):
    """``gmm.score(X)`` (mean frame log-likelihood) of an array or a frame source, bit for bit.

    A source is scored in chunks of ``chunk_blocks`` scoring blocks (so every frame is scored
    in the same block as in one pass over the whole array) and the per-frame values are summed
    in NumPy's own pairwise order (the split points depend only on the frame count, and a
    subtree of at most one chunk is ``np.add.reduce`` of its values), so the result equals
    ``float(gmm.score(np.concatenate(...)))`` while memory stays one chunk.

    Parameters
    ----------
    gmm : fitted DiagonalGMM
    X : ndarray of shape (n_frames, n_features), or a frame source
    chunk_blocks : int, default=64

    Returns
    -------
    float
    """
    if not is_source(X):
        return float(gmm.score(X))
    n = X.n_frames
    chunk = _score_block_size(gmm) * int(chunk_blocks)
    cache = {}

    def values(a, b):
        pieces = []
        for j in range(a // chunk, (b - 1) // chunk + 1):
            if j not in cache:
                for old in [i for i in cache if i < j - 1]:
                    del cache[old]
                cache[j] = gmm.score_samples(X.read(j * chunk, min((j + 1) * chunk, n)))
            lo = j * chunk
            pieces.append(cache[j][max(a, lo) - lo:min(b, lo + chunk) - lo])
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def pairwise(a, m):
        if m <= chunk:
            return np.add.reduce(values(a, a + m))
        half = m // 2
        half -= half % 8  # NumPy's split: half the count, down to a multiple of its unroll factor 8
        return pairwise(a, half) + pairwise(a + half, m - half)

    return float(pairwise(0, n) / n)


def _holdout_split(parts):
    """A class's frames as (fit part, held-out part), a fixed split of its recordings.

    Every :data:`AUTO_HOLDOUT`-th recording counting from the last is held out (at least one);
    a class of one recording holds out the last ``1 / AUTO_HOLDOUT`` of its frames. Held-out
    frames come from other recordings than the fitted ones where possible, so the criterion
    measures what a new recording gains, not the fit to the frames' neighbours.
    """
    if len(parts) >= 2:
        held = set(range(len(parts) - 1, -1, -AUTO_HOLDOUT))
        fit = [p for i, p in enumerate(parts) if i not in held]
        out = [p for i, p in enumerate(parts) if i in held]
        return np.concatenate(fit), np.concatenate(out)
    X = parts[0]
    n_out = X.shape[0] // AUTO_HOLDOUT
    return X[:X.shape[0] - n_out], X[X.shape[0] - n_out:]


def _select_one(X, parts, params, seed, hook=0):
    """Choose a class's K by held-out log-likelihood, then fit that K on all its frames.

    The candidates of :data:`N_COMPONENTS_GRID` are fitted in increasing order on the fit part
    of :func:`_holdout_split`; the search stops at the first candidate whose held-out mean
    log-likelihood per frame gains less than ``AUTO_MIN_GAIN * n_features`` over the previous
    one (or loses), and keeps the previous one. The chosen K is then fitted on all the class's
    frames with the class's own seed, so the mixture is the one ``n_components=K`` gives.

    Returns
    -------
    gmm : DiagonalGMM
    scores : dict of {int: float}
        Held-out mean log-likelihood per frame of every candidate fitted.
    at_end : bool
        True when the search did not stop: the last usable candidate was kept.
    """
    X_fit, X_out = _holdout_split(parts)
    usable = [k for k in N_COMPONENTS_GRID if k <= X_fit.shape[0]]
    scores, chosen = {}, None
    if X_out.shape[0] == 0 or not usable:  # too few frames to hold any out: one Gaussian
        usable, chosen = [1], 1
    else:
        rng = np.random.default_rng(seed.spawn(1)[0])  # the candidates' stream, apart from the final fit's
        min_gain = AUTO_MIN_GAIN * X.shape[1]
        for k in usable:
            scores[k] = DiagonalGMM(**params, n_components=k, random_state=rng).fit(X_fit).score(X_out)
            if chosen is not None and scores[k] - scores[chosen] < min_gain:
                break
            chosen = k
    gmm = DiagonalGMM(**params, n_components=chosen, random_state=np.random.default_rng(seed), verbose=hook).fit(X)
    return end_em_progress(gmm), scores, chosen == usable[-1]


def end_em_progress(gmm):
    """Tell a progress hook that ``gmm``'s fit ended, and forget the hook (a fitted model keeps no callback)."""
    if callable(gmm.verbose):
        gmm.verbose.finish(gmm.n_iter_)
        gmm.verbose = 0
    return gmm


class _EMHook:
    """A DiagonalGMM ``verbose`` callable: ``progress(stage, n_iter, max_iter)`` per EM iteration."""

    def __init__(self, progress, stage, max_iter, on_finish):
        self.progress, self.stage, self.max_iter, self.on_finish = progress, stage, max_iter, on_finish

    def __call__(self, *, init, n_iter, lower_bound, change):
        self.progress(self.stage, min(n_iter, self.max_iter - 1), self.max_iter)

    def finish(self, n_iter):
        self.progress(self.stage, n_iter, n_iter)  # done: the stage ends at the iterations it took
        self.on_finish()


def em_progress(progress, stages, max_iter, *, count="training"):
    """One DiagonalGMM ``verbose`` hook per stage (0 when ``progress`` is None).

    Each hook reports its EM iterations as ``progress(stage, n_iter, max_iter)``; when the fit
    ends (:func:`end_em_progress`), ``progress(stage, n_iter_, n_iter_)``, then, unless
    ``count`` is None, ``progress(count, n_done, len(stages))`` (thread-safe: the classes may be
    fitted in parallel threads).
    """
    if progress is None:
        return [0] * len(stages)
    import threading

    lock, done = threading.Lock(), [0]

    def finished():
        if count is not None:
            with lock:
                done[0] += 1
                progress(count, done[0], len(stages))

    if count is not None:
        progress(count, 0, len(stages))
    return [_EMHook(progress, stage, max_iter, finished) for stage in stages]


def mean_per_recording(recordings, score_frames, n_columns):
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
    n_jobs = check_n_jobs(n_jobs)
    if n_jobs == 1 or len(tasks) == 1:
        return [fn(*args) for fn, args in tasks]
    from joblib import Parallel, delayed
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return Parallel(n_jobs=min(n_jobs, len(tasks)), prefer="threads")(
            delayed(fn)(*args) for fn, args in tasks)
