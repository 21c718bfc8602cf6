"""Train, predict and evaluate on audio files: the workflows behind the command line.

Every function here takes paths, returns plain Python objects and reports progress through
an optional callback ``progress(stage, done, total)``; none of them prints. Recordings that
cannot be used (missing, corrupt, undecodable, silent-to-nothing) are skipped with an
:class:`~audiogmm.exceptions.AudioSkippedWarning` naming the file and listed in the result,
never aborting the run; a class left with no usable recording is a
:class:`~audiogmm.exceptions.TrainingError`.

Features are extracted in parallel worker processes (``n_jobs``, joblib's loky backend,
which keeps workers alive between calls and caps each worker's BLAS threads).
"""

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import softmax

from . import dataset as _dataset
from .classifier import GMMClassifier
from .exceptions import AudioLoadError, AudioSkippedWarning, ParameterError, TrainingError
from .features import FeatureConfig, extract_file
from .persistence import TrainedModel

__all__ = [
    "extract_features",
    "train",
    "predict",
    "evaluate",
    "Prediction",
    "Evaluation",
]


def _extract_one(path, config):
    """Worker: features of one file, or the reason it failed (exceptions stay in the worker)."""
    try:
        return extract_file(path, config), None
    except AudioLoadError as exc:
        return None, exc.reason
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # an unexpected decoder failure must not end the whole run
        return None, f"{type(exc).__name__}: {exc}"


def _check_jobs(n_jobs):
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ParameterError(f"jobs must be a positive int (or -1 for all cores), got {n_jobs!r}")
    return n_jobs


def _iter_features(paths, config, n_jobs, progress, stage):
    """Yield ``(index, features or None, reason or None)`` in input order."""
    n_jobs = _check_jobs(n_jobs)
    total = len(paths)
    if progress:
        progress(stage, 0, total)
    if n_jobs == 1 or total <= 1:
        results = (_extract_one(p, config) for p in paths)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs, return_as="generator", batch_size="auto")(
            delayed(_extract_one)(p, config) for p in paths
        )
    for i, (X, reason) in enumerate(results):
        if progress:
            progress(stage, i + 1, total)
        yield i, X, reason


def extract_features(paths, config, *, n_jobs=1, progress=None):
    """Features of many files, in parallel.

    Parameters
    ----------
    paths : sequence of str or Path
    config : FeatureConfig
    n_jobs : int, default=1
        Worker processes (-1: all cores).
    progress : callable(stage, done, total), optional

    Returns
    -------
    features : list of ndarray or None
        ``(n_frames, n_features)`` per file; ``None`` where the file could not be used.
    skipped : list of (str, str)
        ``(path, reason)`` of each unusable file (each also warned as AudioSkippedWarning).
    """
    features, skipped = [None] * len(paths), []
    for i, X, reason in _iter_features(list(paths), config, n_jobs, progress, "features"):
        if X is None:
            skipped.append(_skip(paths[i], reason))
        else:
            features[i] = X
    return features, skipped


def _skip(path, reason):
    warnings.warn(f"skipped {str(path)}: {reason}", AudioSkippedWarning, stacklevel=3)
    return str(path), reason


def _rows(dataset, include, exclude):
    if isinstance(dataset, (str, Path)):
        return _dataset.discover(dataset, include=include, exclude=exclude)
    return list(dataset)


