"""The model file: one ``.npz`` archive of plain arrays plus JSON metadata; no executable objects.

Format (``format_version`` 1)
-----------------------------
A ZIP archive written by :func:`numpy.savez` and read with ``allow_pickle=False``, so
loading a file from an untrusted source cannot run code. Members:

``metadata``
    A ``uint8`` array holding UTF-8 JSON: ``format`` (always ``"audiogmm-model"``),
    ``format_version``, ``audiogmm_version``, ``created`` (UTC, ISO 8601), ``classes``
    (label strings, in score order), ``feature_config`` (the :class:`~audiogmm.features.FeatureConfig`
    as a dict: prediction always re-extracts features with it), ``classifier`` (the
    :class:`~audiogmm.classifier.GMMClassifier` parameters), ``class_prior``, ``n_recordings``
    and ``n_frames`` per class, ``gmms`` (per class: ``n_components``, ``converged``,
    ``n_iter``, ``lower_bound``) and ``training`` (a free-form summary of the run).
``weights_<i>``, ``means_<i>``, ``variances_<i>``
    The mixture of class ``i`` as float64 arrays of shapes ``(K_i,)``, ``(K_i, D)``, ``(K_i, D)``.

``method`` in the metadata says how the mixtures were made: ``"per-class"`` (one GMM per
class trained by EM, :class:`~audiogmm.classifier.GMMClassifier`; files written before the
key existed are read as this) or ``"ubm"`` (:class:`~audiogmm.ubm.UBMClassifier`: the class
mixtures are MAP-adapted from a universal background model, stored as ``ubm_weights``,
``ubm_means``, ``ubm_variances``, and ``classifier`` holds its parameters). The layout of a
per-class file is unchanged, so the format version stays 1; a reader that predates
``method`` rejects a ``"ubm"`` file (its classifier parameters are unknown to it) with a
:class:`~audiogmm.exceptions.ModelFileError` rather than misreading it. An unknown
``method`` is a ModelFileError.

Files are written atomically: to a temporary file in the destination folder, flushed to
disk, then renamed over the destination, so a crash never leaves a half-written model
under the final name and an existing model is replaced only by a complete one.
"""

import datetime
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .classifier import GMMClassifier
from .exceptions import ModelFileError
from ._files import write_atomically
from .features import FeatureConfig
from .gmm import DiagonalGMM
from .ubm import UBMClassifier

