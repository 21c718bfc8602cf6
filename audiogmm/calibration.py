"""Calibrators: the one place where class scores become probabilities.

A classifier's *scores* are the mean frame log-likelihoods (or log-likelihood ratios) of a
recording under each class, shape ``(n_recordings, n_classes)``. A calibrator maps them, with
the log class priors, to log-probabilities. Every probability audiogmm prints goes through the
calibrator stored with the model, so a calibration fitted at training time is used by
``predict``, ``--segment``, ``evaluate`` and ``sort`` alike.

:class:`SoftmaxCalibrator` is the default: ``softmax(score + log prior)``, which ranks classes
exactly as the scores do but is not calibrated (mean frame log-likelihoods of long
recordings are far apart, those of UBM log-likelihood ratios close together).

A calibrator's state is plain JSON (:meth:`to_dict`) plus named float64 arrays
(:meth:`to_arrays`), so the model file holds no pickled object; :func:`calibrator_from_state`
rebuilds it.
"""

import numpy as np
from scipy.special import log_softmax

from .exceptions import ParameterError

__all__ = ["SoftmaxCalibrator", "CALIBRATORS", "calibrator_from_state"]


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

    def log_proba(self, scores, log_prior):
        """Log class probabilities, shape (n_recordings, n_classes), rows summing to 1 in exp."""
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


#: The calibrators a model file may name, by ``kind``.
CALIBRATORS = {SoftmaxCalibrator.kind: SoftmaxCalibrator}


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