def train(
    dataset,
    *,
    feature_config=None,
    n_components=8,
    max_iter=100,
    tol=1e-3,
    reg_covar=1e-3,
    n_init=1,
    priors=None,
    include=(),
    exclude=(),
    n_jobs=1,
    random_state=0,
    progress=None,
):
    """Train a classifier from a labelled dataset.

    Parameters
    ----------
    dataset : str, Path or sequence of Recording
        A folder with one sub-folder per label, a manifest, or rows from :func:`audiogmm.dataset.discover`.
    feature_config : FeatureConfig, optional
        Defaults to ``FeatureConfig()``.
    n_components, max_iter, tol, reg_covar, n_init, priors
        See :class:`~audiogmm.classifier.GMMClassifier`. ``reg_covar`` defaults to 1e-3 here:
        features are normalised per recording, so 1e-3 is a small fraction of their variance
        and keeps components from collapsing onto near-duplicate frames.
    include, exclude : sequence of str
        Glob patterns filtering the dataset's relative paths (see :func:`audiogmm.dataset.discover`).
    n_jobs : int, default=1
        Worker processes for feature extraction and threads for the per-class fits.
    random_state : int or None, default=0
        Seed of the mixtures' initialisation: the same data and seed give the same model.
    progress : callable(stage, done, total), optional

    Returns
    -------
    model : TrainedModel
        With ``summary`` holding counts, skipped files and timings.

    Raises
    ------
    ParameterError
        A bad parameter or dataset path (checked before any audio is read).
    TrainingError
        A class with no usable recording, or with fewer frames than ``n_components``.
    """
    config = FeatureConfig() if feature_config is None else feature_config
    if not isinstance(config, FeatureConfig):
        raise ParameterError(f"feature_config must be a FeatureConfig, got {type(config).__name__}")
    clf = GMMClassifier(
        n_components, max_iter=max_iter, tol=tol, reg_covar=reg_covar, n_init=n_init,
        priors=priors, random_state=random_state, n_jobs=_check_jobs(n_jobs),
    )
    clf._validate_params()
    rows = _rows(dataset, include, exclude)
    labels = sorted({r.label for r in rows})

    t0 = time.perf_counter()
    features, skipped = extract_features([r.path for r in rows], config, n_jobs=n_jobs, progress=progress)
    t_features = time.perf_counter() - t0
    usable = [(r, X) for r, X in zip(rows, features) if X is not None]
    empty = [lab for lab in labels if not any(r.label == lab for r, _ in usable)]
    if empty:
        raise TrainingError(
            f"class(es) {', '.join(map(repr, empty))} have no usable recording "
            f"({len(skipped)} file(s) were skipped as unreadable): add readable audio to them or remove them"
        )
    if progress:
        progress("training", 0, len(labels))
    t0 = time.perf_counter()
    clf.fit([X for _, X in usable], [r.label for r, _ in usable])
    t_fit = time.perf_counter() - t0
    if progress:
        progress("training", len(labels), len(labels))
    hop_s = config.hop_ms / 1000.0
    summary = {
        "dataset": str(dataset) if isinstance(dataset, (str, Path)) else None,
        "include": list(include),
        "exclude": list(exclude),
        "n_recordings": len(usable),
        "n_skipped": len(skipped),
        "skipped": [{"path": p, "reason": why} for p, why in skipped[:100]],
        "classes": {
            str(lab): {
                "recordings": int(n_rec),
                "frames": int(n_fr),
                "seconds": round(float(n_fr) * hop_s, 2),
            }
            for lab, n_rec, n_fr in zip(clf.classes_, clf.n_recordings_, clf.n_frames_)
        },
        "random_state": random_state,
        "feature_seconds": round(t_features, 3),
        "fit_seconds": round(t_fit, 3),
    }
    return TrainedModel(clf, config, summary)


@dataclass
class Prediction:
    """The outcome for one recording.

    ``label`` is None and ``error`` says why when the recording could not be used.
    ``probabilities`` and ``scores`` (mean frame log-likelihoods) follow ``classes``.
    """

    path: str
    label: str | None
    probabilities: np.ndarray | None = None
    scores: np.ndarray | None = None
    n_frames: int = 0
    error: str | None = None

    @property
    def confidence(self):
        """The top probability, or None."""
        return None if self.probabilities is None else float(self.probabilities.max())


def _predict_paths(model, paths, n_jobs, progress, stage):
    clf = model.classifier
    out = []
    for i, X, reason in _iter_features(paths, model.feature_config, n_jobs, progress, stage):
        if X is None:
            _skip(paths[i], reason)
            out.append(Prediction(str(paths[i]), None, error=reason))
            continue
        scores = clf.score_recordings([X])[0]
        proba = softmax(scores + np.log(clf.class_prior_))
        label = str(clf.classes_[int(np.argmax(proba))])
        out.append(Prediction(str(paths[i]), label, proba, scores, int(X.shape[0])))
    return out


#: The label given to a recording whose top probability is below ``min_confidence``.
UNKNOWN = "unknown"


def _check_confidence(min_confidence):
    if min_confidence is None:
        return None
    if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)) or not 0 <= min_confidence <= 1:
        raise ParameterError(f"min_confidence must be a probability between 0 and 1, got {min_confidence!r}")
    return float(min_confidence)


def _apply_confidence(preds, min_confidence):
    if min_confidence is not None:
        for p in preds:
            if p.label is not None and p.confidence < min_confidence:
                p.label = UNKNOWN
    return preds


def predict(model, paths, *, min_confidence=None, n_jobs=1, progress=None):
    """Label recordings (files, or folders walked recursively).

    Parameters
    ----------
    model : TrainedModel
    paths : sequence of str or Path
    min_confidence : float in [0, 1], optional
        Label a recording ``"unknown"`` when its top probability is lower (its probabilities
        and scores are still reported).
    n_jobs : int, default=1
    progress : callable(stage, done, total), optional

    Returns
    -------
    predictions : list of Prediction
        One per audio file found, in order.
    n_other : int
        Non-audio files found in the folders and passed over.
    """
    min_confidence = _check_confidence(min_confidence)
    audio, n_other = _dataset.find_audio(paths)
    preds = _predict_paths(model, audio, n_jobs, progress, "predicting")
    return _apply_confidence(preds, min_confidence), n_other