__all__ = ["TrainedModel", "save_model", "load_model", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "audiogmm-model"
FORMAT_VERSION = 1
#: The classifier of each ``method`` recorded in a model file.
METHODS = {"per-class": GMMClassifier, "ubm": UBMClassifier}


@dataclass
class TrainedModel:
    """A fitted classifier together with the feature configuration it was trained on.

    Attributes
    ----------
    classifier : GMMClassifier
        Fitted; its ``classes_`` are strings.
    feature_config : FeatureConfig
        The features every recording must be turned into before scoring.
    summary : dict
        JSON-safe facts about training (data source, counts, skipped files, timings...).
    metadata : dict
        For a loaded model, the file's metadata (format and audiogmm versions, creation time).
    """

    classifier: GMMClassifier
    feature_config: FeatureConfig
    summary: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def classes(self):
        """The class labels, as a list of str."""
        return [str(c) for c in self.classifier.classes_]

    def save(self, path):
        """Write this model to ``path`` atomically; see :func:`save_model`."""
        return save_model(self, path)


def _version():
    from . import __version__

    return __version__


def _json_safe_params(clf):
    params = clf.get_params()
    if isinstance(params["priors"], np.ndarray):
        params["priors"] = params["priors"].tolist()
    if not (params["random_state"] is None or isinstance(params["random_state"], int)):
        params["random_state"] = None
    return params


def save_model(model, path):
    """Write ``model`` to ``path`` (conventionally ``*.agmm``), atomically.

    Parameters
    ----------
    model : TrainedModel
    path : str or Path

    Returns
    -------
    path : Path

    Raises
    ------
    ModelFileError
        The classifier is not fitted or the file cannot be written (the message names the path).
    """
    path = Path(path)
    clf = model.classifier
    if not hasattr(clf, "gmms_"):
        raise ModelFileError("cannot save an unfitted classifier: train it first")
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "audiogmm_version": _version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "classes": [str(c) for c in clf.classes_],
        "feature_config": model.feature_config.to_dict(),
        "method": "ubm" if isinstance(clf, UBMClassifier) else "per-class",
        "classifier": _json_safe_params(clf),
        "class_prior": clf.class_prior_.tolist(),
        "n_recordings": [int(n) for n in clf.n_recordings_],
        "n_frames": [int(n) for n in clf.n_frames_],
        "n_features": int(clf.n_features_in_),
        "gmms": [
            {
                "n_components": int(g.weights_.shape[0]),
                "converged": bool(g.converged_),
                "n_iter": int(g.n_iter_),
                "lower_bound": float(g.lower_bound_),
            }
            for g in clf.gmms_
        ],
        "training": model.summary,
    }
    if isinstance(clf, UBMClassifier):
        u = clf.ubm_
        meta["ubm"] = {"n_components": int(u.weights_.shape[0]), "converged": bool(u.converged_),
                       "n_iter": int(u.n_iter_), "lower_bound": float(u.lower_bound_)}
    arrays = {"metadata": np.frombuffer(json.dumps(meta, indent=1).encode("utf-8"), dtype=np.uint8)}
    for i, g in enumerate(clf.gmms_):
        arrays[f"weights_{i}"] = np.asarray(g.weights_, dtype=np.float64)
        arrays[f"means_{i}"] = np.asarray(g.means_, dtype=np.float64)
        arrays[f"variances_{i}"] = np.asarray(g.variances_, dtype=np.float64)
    if isinstance(clf, UBMClassifier):
        for name in ("weights", "means", "variances"):
            arrays[f"ubm_{name}"] = np.asarray(getattr(clf.ubm_, f"{name}_"), dtype=np.float64)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ModelFileError(f"cannot write model {str(path)!r}: folder {str(folder)!r} does not exist")
    try:
        write_atomically(path, lambda fh: np.savez(fh, **arrays))
    except OSError as exc:
        raise ModelFileError(f"cannot write model {str(path)!r}: {exc.strerror or exc}") from None
    return path


def _bad(path, why):
    return ModelFileError(f"{str(path)!r} is not a usable audiogmm model: {why}")


