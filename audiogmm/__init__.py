"""audiogmm: audio classification with one diagonal-covariance Gaussian mixture per class.

The public API is imported lazily, so ``import audiogmm.mixture`` (the NumPy engine) does not
pull in librosa or click::

    import audiogmm
    model = audiogmm.train("SONGS/", preset="music")   # the same recipe as `train --preset music`
    model.save("genres.agmm")
    predictions, _ = audiogmm.predict(audiogmm.load_model("genres.agmm"), ["song.ogg"])
"""

import importlib
from importlib import metadata as _metadata

try:  # one version source: pyproject.toml, read from the installed package's metadata
    __version__ = _metadata.version("audiogmm")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "DiagonalGMM": "mixture",
    "GMMClassifier": "classifier",
    "UBMClassifier": "ubm",
    "Recipe": "recipes",
    "get_recipe": "recipes",
    "make_classifier": "recipes",
    "FeatureConfig": "features",
    "extract": "features",
    "extract_file": "features",
    "TrainedModel": "persistence",
    "save_model": "persistence",
    "load_model": "persistence",
    "train": "pipeline",
    "predict": "pipeline",
    "evaluate": "pipeline",
    "extract_features": "pipeline",
    "predict_segments": "pipeline",
    "cross_validate": "pipeline",
    "sort_library": "pipeline",
    "cache_features": "pipeline",
    "FeatureCache": "cache",
    "discover": "dataset",
    "AudiogmmError": "exceptions",
    "ParameterError": "exceptions",
    "AudioLoadError": "exceptions",
    "TrainingError": "exceptions",
    "ModelFileError": "exceptions",
    "NotFittedError": "exceptions",
    "ConvergenceWarning": "exceptions",
    "AudioSkippedWarning": "exceptions",
    "DatasetWarning": "exceptions",
    "CacheWarning": "exceptions",
    "UnknownLabelWarning": "exceptions",
    "ExtractionSpec": "extraction",
    "read_index": "cache",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'audiogmm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