@dataclass
class Evaluation:
    """Scores of a model on a labelled test set.

    ``labels`` orders the rows and columns of ``confusion`` (true label by row, predicted by
    column): the model's classes, then any test label the model does not know.
    ``balanced_accuracy`` and ``macro_f1`` average over the labels present in the test set.
    """

    labels: list
    y_true: list
    y_pred: list
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    confusion: np.ndarray
    predictions: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def to_dict(self):
        """JSON-safe dict of every figure."""
        return {
            "n_recordings": len(self.y_true),
            "n_skipped": len(self.skipped),
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {
                lab: {
                    "precision": float(p),
                    "recall": float(r),
                    "f1": float(f),
                    "support": int(s),
                }
                for lab, p, r, f, s in zip(self.labels, self.precision, self.recall, self.f1, self.support)
            },
            "labels": list(self.labels),
            "confusion": self.confusion.tolist(),
            "skipped": [{"path": p, "reason": why} for p, why in self.skipped],
        }


def evaluate(model, dataset, *, include=(), exclude=(), n_jobs=1, progress=None):
    """Predict every recording of a labelled dataset and score the predictions.

    Parameters
    ----------
    model : TrainedModel
    dataset : str, Path or sequence of Recording
    include, exclude : sequence of str
    n_jobs : int, default=1
    progress : callable(stage, done, total), optional

    Returns
    -------
    evaluation : Evaluation

    Raises
    ------
    AudiogmmError
        No recording of the test set could be used.
    """
    from sklearn import metrics

    rows = _rows(dataset, include, exclude)
    preds = _predict_paths(model, [r.path for r in rows], n_jobs, progress, "evaluating")
    pairs = [(r.label, p.label) for r, p in zip(rows, preds) if p.error is None]
    skipped = [(p.path, p.error) for p in preds if p.error is not None]
    if not pairs:
        raise TrainingError(f"none of the {len(rows)} test recording(s) could be read: nothing to evaluate")
    y_true, y_pred = (list(t) for t in zip(*pairs))
    labels = list(model.classes) + sorted(set(y_true) - set(model.classes))
    p, r, f, s = metrics.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = s > 0
    return Evaluation(
        labels=labels,
        y_true=y_true,
        y_pred=y_pred,
        accuracy=float(metrics.accuracy_score(y_true, y_pred)),
        balanced_accuracy=float(np.mean(r[present])),
        macro_f1=float(np.mean(f[present])),
        precision=p,
        recall=r,
        f1=f,
        support=s,
        confusion=metrics.confusion_matrix(y_true, y_pred, labels=labels),
        predictions=[pr for pr in preds if pr.error is None],
        skipped=skipped,
    )


def sort_library(model, music_dir, into, *, mode="copy", dry_run=False, min_confidence=None, report=None,
                 n_jobs=1, progress=None):
    """Sort the audio under ``music_dir`` into ``into/<label>/`` (uncertain ones into ``into/unknown/``).

    Every file under ``music_dir`` appears exactly once in the returned entries (and in the
    CSV report written to ``report`` or ``into/audiogmm-sort-report.csv``): audio files with
    their label and what was done, unreadable ones and non-audio files as ``left``. See
    :mod:`audiogmm.sorting` for the no-loss guarantees.

    Parameters
    ----------
    model : TrainedModel
    music_dir : str or Path
    into : str or Path
        Must not be ``music_dir`` or inside it.
    mode : {"copy", "link", "move"}, default="copy"
    dry_run : bool, default=False
        Decide and describe, but touch nothing.
    min_confidence : float in [0, 1], optional
    report : str or Path, optional
    n_jobs : int, default=1
    progress : callable(stage, done, total), optional

    Returns
    -------
    entries : list of SortEntry
    report_path : Path or None
        None for a dry run.
    """
    from .sorting import Sorter, check_locations

    min_confidence = _check_confidence(min_confidence)
    music_dir, into = Path(music_dir), Path(into)
    if not music_dir.is_dir():
        raise ParameterError(f"MUSIC_DIR {str(music_dir)!r} is not a folder")
    check_locations(music_dir, into)
    sorter = Sorter(music_dir, into, mode=mode, dry_run=dry_run)
    sorter.start()  # refuses an unwritable destination before any work
    audio, other = _dataset.find_audio([music_dir], with_other=True)
    preds = _apply_confidence(_predict_paths(model, audio, n_jobs, progress, "classifying"), min_confidence)
    if progress:
        progress("sorting", 0, len(preds))
    for i, p in enumerate(preds):
        if p.error is not None:
            sorter.apply(p.path, "unreadable", note=p.error)
        else:
            sorter.apply(p.path, p.label, p.confidence)
        if progress:
            progress("sorting", i + 1, len(preds))
    for f in other:
        sorter.apply(f, "not-audio")
    entries = sorter.finish(report)
    return entries, sorter.report_path
