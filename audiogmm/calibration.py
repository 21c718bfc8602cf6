"""Calibrators: the one place where class scores become probabilities.

A classifier's *scores* are the mean frame log-likelihoods (or log-likelihood ratios) of a
recording under each class, shape ``(n_recordings, n_classes)``. A calibrator maps them, with
the log class priors, to log-probabilities. Every probability audiogmm prints goes through the
calibrator stored with the model, so a calibration fitted at training time is used by
``predict``, ``--segment``, ``evaluate`` and ``sort`` alike.

:class:`SoftmaxCalibrator` is the default of an unfitted model: ``softmax(score + log prior)``,
which ranks classes exactly as the scores do but is not calibrated (mean frame
log-likelihoods of long recordings are far apart, those of UBM log-likelihood ratios close
together). :class:`TemperatureCalibrator` is what :func:`audiogmm.pipeline.train` fits on
out-of-fold scores (see :func:`audiogmm.evaluation.fit_calibration`): one scale on the decision
logits, so labels never change, and a length factor so that a few frames are not as certain
as a whole recording.

Every calibrator's ``log_proba(scores, log_prior, *, n_frames=None)`` takes the number of
frames behind each row (None: as long as the recordings it was fitted on).

A calibrator's state is plain JSON (:meth:`to_dict`) plus named float64 arrays
(:meth:`to_arrays`), so the model file holds no pickled object; :func:`calibrator_from_state`
rebuilds it.
"""

import numpy as np
from scipy.special import log_softmax

from .exceptions import ParameterError

__all__ = ["SoftmaxCalibrator", "TemperatureCalibrator", "CALIBRATORS", "calibrator_from_state"]


def _check_scores(scores, log_prior):
    scores = np.asarray(scores, dtype=np.float64)
    log_prior = np.asarray(log_prior, dtype=np.float64)
    if scores.ndim != 2 or log_prior.shape != scores.shape[1:]:
        raise ParameterError(f"scores must have shape (n_recordings, n_classes) matching log_prior "
                             f"{log_prior.shape}, got {scores.shape}")
    return scores, log_prior


class SoftmaxCalibrator:
    """``log_softmax(scores + log_prior)``: today's probabilities, the default calibrator.

    Examples
    --------
    >>> import numpy as np
    >>> p = SoftmaxCalibrator().log_proba(np.array([[0.0, np.log(3.0)]]), np.log([0.5, 0.5]))
    >>> np.exp(p).round(2).tolist()
    [[0.25, 0.75]]
    """

    kind = "softmax"

    def log_proba(self, scores, log_prior, *, n_frames=None):
        """Log class probabilities, shape (n_recordings, n_classes), rows summing to 1 in exp.

        ``n_frames`` (frames per row) is accepted for the protocol and not used.
        """
        scores, log_prior = _check_scores(scores, log_prior)
        return log_softmax(scores + log_prior, axis=1)

    def to_dict(self):
        """JSON-safe parameters (with ``kind``)."""
        return {"kind": self.kind}

    def to_arrays(self):
        """Named float64 arrays of the fitted state (none for the softmax)."""
        return {}

    @classmethod
    def from_state(cls, params, arrays):
        """Rebuild from :meth:`to_dict` and :meth:`to_arrays` output."""
        return cls()

    def __repr__(self):
        return f"{type(self).__name__}()"


