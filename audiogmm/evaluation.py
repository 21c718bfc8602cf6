"""Evaluation that does not leak: group-disjoint splits, clips of long recordings, metrics.

The pieces :func:`audiogmm.pipeline.cross_validate` (and ``bench/accuracy.py``) put
together, on features already extracted:

- :func:`group_keys`: the grouping key of each recording (speaker, track, artist...) from a
  manifest column or a file-name pattern, so that no group is in both train and test.
- :func:`kfold_splits`: k-fold cross-validation stratified by class with groups kept whole
  (scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`);
  :func:`fixed_split`: one train/test split from lists or glob patterns.
- :func:`cut_clips`: fixed-length clips of a long recording, each normalised on its own.
- :func:`run_splits`: train on each split's training part, score its test part.
- :func:`verification_metrics`: equal error rate and DET curve from one-vs-rest scores;
  :func:`classification_metrics`: accuracy, balanced accuracy, macro-F1, per-class
  precision/recall/F1 and the confusion matrix (scikit-learn's ``metrics``).

scikit-learn is imported only inside the functions that need it.
"""

from __future__ import annotations

import fnmatch
import math
import re
from pathlib import Path

import numpy as np

from .dataset import MANIFEST_SUFFIXES, read_manifest
from .exceptions import ParameterError
from .features import normalize

__all__ = [
    "group_keys", "kfold_splits", "fixed_split", "cut_clips", "clip_config", "run_splits",
    "verification_metrics", "classification_metrics", "one_vs_rest_scores",
]


# -- groups ------------------------------------------------------------------------------------
def _manifest_columns(manifest):
    """``({resolved path: row dict}, columns)`` of a manifest, or None when it is not a manifest with a header.

    Read by :func:`audiogmm.dataset.read_manifest`, the reader ``discover`` uses, so a
    manifest that trains (``#`` comments and all) also gives its group keys.
    """
    manifest = Path(manifest)
    if not (manifest.is_file() and manifest.suffix.lower() in MANIFEST_SUFFIXES):
        return None
    rows, columns, cells = read_manifest(manifest)
    if not columns:
        return None
    return {str(r.path.resolve()): row for r, row in zip(rows, cells)}, columns


def group_keys(rows, group_by, *, dataset=None):
    """The grouping key of every recording.

    Parameters
    ----------
    rows : sequence of Recording
    group_by : str or None
        The name of a column of the ``dataset`` manifest (e.g. ``speaker_or_contributor``,
        ``artist_or_composer``), or else a regular expression searched in each recording's
        path relative to the dataset (``Recording.name``): the key is the named group if the
        pattern has one, else its first group, else the whole match (e.g.
        ``'_(?P<speaker>[a-z]+)_'`` or ``'^[^/]+/'``). None: every recording is its own group.
    dataset : str or Path, optional
        The manifest the rows came from (needed for a column name).

    Returns
    -------
    keys : list of str

    Raises
    ------
    ParameterError
        The pattern is not a valid regular expression, or does not match a recording.
    """
    if group_by is None:
        return [str(r.path) for r in rows]
    if not isinstance(group_by, str) or not group_by:
        raise ParameterError(f"group_by must be a manifest column or a regular expression, got {group_by!r}")
    table = _manifest_columns(dataset) if dataset is not None else None
    if table is not None and group_by in table[1]:
        by_path, _ = table
        keys = []
        for r in rows:
            row = by_path.get(str(Path(r.path).resolve()))
            if row is None or row.get(group_by) in (None, ""):
                raise ParameterError(f"group_by column {group_by!r} has no value for {r.name!r}")
            keys.append(row[group_by])
        return keys
    try:
        pattern = re.compile(group_by)
    except re.error as exc:
        columns = f" (manifest columns: {', '.join(table[1])})" if table else ""
        raise ParameterError(f"group_by {group_by!r} is neither a manifest column{columns} nor a valid regular "
                             f"expression: {exc}") from None
    keys = []
    for r in rows:
        name = str(getattr(r, "name", r.path))
        m = pattern.search(name)
        if m is None:
            columns = f"; manifest columns are: {', '.join(table[1])}" if table else ""
            raise ParameterError(f"group_by pattern {group_by!r} does not match {name!r}{columns}")
        if pattern.groupindex:
            key = m.group(next(iter(pattern.groupindex)))
        elif pattern.groups:
            key = m.group(1)
        else:
            key = m.group(0)
        keys.append(key)
    return keys