def load_model(path):
    """Read a model written by :func:`save_model`. Never unpickles anything.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    model : TrainedModel

    Raises
    ------
    ModelFileError
        The file is missing, damaged, of another format, or from a newer format version.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {str(path)!r} does not exist: train one with 'audiogmm train'")
    if path.is_dir():
        raise ModelFileError(f"model file {str(path)!r} is a folder, not a model file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {str(path)!r}: {exc.strerror or exc}") from None
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise _bad(path, "it is not an audiogmm model file (wrong format or damaged)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise _bad(path, f"the archive is damaged ({exc})") from None
    if "metadata" not in arrays:
        raise _bad(path, "it has no audiogmm metadata (another .npz file?)")
    try:
        meta = json.loads(arrays["metadata"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"its metadata is damaged ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise _bad(path, "its metadata does not describe an audiogmm model")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise _bad(path, f"unknown format version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} uses model format {version}, newer than this audiogmm "
            f"({_version()}, format {FORMAT_VERSION}) reads: upgrade audiogmm"
        )
    method = meta.get("method", "per-class")
    if method not in METHODS:
        raise _bad(path, f"unknown method {method!r} (this audiogmm knows {', '.join(METHODS)}): upgrade audiogmm")
    try:
        return _rebuild(meta, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"its content is inconsistent ({exc})") from None


def _rebuild(meta, arrays):
    classes = meta["classes"]
    if not isinstance(classes, list) or not classes:
        raise ValueError("no classes")
    feature_config = FeatureConfig.from_dict(meta["feature_config"])
    params = dict(meta["classifier"])
    method = meta.get("method", "per-class")
    clf = METHODS[method](**params)
    gmm_params = dict(n_components=clf.n_components, tol=clf.tol, reg_covar=clf.reg_covar, max_iter=clf.max_iter,
                      n_init=clf.n_init, init_params=clf.init_params, dtype=clf.dtype)
    n_features = int(meta["n_features"])
    gmms = []
    for i, info in enumerate(meta["gmms"]):
        w, mu, var = (np.asarray(arrays[f"{name}_{i}"], dtype=np.float64) for name in ("weights", "means", "variances"))
        k = w.shape[0] if w.ndim == 1 else -1
        if w.ndim != 1 or mu.shape != (k, n_features) or var.shape != (k, n_features):
            raise ValueError(f"class {i}: arrays of shapes {w.shape}, {mu.shape}, {var.shape} do not fit together")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(mu)) and np.all(np.isfinite(var))):
            raise ValueError(f"class {i}: non-finite parameters")
        if np.any(var <= 0) or np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-6):
            raise ValueError(f"class {i}: variances must be > 0 and weights sum to 1")
        g = DiagonalGMM(**{**gmm_params, "n_components": k})
        g.weights_, g.means_, g.variances_ = w, mu, var
        g.n_features_in_ = n_features
        g.converged_ = bool(info["converged"])
        g.n_iter_ = int(info["n_iter"])
        g.lower_bound_ = float(info["lower_bound"])
        gmms.append(g)
    if len(gmms) != len(classes):
        raise ValueError(f"{len(classes)} classes but {len(gmms)} mixtures")
    if feature_config.n_features != n_features:
        raise ValueError(f"feature config gives {feature_config.n_features} features, mixtures have {n_features}")
    clf.classes_ = np.array(classes, dtype=object).astype(str)
    clf.gmms_ = gmms
    clf.n_features_in_ = n_features
    clf.class_prior_ = np.asarray(meta["class_prior"], dtype=np.float64)
    clf.n_recordings_ = np.asarray(meta["n_recordings"], dtype=np.int64)
    clf.n_frames_ = np.asarray(meta["n_frames"], dtype=np.int64)
    if method == "per-class":  # each class's own K (they differ with n_components="auto")
        clf.n_components_ = np.array([g.weights_.shape[0] for g in gmms])
        clf.n_iter_ = np.array([g.n_iter_ for g in gmms])
        clf.bic_ = None
    if clf.class_prior_.shape != (len(classes),):
        raise ValueError("class_prior does not match the classes")
    if method == "ubm":
        w, mu, var = (np.asarray(arrays[f"ubm_{name}"], dtype=np.float64) for name in ("weights", "means", "variances"))
        if w.ndim != 1 or mu.shape != (w.shape[0], n_features) or var.shape != mu.shape:
            raise ValueError(f"UBM arrays of shapes {w.shape}, {mu.shape}, {var.shape} do not fit together")
        if not (np.all(np.isfinite(mu)) and np.all(var > 0) and np.isclose(w.sum(), 1.0, atol=1e-6)):
            raise ValueError("UBM: non-finite means, variances <= 0 or weights not summing to 1")
        ubm = DiagonalGMM(**{**gmm_params, "n_components": w.shape[0]})
        ubm.weights_, ubm.means_, ubm.variances_ = w, mu, var
        ubm.n_features_in_ = n_features
        info = meta.get("ubm") or {}
        ubm.converged_ = bool(info.get("converged", True))
        ubm.n_iter_ = int(info.get("n_iter", 0))
        ubm.lower_bound_ = float(info.get("lower_bound", float("nan")))
        clf.ubm_ = ubm
        clf._prepare()
    meta_only = {k: meta[k] for k in ("format", "format_version", "audiogmm_version", "created") if k in meta}
    return TrainedModel(clf, feature_config, dict(meta.get("training") or {}), meta_only)
