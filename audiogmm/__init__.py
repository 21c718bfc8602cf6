"""audiogmm: audio classification with one diagonal-covariance Gaussian mixture per class.

The public API is imported lazily, so ``import audiogmm.gmm`` (the NumPy engine) does not
pull in librosa or click::

    import audiogmm
    model = audiogmm.train("SONGS/", feature_config=audiogmm.FeatureConfig.preset("music"))
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
    "DiagonalGMM": "gmm",
    "GMMClassifier": "classifier",
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
    "FeatureCache": "cache",
    "discover": "dataset",
    "AudiogmmError": "exceptions",
    "ParameterError": "exceptions",
    "AudioLoadError": "exceptions",
    "TrainingError": "exceptions",
    "ModelFileError": "exceptions",
    "NotFittedError": "exceptions",
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