class TemperatureCalibrator:
    """Temperature scaling fitted on out-of-fold scores, tempered for short inputs.

    ``log_softmax(f(n) * (a * (score + log_prior) + b))`` where ``a > 0`` (``scale_``) is fitted
    by minimising the negative log-likelihood of held-out labels, ``b`` (``bias_``, optional)
    are class offsets, and ``f(n) = min(n / n_ref, 1) ** beta`` tempers inputs of ``n`` frames
    shorter than the recordings it was fitted on (``n_frames_ref_``, ``length_exponent_``).

    Why the prior is inside the scaling: ``a`` multiplies the decision logits, so the most
    probable class stays the class :meth:`~audiogmm.classifier.BaseGMMClassifier.predict`
    returns, whatever the priors (with ``bias=True`` it may not, which is why the bias is off
    by default).

    Why the length factor: a score is a *mean* over frames, so a segment of a few frames has
    scores as far apart as a whole recording's but much noisier; the same ``a`` would make a
    0.3 s tail as certain as a 30 s clip. ``beta`` is fitted (in [0, 1]; 1 would be
    independent frames) on pieces of the held-out recordings.

    Parameters
    ----------
    bias : bool, default=False
        Also fit one offset per class (vector scaling with a shared scale).
    label_smoothing : float or "auto", default="auto"
        The fit's targets are ``(1 - eps) * one_hot + eps / n_classes``; ``"auto"`` is
        ``eps = 1 / (n + n_classes)`` for ``n`` fitted recordings (Platt's correction), which
        keeps ``a`` finite when the held-out scores separate perfectly and fades on large data.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s = rng.normal(size=(2000, 3))
    >>> y = np.array([rng.choice(3, p=np.exp(2 * r) / np.exp(2 * r).sum()) for r in s])
    >>> cal = TemperatureCalibrator(label_smoothing=0).fit(s, y, np.log(np.full(3, 1 / 3)))
    >>> round(cal.scale_, 1)
    2.0
    """

    kind = "temperature"

    def __init__(self, *, bias=False, label_smoothing="auto"):
        self.bias = bias
        self.label_smoothing = label_smoothing

    # -- applying ----------------------------------------------------------------------------
    def _factor(self, n_frames, n_rows):
        if n_frames is None or self.length_exponent_ == 0.0 or not self.n_frames_ref_:
            return np.ones((n_rows, 1))
        n = np.asarray(n_frames, dtype=np.float64).reshape(-1)
        if n.shape != (n_rows,) or np.any(~np.isfinite(n)) or np.any(n <= 0):
            raise ParameterError(f"n_frames must hold one positive frame count per row ({n_rows}), got {n_frames!r}")
        return (np.minimum(n / self.n_frames_ref_, 1.0) ** self.length_exponent_)[:, None]

    def _logits(self, scores, log_prior):
        z = self.scale_ * (scores + log_prior)
        return z if self.bias_ is None else z + self.bias_

    def log_proba(self, scores, log_prior, *, n_frames=None):
        """Calibrated log class probabilities, shape (n_recordings, n_classes).

        Parameters
        ----------
        scores : ndarray of shape (n_recordings, n_classes)
        log_prior : ndarray of shape (n_classes,)
        n_frames : array-like of shape (n_recordings,), optional
            Frames each row's scores average; None: as long as the fitted recordings.
        """
        scores, log_prior = _check_scores(scores, log_prior)
        if self.bias_ is not None and self.bias_.shape != log_prior.shape:
            raise ParameterError(f"this calibrator was fitted for {self.bias_.size} classes, got {log_prior.size}")
        return log_softmax(self._factor(n_frames, scores.shape[0]) * self._logits(scores, log_prior), axis=1)

    # -- fitting -----------------------------------------------------------------------------
    def _eps(self, n, n_classes):
        eps = self.label_smoothing
        if isinstance(eps, str) and eps == "auto":
            return 1.0 / (n + n_classes)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 1:
            raise ParameterError(f"label_smoothing must be 'auto' or a number in [0, 1), got {eps!r}")
        return float(eps)

    def fit(self, scores, y, log_prior, *, n_frames=None, pieces=None):
        """Fit the scale (and biases) on held-out scores, then the length exponent on pieces.

        Parameters
        ----------
        scores : ndarray of shape (n_recordings, n_classes)
            Out-of-fold scores (mean frame log-likelihoods). ``-inf`` marks a class a fold's
            classifier did not have (probability 0 in that row); rows with a NaN, a non-finite
            true-class score or a single finite class are left out.
        y : array-like of int, shape (n_recordings,)
            Column index of each recording's true class.
        log_prior : ndarray of shape (n_classes,)
        n_frames : array-like of shape (n_recordings,), optional
            Frames per recording: ``n_frames_ref_`` is their 10th percentile (shorter inputs
            are tempered). None: no length factor.
        pieces : tuple (scores, y, n_frames), optional
            Scores of shorter pieces of the held-out recordings, to fit ``length_exponent_``.

        Returns
        -------
        self
        """
        from scipy.optimize import minimize, minimize_scalar

        scores, log_prior = _check_scores(scores, log_prior)
        y = _check_targets(y, scores)
        ok = _usable(scores, y)
        scores, y = scores[ok], y[ok]
        if scores.shape[0] == 0:
            raise ParameterError("no recording with a finite score for its class: nothing to calibrate on")
        n_classes = scores.shape[1]
        present = np.isfinite(scores)
        target = _targets(y, present, self._eps(y.size, n_classes))
        z0 = np.where(present, scores + log_prior, 0.0)
        use_bias = bool(self.bias)

        def loss(theta):
            a = np.exp(theta[0])
            z = a * z0
            if use_bias:
                z = z + np.r_[0.0, theta[1:]]  # the first class's offset is fixed: softmax is shift-invariant
            lp = log_softmax(np.where(present, z, -np.inf), axis=1)
            g = (np.exp(lp) - target) / y.size  # d loss / d z (0 for absent classes)
            grad = [np.sum(g * a * z0)]
            if use_bias:
                grad += list(g.sum(axis=0)[1:])
            return -np.sum(target * np.where(present, lp, 0.0)) / y.size, np.array(grad)

        theta0 = np.zeros(1 + (n_classes - 1 if use_bias else 0))
        res = minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=[(-12.0, 12.0)] + [(None, None)] * (theta0.size - 1))
        self.scale_ = float(np.exp(res.x[0]))
        self.bias_ = np.r_[0.0, res.x[1:]] if use_bias else None
        self.n_frames_ref_ = None
        self.length_exponent_ = 0.0
        if n_frames is not None:
            n = np.asarray(n_frames, dtype=np.float64).reshape(-1)
            if n.shape != ok.shape:
                raise ParameterError(f"n_frames must hold one frame count per recording ({ok.size}), got shape {n.shape}")
            self.n_frames_ref_ = float(np.percentile(n[ok], 10))
        if pieces is not None and self.n_frames_ref_:
            p_scores, p_y, p_n = pieces
            p_scores, _ = _check_scores(p_scores, log_prior)
            p_y = _check_targets(p_y, p_scores)
            p_n = np.asarray(p_n, dtype=np.float64).reshape(-1)
            keep = _usable(p_scores, p_y) & (p_n < self.n_frames_ref_)
            if keep.any():
                p_present = np.isfinite(p_scores[keep])
                logits = np.where(p_present, self._logits(np.where(p_present, p_scores[keep], 0.0), log_prior), -np.inf)
                ratio = np.log(p_n[keep] / self.n_frames_ref_)[:, None]
                p_target = _targets(p_y[keep], p_present, self._eps(int(keep.sum()), n_classes))

                def piece_loss(beta):
                    lp = log_softmax(np.exp(beta * ratio) * logits, axis=1)
                    return -np.sum(p_target * np.where(p_present, lp, 0.0))

                self.length_exponent_ = float(minimize_scalar(piece_loss, bounds=(0.0, 1.0), method="bounded").x)
        return self

    # -- state -------------------------------------------------------------------------------
    def to_dict(self):
        """JSON-safe parameters and fitted scalars (with ``kind``)."""
        return {"kind": self.kind, "bias": bool(self.bias), "label_smoothing": self.label_smoothing,
                "scale": self.scale_, "n_frames_ref": self.n_frames_ref_, "length_exponent": self.length_exponent_}

    def to_arrays(self):
        """``{"bias": (n_classes,)}`` when class offsets were fitted, else empty."""
        return {} if self.bias_ is None else {"bias": np.asarray(self.bias_, dtype=np.float64)}

    @classmethod
    def from_state(cls, params, arrays):
        """Rebuild from :meth:`to_dict` and :meth:`to_arrays` output.

        Raises
        ------
        ParameterError
            A missing or invalid value.
        """
        try:
            cal = cls(bias=bool(params["bias"]), label_smoothing=params["label_smoothing"])
            scale = float(params["scale"])
            ref = params["n_frames_ref"]
            ref = None if ref is None else float(ref)
            beta = float(params["length_exponent"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(f"temperature calibrator state is incomplete or invalid ({exc!r})") from None
        if not (np.isfinite(scale) and scale > 0) or not (0.0 <= beta <= 1.0) or (ref is not None and not ref > 0):
            raise ParameterError(f"temperature calibrator state out of range: scale {scale}, n_frames_ref {ref}, "
                                 f"length_exponent {beta}")
        bias = arrays.get("bias")
        if cal.bias != (bias is not None):
            raise ParameterError("temperature calibrator: 'bias' flag and bias array disagree")
        if bias is not None:
            bias = np.asarray(bias, dtype=np.float64)
            if bias.ndim != 1 or not np.all(np.isfinite(bias)):
                raise ParameterError("temperature calibrator: bias must be a finite 1-D array")
        cal.scale_, cal.bias_, cal.n_frames_ref_, cal.length_exponent_ = scale, bias, ref, beta
        return cal

    def __repr__(self):
        if not hasattr(self, "scale_"):
            return f"{type(self).__name__}(bias={self.bias!r})"
        return (f"{type(self).__name__}(scale={self.scale_:.4g}, bias={self.bias!r}, "
                f"n_frames_ref={self.n_frames_ref_}, length_exponent={self.length_exponent_:.3g})")


def _check_targets(y, scores):
    y = np.asarray(y)
    if y.shape != scores.shape[:1] or y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= scores.shape[1])):
        raise ParameterError(f"y must hold one class index in [0, {scores.shape[1]}) per row ({scores.shape[0]}), "
                             f"got {y!r}")
    return y