# -- splits ------------------------------------------------------------------------------------
def kfold_splits(labels, groups, n_splits=5, *, random_state=0):
    """Stratified k-fold splits that keep every group on one side.

    Parameters
    ----------
    labels, groups : sequence of length n_recordings
    n_splits : int >= 2, default=5
        Lowered to the number of distinct groups (or of the recordings of the largest class)
        when there are fewer.
    random_state : int or None, default=0
        Shuffles the groups (StratifiedGroupKFold with ``shuffle=True``).

    Returns
    -------
    splits : list of (train_index, test_index)
        Index arrays; no group has members in both.

    Raises
    ------
    ParameterError
        ``n_splits < 2``, or fewer than two groups.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 2:
        raise ParameterError(f"n_splits must be an int >= 2, got {n_splits!r}")
    labels, groups = np.asarray(labels), np.asarray(groups)
    n_groups = np.unique(groups).size
    if n_groups < 2:
        raise ParameterError(f"cross-validation needs at least 2 groups, got {n_groups}: check group_by")
    # StratifiedGroupKFold needs some class with at least k members.
    k = min(n_splits, n_groups, int(np.unique(labels, return_counts=True)[1].max()))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=random_state is not None, random_state=random_state)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return [(tr, te) for tr, te in cv.split(np.zeros(len(labels)), labels, groups)]


def fixed_split(rows, *, test=None, train=None):
    """One train/test split from lists of recordings or glob patterns.

    Parameters
    ----------
    rows : sequence of Recording
    test : sequence of str
        Glob patterns (``*`` also matches ``/``) or exact relative paths (``Recording.name``)
        of the test recordings.
    train : sequence of str, optional
        The same for training; default: every recording not in ``test``.

    Returns
    -------
    splits : list with one (train_index, test_index)

    Raises
    ------
    ParameterError
        The test (or training) part is empty, or they overlap.
    """
    def matches(patterns):
        pats = list(patterns)
        exact = set(pats)
        return np.array([r.name in exact or str(r.path) in exact or any(fnmatch.fnmatchcase(r.name, p) for p in pats)
                         for r in rows], dtype=bool)

    if not test:
        raise ParameterError("test must list the test recordings (paths or glob patterns)")
    is_test = matches(test)
    is_train = matches(train) if train else ~is_test
    if is_train.any() and (is_train & is_test).any():
        both = [rows[i].name for i in np.flatnonzero(is_train & is_test)[:3]]
        raise ParameterError(f"the train and test lists overlap (e.g. {', '.join(both)})")
    if not is_test.any():
        raise ParameterError("no recording matches the test list: check the paths or patterns")
    if not is_train.any():
        raise ParameterError("no recording is left for training: check the train/test lists")
    return [(np.flatnonzero(is_train), np.flatnonzero(is_test))]


# -- clips -------------------------------------------------------------------------------------
def clip_config(config, clip):
    """The configuration to extract with when recordings are cut into ``clip``-second clips.

    Per-recording CMVN (``"mean"``, ``"utterance"``) is then applied to each clip by
    :func:`cut_clips`, so extraction itself runs with ``cmvn="none"``.
    """
    import dataclasses

    if clip is None or config.cmvn not in ("mean", "utterance"):
        return config
    return dataclasses.replace(config, cmvn="none")


def check_clip(clip):
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not math.isfinite(clip) or clip <= 0:
        raise ParameterError(f"clip must be a number of seconds > 0, got {clip!r}; e.g. 30")
    return float(clip)


def cut_clips(X, config, clip, frames=None):
    """Cut one recording's frames into consecutive, non-overlapping clips of ``clip`` seconds.

    Parameters
    ----------
    X : ndarray of shape (n_frames, n_features)
        Extracted with :func:`clip_config` ``(config, clip)``.
    config : FeatureConfig
        The configuration the model uses; its ``cmvn`` is applied to each clip.
    clip : float
        Seconds per clip. Only whole clips are kept (the tail shorter than ``clip`` is
        dropped), except that a recording shorter than one clip gives one clip of all of it.
    frames : ndarray of int, optional
        The index of each kept frame (with VAD); default ``arange(n_frames)``.

    Returns
    -------
    clips : list of ndarray
    """
    clip = check_clip(clip)
    per_clip = max(1, int(round(clip * config.sample_rate / config.hop_length)))
    frames = np.arange(X.shape[0]) if frames is None else np.asarray(frames)
    total = int(frames[-1]) + 1 if frames.size else 0
    if total < per_clip:
        return [normalize(np.array(X, dtype=np.float32), config)]
    ids = frames // per_clip
    out = []
    for c in range(total // per_clip):
        sel = X[ids == c]
        if sel.shape[0] == 0:  # the VAD dropped the whole clip
            continue
        out.append(normalize(np.array(sel, dtype=np.float32), config))
    return out


# -- training and scoring over splits ---------------------------------------------------------
def run_splits(features, labels, splits, make_classifier, *, progress=None):
    """Train on each split's training part and score its test part.

    Parameters
    ----------
    features : sequence of ndarray (n_frames_i, n_features)
    labels : sequence of str
    splits : sequence of (train_index, test_index)
    make_classifier : callable() -> unfitted classifier
    progress : callable(stage, done, total), optional

    Returns
    -------
    result : dict
        ``classes`` (sorted labels), ``scores`` (n_recordings, n_classes): the decision
        scores of each recording from the split that tested it (NaN for a class a split's
        training part lacks, and for recordings never tested), ``log_proba`` (the same shape:
        the log-probabilities by that split's classifier's calibrator, -inf for a class it lacks),
        ``tested`` (bool mask),
        ``y_pred`` (list, None where not tested), ``folds`` (per split: ``n_train``,
        ``n_test``, ``accuracy``).
    """
    labels = np.asarray(labels).astype(str)
    classes = np.unique(labels)
    scores = np.full((len(features), classes.size), np.nan)
    log_proba = np.full((len(features), classes.size), -np.inf)
    y_pred = [None] * len(features)
    folds = []
    if progress:
        progress("folds", 0, len(splits))
    for f, (tr, te) in enumerate(splits):
        clf = make_classifier()
        clf.fit([features[i] for i in tr], labels[tr])
        cols = np.searchsorted(classes, np.asarray(clf.classes_).astype(str))
        te_features = [features[i] for i in te]  # (n, n_classes) even for two classes:
        s = clf.score_recordings(te_features)
        d = s + np.log(clf.class_prior_)
        scores[np.ix_(te, cols)] = d
        log_proba[np.ix_(te, cols)] = clf.log_proba_from_scores(s)
        pred = np.asarray(clf.classes_).astype(str)[np.argmax(d, axis=1)]
        for i, p in zip(te, pred):
            y_pred[i] = str(p)
        folds.append({"n_train": int(len(tr)), "n_test": int(len(te)),
                      "accuracy": float(np.mean(pred == labels[te]))})
        if progress:
            progress("folds", f + 1, len(splits))
    tested = np.array([p is not None for p in y_pred])
    return {"classes": [str(c) for c in classes], "scores": scores, "log_proba": log_proba, "tested": tested,
            "y_pred": y_pred, "folds": folds}


# -- metrics -----------------------------------------------------------------------------------
def one_vs_rest_scores(y_true, scores, classes):
    """Target and non-target trials from per-class scores, as one-vs-rest log-odds.

    Each recording gives one trial per class: ``target`` when the class is its label. The
    trial's score is ``s_c - logsumexp_{c' != c} s_c'`` (the log-odds of class ``c``
    against the others, from ``softmax(scores)``), which removes each recording's own offset
    so that scores are comparable across recordings. NaN scores (classes a split did not
    train) are left out.

    Returns
    -------
    y : ndarray of bool
        True for target trials.
    s : ndarray of float
    """
    from scipy.special import logsumexp

    scores = np.asarray(scores, dtype=np.float64)
    classes = [str(c) for c in classes]
    y_true = np.asarray(y_true).astype(str)
    ys, ss = [], []
    for i in range(scores.shape[0]):
        row = scores[i]
        ok = np.isfinite(row)
        if ok.sum() < 2:
            continue
        for c in np.flatnonzero(ok):
            others = ok.copy()
            others[c] = False
            ss.append(row[c] - logsumexp(row[others]))
            ys.append(classes[c] == y_true[i])
    return np.array(ys, dtype=bool), np.array(ss, dtype=np.float64)


def verification_metrics(y, s):
    """Equal error rate and DET curve of binary trials.

    Parameters
    ----------
    y : array-like of bool
        True for target trials.
    s : array-like of float
        Higher means more likely a target.

    Returns
    -------
    metrics : dict
        ``eer`` (float in [0, 1]: where the miss and false-alarm rates are equal, linearly
        interpolated on the ROC; 0 for perfectly separated scores, 0.5 for uninformative
        ones), ``eer_threshold``, and ``det`` = ``{"false_alarm": [...], "miss": [...],
        "threshold": [...]}`` (:func:`sklearn.metrics.det_curve`). None when there are no
        target or no non-target trials.

    Examples
    --------
    >>> verification_metrics([True, True, False, False], [2.0, 3.0, 0.0, 1.0])["eer"]
    0.0
    >>> verification_metrics([True, False], [1.0, 1.0])["eer"]
    0.5
    """
    from sklearn import metrics

    y = np.asarray(y, dtype=bool)
    s = np.asarray(s, dtype=np.float64)
    if y.all() or not y.any():
        return None
    fpr, tpr, thr = metrics.roc_curve(y, s)
    fnr = 1.0 - tpr
    diff = fnr - fpr  # decreasing from 1 (at fpr=0) to -1 (at fpr=1)
    j = int(np.flatnonzero(diff <= 0)[0])
    if diff[j] == 0 or j == 0:
        eer, t = float(fpr[j]), float(thr[j])
    else:  # the segment between points j-1 and j crosses fnr == fpr
        a = diff[j - 1] / (diff[j - 1] - diff[j])
        eer = float(fpr[j - 1] + a * (fpr[j] - fpr[j - 1]))
        t = float(thr[j]) if not np.isfinite(thr[j - 1]) else float(thr[j - 1] + a * (thr[j] - thr[j - 1]))
    fa, miss, dthr = metrics.det_curve(y, s)
    return {"eer": eer, "eer_threshold": t,
            "det": {"false_alarm": fa.tolist(), "miss": miss.tolist(), "threshold": dthr.tolist()}}


def classification_metrics(y_true, y_pred, labels):
    """Accuracy, balanced accuracy, macro-F1, per-class P/R/F1/support and the confusion matrix.

    ``labels`` orders the per-class arrays and the confusion matrix (rows: true, columns:
    predicted). Balanced accuracy and macro-F1 average over the labels present in ``y_true``.
    """
    from sklearn import metrics

    p, r, f, s = metrics.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = s > 0
    return {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(np.mean(r[present])),
        "macro_f1": float(np.mean(f[present])),
        "precision": p, "recall": r, "f1": f, "support": s,
        "confusion": metrics.confusion_matrix(y_true, y_pred, labels=labels),
    }
