"""Exception and warning classes shared by every audiogmm module.

All errors raised on purpose by audiogmm derive from :class:`AudiogmmError`, so a
caller can catch the whole family with one ``except`` clause. The command-line
interface maps :class:`ParameterError` to a usage error (exit code 2) and every
other :class:`AudiogmmError` to a plain error (exit code 1).
"""

__all__ = [
    "AudiogmmError",
    "ParameterError",
    "AudioLoadError",
    "TrainingError",
    "ModelFileError",
    "NotFittedError",
    "ConvergenceWarning",
    "AudioSkippedWarning",
    "DatasetWarning",
    "CacheWarning",
    "UnknownLabelWarning",
]


class AudiogmmError(Exception):
    """Root of every error audiogmm raises on purpose."""


class ParameterError(AudiogmmError, ValueError):
    """A parameter has an invalid value; the message names it and says what is allowed."""


class AudioLoadError(AudiogmmError):
    """A recording could not be read or decoded.

    Parameters
    ----------
    path : str or path-like
        The recording that failed.
    reason : str
        What went wrong, in words a user can act on.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = str(reason)
        # a file name that is not UTF-8 (surrogate escapes) is shown as \xNN, so printing never fails
        shown = self.path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        super().__init__(f"{shown}: {self.reason}")


class TrainingError(AudiogmmError):
    """Training cannot proceed (e.g. a class with no usable audio or too few frames)."""


class ModelFileError(AudiogmmError):
    """A model file is missing, damaged, of a foreign format or of an unsupported version."""


class NotFittedError(AudiogmmError, ValueError, AttributeError):
    """An estimator was used before ``fit`` (also a ValueError and AttributeError, as in scikit-learn)."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the tolerance was met, or a component was re-seeded."""


class AudioSkippedWarning(UserWarning):
    """A recording was skipped because it could not be used."""


class DatasetWarning(UserWarning):
    """Part of a dataset is not used (loose files beside the class folders, a folder without audio)."""


class UnknownLabelWarning(UserWarning):
    """Some test recordings carry labels the model does not know: they count as errors."""


class CacheWarning(UserWarning):
    """A feature-store entry was damaged, truncated, swapped or foreign: it is recomputed, never used."""