def _usable(scores, y):
    """Rows to fit on: no NaN, a finite score for the true class and for at least one other."""
    finite = np.isfinite(scores)
    return ~np.any(np.isnan(scores), axis=1) & finite[np.arange(y.size), y] & (finite.sum(axis=1) >= 2)


def _targets(y, present, eps):
    """Smoothed one-hot targets, the smoothing spread over the classes ``present`` in each row."""
    t = present * (eps / present.sum(axis=1, keepdims=True))
    t[np.arange(y.size), y] += 1.0 - eps
    return t


#: The calibrators a model file may name, by ``kind``.
CALIBRATORS = {SoftmaxCalibrator.kind: SoftmaxCalibrator, TemperatureCalibrator.kind: TemperatureCalibrator}


def calibrator_from_state(params, arrays=None):
    """The calibrator described by ``params`` (from ``to_dict``) and ``arrays`` (``to_arrays``).

    Raises
    ------
    ParameterError
        Unknown kind or inconsistent state.
    """
    if not isinstance(params, dict) or params.get("kind") not in CALIBRATORS:
        kind = params.get("kind") if isinstance(params, dict) else params
        raise ParameterError(f"unknown calibrator {kind!r}; known: {', '.join(CALIBRATORS)}")
    return CALIBRATORS[params["kind"]].from_state(params, dict(arrays or {}))
