"""Train, predict and evaluate on audio files: the workflows behind the command line.

Every function here takes paths, returns plain Python objects and reports progress through
an optional callback ``progress(stage, done, total)``; none of them prints. Recordings that
cannot be used (missing, corrupt, undecodable, silent-to-nothing) are skipped with an
:class:`~audiogmm.exceptions.AudioSkippedWarning` naming the file and listed in the result,
never aborting the run; a class left with no usable recording is a
:class:`~audiogmm.exceptions.TrainingError`.

Features are extracted by :mod:`audiogmm.extraction`: in parallel worker processes
(``n_jobs``, joblib's loky backend, which keeps workers alive between calls and caps each
worker's BLAS threads) or as tasks of a Dask client (``executor=``).
"""

import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import dataset as _dataset
from . import extraction as _extraction
from .cache import FeatureCache
from .exceptions import AudiogmmError, AudioSkippedWarning, ParameterError, TrainingError, UnknownLabelWarning
from .features import FeatureConfig
from ._validation import check_n_jobs
from ._dask import DaskExecutor, as_executor, client_for, parse_scheduler
from . import evaluation as _evaluation
from .persistence import TrainedModel
from . import recipes as _recipes
from .classifier import BaseGMMClassifier
from .mixture import ConcatSource

__all__ = [
    "extract_features",
    "extract_clips",
    "cache_features",
    "train",
    "predict",
    "predict_segments",
    "find_inputs",
    "evaluate",
    "cross_validate",
    "default_choice",
    "Prediction",
    "Segment",
    "Timeline",
    "Evaluation",
    "DaskExecutor",
    "client_for",
]


def _check_cache_dir(cache_dir):
    """A FeatureCache for ``cache_dir`` (created if missing), or None."""
    if cache_dir is None:
        return None
    if not isinstance(cache_dir, (str, Path)) or str(cache_dir) == "":
        raise ParameterError(f"cache_dir must be None or a folder path, got {cache_dir!r}")
    return FeatureCache(cache_dir)


def _check_jobs(n_jobs):
    """Worker processes for ``n_jobs`` (the package's one rule: :func:`audiogmm._validation.check_n_jobs`)."""
    return check_n_jobs(n_jobs, name="jobs")


def _iter_features(paths, config, n_jobs, progress, stage, cache_dir=None, with_frames=False, excerpts=None,
                   executor=None):
    """Yield ``(index, features or None, frames or None, reason or None)`` in input order.

    See :func:`audiogmm.extraction.iter_features` (cached files are read here; the misses
    go to ``n_jobs`` workers or the ``executor``, which write the store entries themselves).
    """
    spec = _extraction.ExtractionSpec(config, cache_dir=cache_dir, with_frames=with_frames, excerpts=excerpts)
    for r in _extraction.iter_features(paths, spec, n_jobs=_check_jobs(n_jobs), executor=executor,
                                       progress=progress, stage=stage):
        yield r.index, r.X, r.frames, r.reason


def extract_features(paths, config, *, n_jobs=1, cache_dir=None, progress=None, executor=None):
    """Features of many files, in parallel and through an on-disk cache.

    Parameters
    ----------
    paths : sequence of str or Path
    config : FeatureConfig
    n_jobs : int, default=1
        Worker processes (-1: all cores), each with one BLAS thread; files travel to the
        workers in batches.
    cache_dir : str or Path, optional
        Feature store (see :mod:`audiogmm.cache`): files already there are read back, the
        others are extracted and stored. Created if missing.
    progress : callable(stage, done, total), optional
    executor : distributed.Client, optional
        Extract the misses as Dask tasks (see :func:`audiogmm.extraction.iter_features`;
        ``n_jobs`` is then unused). Needs ``cache_dir`` on a file system the workers share;
        :func:`audiogmm._dask.client_for` makes one from a scheduler address.

    Returns
    -------
    features : list of ndarray or None
        ``(n_frames, n_features)`` per file; ``None`` where the file could not be used.
    skipped : list of (str, str)
        ``(path, reason)`` of each unusable file (each also warned as AudioSkippedWarning).
    """
    if not isinstance(config, FeatureConfig):
        raise ParameterError(f"config must be a FeatureConfig, got {type(config).__name__}")
    _check_cache_dir(cache_dir)
    paths = list(paths)
    features, skipped = [None] * len(paths), []
    for i, X, _, reason in _iter_features(paths, config, n_jobs, progress, "features", cache_dir,
                                          executor=executor):
        if X is None:
            skipped.append(_skip(paths[i], reason))
        else:
            features[i] = X
    return features, skipped


def _labelled_paths(data, include, exclude):
    """``(paths, labels)`` of the audio in ``data``; a label is None where none is known."""
    items = [data] if isinstance(data, (str, Path)) else list(data)
    paths, labels = [], []
    for item in map(Path, items):
        if (item.is_file() and item.suffix.lower() in _dataset.MANIFEST_SUFFIXES) or (
                item.is_dir() and (include or exclude)):
            rows = _dataset.discover(item, include=include, exclude=exclude)
            paths += [r.path for r in rows]
            labels += [r.label for r in rows]
        else:
            found = _dataset.find_audio([item])[0]
            paths += found
            # a folder's sub-folder names are its labels (the folder-per-label convention)
            labels += [_folder_label(Path(p), item) for p in found]
    return paths, labels


def _folder_label(path, root):
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 else None


def cache_features(data, config, cache_dir, *, include=(), exclude=(), n_jobs=1, progress=None, executor=None):
    """Extract the features of a corpus into a feature store and index what it holds.

    Parameters
    ----------
    data : str, Path or sequence of them
        Audio files, folders (walked recursively) and/or manifests (``.csv``/``.tsv``/``.txt``).
    config : FeatureConfig
        The configuration the later ``train``/``predict`` runs will use: the store is keyed
        on it.
    cache_dir : str or Path
        Created if missing.
    include, exclude : sequence of str
        Glob patterns applied to manifests and labelled folders (see :func:`audiogmm.dataset.discover`).
    n_jobs : int, default=1
    progress : callable(stage, done, total), optional
    executor : distributed.Client, optional
        As :func:`extract_features`.

    Returns
    -------
    summary : dict
        ``n_files``, ``n_cached`` (already there and valid), ``n_extracted``, ``n_skipped``,
        ``frames``, ``skipped`` (``[{"path", "reason"}]``) and ``index`` (the index file,
        which lists every stored recording: see :mod:`audiogmm.cache`, read it back with
        :func:`audiogmm.cache.read_index`).

    Raises
    ------
    ParameterError
        A missing path, a bad manifest, a bad ``cache_dir`` or parameter.
    """
    if not isinstance(config, FeatureConfig):
        raise ParameterError(f"config must be a FeatureConfig, got {type(config).__name__}")
    if cache_dir is None:
        raise ParameterError("cache_dir is required: the folder to write the features to")
    cache = _check_cache_dir(cache_dir)
    _check_jobs(n_jobs)
    paths, labels = _labelled_paths(data, include, exclude)
    skipped, rows, frames, n_cached = [], [], 0, 0
    config_id = cache.config_id(config)
    spec = _extraction.ExtractionSpec(config, cache_dir=cache_dir)
    # load=False: no features travel back or are read here, the entries' headers say enough
    for r in _extraction.iter_features(paths, spec, n_jobs=_check_jobs(n_jobs), executor=executor,
                                       progress=progress, stage="features", load=False):
        if r.reason is not None:
            skipped.append(_skip(paths[r.index], r.reason))
            continue
        frames += r.n_frames
        n_cached += r.cached
        if r.key is not None and (r.cached or cache.entry_path(r.key).is_file()):
            rows.append({"path": os.path.realpath(paths[r.index]), "label": labels[r.index], "key": r.key,
                         "n_frames": r.n_frames, "n_features": config.n_features,
                         "dtype": "float32", "config": config_id})
    index = cache.write_index(rows)
    return {
        "n_files": len(paths),
        "n_cached": n_cached,
        "n_extracted": len(paths) - n_cached - len(skipped),
        "n_skipped": len(skipped),
        "frames": int(frames),
        "skipped": [{"path": p, "reason": why} for p, why in skipped],
        "index": str(index),
    }


def _skip(path, reason):
    warnings.warn(f"skipped {str(path)}: {reason}", AudioSkippedWarning, stacklevel=3)
    return str(path), reason


def _rows(dataset, include, exclude):
    if isinstance(dataset, (str, Path)):
        return _dataset.discover(dataset, include=include, exclude=exclude)
    return list(dataset)


#: :func:`default_choice` reads the headers of at most this many recordings (a seeded sample).
DEFAULT_CHOICE_SAMPLE = 64


def default_choice(dataset, *, include=(), exclude=(), max_files=DEFAULT_CHOICE_SAMPLE, random_state=0):
    """Which preset the no-preset default trains on ``dataset``, and why.

    The median duration of the recordings (read from the headers of a seeded sample of at most
    ``max_files``; unreadable ones are passed over) decides:
    :func:`audiogmm.recipes.default_preset`.

    Parameters
    ----------
    dataset : str, Path or sequence of Recording or of paths
        As :func:`train`'s, or the audio files themselves.
    include, exclude : sequence of str
    max_files : int, default=DEFAULT_CHOICE_SAMPLE (64)
    random_state : int, default=0

    Returns
    -------
    choice : dict
        ``preset`` ("speech" or "music"), ``median_seconds`` (None if no header could be
        read: then the music recipe, :data:`audiogmm.recipes.DEFAULT_RECIPE`), ``n_measured``
        and ``rule`` (a sentence for the user).
    """
    from .audio import duration
    from .exceptions import AudioLoadError

    paths = [getattr(r, "path", r) for r in _rows(dataset, include, exclude)]  # rows, or plain paths
    if len(paths) > max_files:
        pick = np.sort(np.random.default_rng(random_state).choice(len(paths), max_files, replace=False))
        paths = [paths[i] for i in pick]
    seconds = []
    for path in paths:
        try:
            seconds.append(duration(path))
        except AudioLoadError:
            continue  # reported, with its reason, when the features are extracted
    median = float(np.median(seconds)) if seconds else None
    preset = _recipes.default_preset(median)
    if median is None:
        rule = "no recording's duration could be read: the music recipe"
    else:
        kind = "short, like speech" if preset == "speech" else "long, like music"
        rule = (f"the recordings are {kind} (median {median:.1f} s; the threshold is "
                f"{_recipes.AUTO_MUSIC_SECONDS:g} s): the {preset} recipe")
    return {"preset": preset, "median_seconds": None if median is None else round(median, 3),
            "n_measured": len(seconds), "rule": rule}


def _chosen_recipe(rows, feature_config, params):
    """``(default_choice(rows), the recipe it names with feature_config and params over it)``."""
    choice = default_choice(rows)
    return choice, _recipes.get_recipe(None, median_seconds=choice["median_seconds"], features=feature_config,
                                       **params)


def _resolve_recipe(recipe, preset, feature_config, params):
    """The recipe of a workflow call: a Recipe, an unfitted classifier, or a preset plus overrides.

    Returns ``(recipe, classifier_or_None)``: an estimator given as ``recipe`` is used as it is
    (its own ``random_state`` and ``n_jobs``), with ``feature_config`` or the default features.
    """
    if feature_config is not None and not isinstance(feature_config, FeatureConfig):
        raise ParameterError(f"feature_config must be a FeatureConfig, got {type(feature_config).__name__}")
    if isinstance(recipe, BaseGMMClassifier):
        if preset is not None or params:
            raise ParameterError("give either an estimator as recipe or preset/parameters, not both")
        recipe.validate_params()
        r = _recipes.Recipe(feature_config or FeatureConfig(), recipe.method,
                            {k: v for k, v in recipe.get_params().items() if k in _recipes.DEFAULT_PARAMS})
        return r, recipe
    if recipe is None:
        recipe = _recipes.get_recipe(preset, features=feature_config, **params)
    elif isinstance(recipe, _recipes.Recipe):
        if preset is not None:
            raise ParameterError("give either a recipe or a preset, not both")
        recipe = recipe.replace(features=feature_config, **params)
    else:
        raise ParameterError(f"recipe must be a Recipe, an unfitted classifier or None, got {type(recipe).__name__}")
    return recipe, None


def train(
    dataset,
    recipe=None,
    *,
    preset=None,
    feature_config=None,
    clip=None,
    include=(),
    exclude=(),
    n_jobs=1,
    random_state=0,
    cache_dir=None,
    progress=None,
    calibrate=True,
    group_by=None,
    out_of_core=False,
    executor=None,
    scheduler=None,
    **params,
):
    """Train a classifier from a labelled dataset, and calibrate its probabilities.

    Parameters
    ----------
    dataset : str, Path or sequence of Recording
        A folder with one sub-folder per label, a manifest, or rows from :func:`audiogmm.dataset.discover`.
    recipe : Recipe or unfitted classifier, optional
        What to train (:mod:`audiogmm.recipes`); default: ``preset`` with ``params`` over it.
    preset : {"speech", "music"}, optional
        A named recipe, features and classifier together (the same as ``--preset`` of the
        command line). None (and no ``recipe``): the preset is chosen from the recordings'
        median duration, :func:`default_choice` (recorded in ``summary["default_choice"]``);
        ``params`` and ``feature_config`` still apply over it.
    feature_config : FeatureConfig, optional
        Replaces the recipe's features.
    **params
        Recipe parameters over the preset's: ``method``, ``n_components``, ``max_iter``,
        ``tol``, ``reg_covar``, ``n_init``, ``priors``, ``relevance_factor``, ``top_c``,
        ``adapt`` (see :data:`audiogmm.recipes.DEFAULT_PARAMS`).
    include, exclude : sequence of str
        Glob patterns filtering the dataset's relative paths (see :func:`audiogmm.dataset.discover`).
    n_jobs : int, default=1
        Worker processes for feature extraction and threads for the per-class fits.
    random_state : int or None, default=0
        Seed of the mixtures' initialisation: the same data and seed give the same model.
    cache_dir : str or Path, optional
        Feature cache folder; see :func:`extract_features`.
    progress : callable(stage, done, total), optional
    clip : float, optional
        Cut every recording into consecutive clips of this many seconds (each normalised on
        its own; a tail shorter than a clip is dropped) and train on the clips.
    calibrate : bool, default=True
        Fit the model's probabilities on out-of-fold scores
        (:func:`audiogmm.evaluation.fit_calibration`: the recipe is trained
        :data:`~audiogmm.evaluation.CALIBRATION_SPLITS` more times, on 2/3 of the data each),
        so that a top probability of 0.8 means 80 % right on new recordings. Skipped (the
        softmax kept, the reason in ``summary["calibration"]``) when a class has fewer than
        two recordings or groups. False: the uncalibrated softmax.
    group_by : str, optional
        Calibration folds keep recordings with the same key together (a manifest column or a
        file-name pattern, as :func:`cross_validate`'s), so that confidence reflects accuracy
        on *new* speakers or tracks. Default: each file is its own group.
    out_of_core : bool, default=False
        Train from the feature store without holding the features in memory: extraction
        only fills ``cache_dir``, each class is read chunk by chunk from its entries (one
        memory map per read, none kept), the per-frame EM state lives in a scratch folder
        inside the store (removed afterwards). The model is identical to in-memory training
        on the same data. Needs ``cache_dir``; not with ``clip`` or ``n_components="auto"``.
        Never switched on automatically: how many frames a corpus holds is known only after
        extraction, and the user knows best whether the machine has memory to spare.
    executor : distributed.Client, DaskExecutor or executor, optional
        Runs the EM of the fit as tasks (a ``distributed.Client`` is wrapped in
        :class:`DaskExecutor`): one task per fixed partition of frames, statistics folded here
        in a fixed order, so the model is identical to the in-process one. Features are still
        extracted here (``n_jobs``), and the calibration folds are fitted here.
    scheduler : str, optional
        Instead of ``executor``: a Dask scheduler address (``tcp://HOST:PORT``) or ``local:N``
        (a local cluster of N worker processes), connected for this call
        (:func:`client_for`; needs ``pip install "audiogmm[dask]"``).

    Returns
    -------
    model : TrainedModel
        With ``summary`` holding counts, skipped files, timings and ``calibration``.

    Raises
    ------
    ParameterError
        A bad parameter or dataset path (checked before any audio is read).
    TrainingError
        A class with no usable recording, or with fewer frames than ``n_components``.
    """
    n_jobs = _check_jobs(n_jobs)
    chosen = recipe is None and preset is None  # the default: its preset is chosen from the data below
    recipe, clf = _resolve_recipe(recipe, preset, feature_config, params)
    from_recipe = clf is None
    if clf is None:
        clf = recipe.make_classifier(random_state=random_state, n_jobs=n_jobs)
    config = recipe.features
    clip = _evaluation.check_clip(clip)
    cache = _check_cache_dir(cache_dir)
    _check_out_of_core(out_of_core, cache, clip, clf)
    if not isinstance(calibrate, bool):
        raise ParameterError(f"calibrate must be True or False, got {calibrate!r}")
    executor = as_executor(executor)
    if scheduler is not None:
        if executor is not None:
            raise ParameterError("give either executor or scheduler, not both")
        parse_scheduler(scheduler)
        with client_for(scheduler) as client:  # connected before extraction: a bad address fails early
            again = {"feature_config": feature_config, **params} if chosen else {}
            return train(dataset, None if chosen else recipe if from_recipe else clf, **again,
                         clip=clip, include=include, exclude=exclude,
                         n_jobs=n_jobs, random_state=random_state, cache_dir=cache_dir, progress=progress,
                         calibrate=calibrate, group_by=group_by, out_of_core=out_of_core,
                         executor=DaskExecutor(client))
    rows = _rows(dataset, include, exclude)
    labels = sorted({r.label for r in rows})
    if len(labels) < 2:  # a classifier of one class would give every recording that label
        raise TrainingError(
            f"the dataset has one class ({', '.join(map(repr, labels))}, {len(rows)} recording(s)): a classifier "
            f"needs at least two; add a sub-folder (or manifest label) per class"
        )
    groups = _evaluation.group_keys(rows, group_by, dataset=dataset if isinstance(dataset, (str, Path)) else None)
    choice = None
    if chosen:
        choice, recipe = _chosen_recipe(rows, feature_config, params)
        clf = recipe.make_classifier(random_state=random_state, n_jobs=n_jobs)
        config = recipe.features

    t0 = time.perf_counter()
    if out_of_core:
        features, skipped = _stored_sources([r.path for r in rows], config, cache, n_jobs, progress)
    else:
        features, skipped = extract_clips([r.path for r in rows], config, clip, n_jobs=n_jobs, cache_dir=cache_dir,
                                          progress=progress)
    t_features = time.perf_counter() - t0
    usable = [(r, X) for r, Xs in zip(rows, features) if Xs is not None for X in Xs]
    usable_groups = [g for g, Xs in zip(groups, features) if Xs is not None for _ in Xs]
    empty = [lab for lab in labels if not any(r.label == lab for r, _ in usable)]
    if empty:
        raise TrainingError(
            f"class(es) {', '.join(map(repr, empty))} have no usable recording "
            f"({len(skipped)} file(s) were skipped as unreadable): add readable audio to them or remove them"
        )
    t0 = time.perf_counter()
    fit_kwargs = {} if executor is None else {"executor": executor}  # an estimator of the user's may lack it
    if out_of_core:
        scratch = tempfile.mkdtemp(prefix=".train-scratch-", dir=cache.directory)
        try:
            clf.fit([X for _, X in usable], [r.label for r, _ in usable], progress=progress, scratch_dir=scratch,
                    **fit_kwargs)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    else:
        clf.fit([X for _, X in usable], [r.label for r, _ in usable], progress=progress, **fit_kwargs)
    t_fit = time.perf_counter() - t0
    calibration, t_cal = {"kind": "softmax", "reason": "calibrate=False"}, 0.0
    if calibrate:
        t0 = time.perf_counter()
        if from_recipe:
            def make():
                return recipe.make_classifier(random_state=random_state, n_jobs=n_jobs)
        else:
            def make():
                return type(clf)(**clf.get_params())
        calibrator, calibration = _evaluation.fit_calibration(
            [X for _, X in usable], [r.label for r, _ in usable], usable_groups, make,
            log_prior=np.log(clf.class_prior_), random_state=random_state, progress=progress)
        if calibrator is not None:
            clf.calibrator_ = calibrator
        t_cal = time.perf_counter() - t0
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
        "method": recipe.method,
        "preset": recipe.name,
        "default_choice": choice,
        "clip": clip,
        "out_of_core": bool(out_of_core),
        "feature_seconds": round(t_features, 3),
        "fit_seconds": round(t_fit, 3),
        "calibration_seconds": round(t_cal, 3),
        "group_by": group_by,
        "calibration": calibration,
    }
    if getattr(clf, "n_components_", None) is not None:  # per class: K (chosen by BIC with "auto")
        for lab, k in zip(clf.classes_, clf.n_components_):
            summary["classes"][str(lab)]["n_components"] = int(k)
        if getattr(clf, "heldout_scores_", None) is not None:
            summary["n_components"] = "auto"
            summary["heldout_loglik"] = {str(lab): {str(k): round(float(v), 4) for k, v in values.items()}
                                         for lab, values in zip(clf.classes_, clf.heldout_scores_)}
    return TrainedModel(clf, config, summary)


def _check_out_of_core(out_of_core, cache, clip, clf):
    """Refuse what out-of-core training cannot do, before any audio is read."""
    if not isinstance(out_of_core, bool):
        raise ParameterError(f"out_of_core must be True or False, got {out_of_core!r}")
    if not out_of_core:
        return
    if cache is None:
        raise ParameterError("out_of_core needs cache_dir (--cache STORE): the features are read from the "
                             "feature store instead of memory")
    if clip is not None:
        raise ParameterError(f"out_of_core does not support clip={clip!r}: clips are cut and normalised in "
                             f"memory; train without clip, or without out_of_core")
    if isinstance(getattr(clf, "n_components", None), str):
        raise ParameterError("out_of_core needs an int n_components, not 'auto' (the BIC selection works on "
                             "arrays in memory)")


def _stored_sources(paths, config, cache, n_jobs, progress):
    """Fill the store with the features of ``paths``; per file ``[source]`` (or None) and the skipped.

    Each source is a :class:`~audiogmm.mixture.ConcatSource` of one store loader: it opens its
    entry (memory-mapped, checked) at every read and keeps nothing open between reads.
    """
    spec = _extraction.ExtractionSpec(config, cache_dir=cache.directory)
    sources, skipped = [None] * len(paths), []
    d = config.n_features
    for r in _extraction.iter_features(paths, spec, n_jobs=n_jobs, progress=progress, stage="features",
                                       load=False):
        if r.reason is not None:
            skipped.append(_skip(paths[r.index], r.reason))
        elif r.key is None or not cache.entry_path(r.key).is_file():
            # the store could not take it (not writable, or the file changed while read)
            skipped.append(_skip(paths[r.index], "its features could not be stored in the feature store "
                                                 f"{str(cache.directory)!r} (is it writable?)"))
        else:
            sources[r.index] = [ConcatSource([cache.loader(r.key, n_features=d)], [r.n_frames], n_features=d,
                                             dtype=np.float32)]
    return sources, skipped


def extract_clips(paths, config, clip=None, *, n_jobs=1, cache_dir=None, progress=None, stage="features"):
    """Features of many files, each as a list of clips.

    Parameters
    ----------
    paths : sequence of str or Path
    config : FeatureConfig
    clip : float, optional
        Seconds per clip (see :func:`audiogmm.evaluation.cut_clips`); None: one item per file.
    n_jobs, cache_dir, progress
        As :func:`extract_features`.

    Returns
    -------
    features : list of (list of ndarray) or None
        Per file, its clips' feature matrices (one matrix without ``clip``); None where the
        file could not be used.
    skipped : list of (str, str)
    """
    if clip is None:
        features, skipped = extract_features(paths, config, n_jobs=n_jobs, cache_dir=cache_dir, progress=progress)
        return [None if X is None else [X] for X in features], skipped
    out, skipped = [], []
    for i, X, frames, reason in _iter_features(paths, _evaluation.clip_config(config, clip), n_jobs, progress,
                                               stage, cache_dir, with_frames=True):
        if X is None:
            skipped.append(_skip(paths[i], reason))
            out.append(None)
        else:
            out.append(_evaluation.cut_clips(X, config, clip, frames) or None)
    return out, skipped


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


def _check_excerpts(excerpts):
    if excerpts is None:
        return None
    try:
        n, seconds = excerpts
    except (TypeError, ValueError):
        raise ParameterError(f"excerpts must be None or (n_excerpts, seconds), got {excerpts!r}") from None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ParameterError(f"n_excerpts must be an int >= 0 (0: whole recordings), got {n!r}")
    from .audio import MIN_EXCERPT_SECONDS

    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not np.isfinite(seconds) \
            or not seconds >= MIN_EXCERPT_SECONDS:
        raise ParameterError(f"excerpt seconds must be a number >= {MIN_EXCERPT_SECONDS} (one analysis window), "
                             f"got {seconds!r}; e.g. 30")
    return None if n == 0 else (int(n), float(seconds))


def _predict_paths(model, paths, n_jobs, progress, stage, cache_dir=None, excerpts=None):
    clf = model.classifier
    out = []
    for i, X, _, reason in _iter_features(paths, model.feature_config, n_jobs, progress, stage, cache_dir,
                                          excerpts=excerpts):
        if X is None:
            _skip(paths[i], reason)
            out.append(Prediction(str(paths[i]), None, error=reason))
        else:
            out.append(_prediction(clf, str(paths[i]), X))
    return out


def _prediction(clf, name, X):
    """The Prediction of one recording (or clip) ``X`` of shape (n_frames, n_features)."""
    scores = clf.score_recordings([X])[0]
    proba = np.exp(clf.log_proba_from_scores(scores[None], n_frames=[X.shape[0]])[0])
    label = str(clf.classes_[int(np.argmax(proba))])
    return Prediction(name, label, proba, scores, int(X.shape[0]))


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


#: ``(n_excerpts, seconds)`` a long recording is scored on by default: a recording longer
#: than 2 minutes is represented by 4 excerpts of 30 s, one from the middle of each quarter.
DEFAULT_EXCERPTS = (4, 30.0)


def _select(item, include, exclude):
    """The files one path given names, split by the ``include``/``exclude`` glob patterns.

    A manifest gives its recordings (labels unused; in its order, see
    :func:`audiogmm.dataset.discover`), a folder its audio files (walked recursively), a file
    itself. Patterns match each file's path relative to the folder or manifest (a file given by
    itself: its path as given), as for training.

    Returns
    -------
    kept, left_out : list of Path
        The audio files the patterns keep and those they leave out.
    other : list of Path
        Non-audio files found in a folder (never matched: they are passed over either way).

    Raises
    ------
    ParameterError
        ``item`` does not exist, or a manifest is malformed.
    """
    item = Path(item)
    if item.is_file() and item.suffix.lower() in _dataset.MANIFEST_SUFFIXES:
        named, other = [(r.path, r.name) for r in _dataset.discover(item)], []
    else:
        audio, other = _dataset.find_audio([item], with_other=True)
        named = [(f, f.relative_to(item).as_posix() if item.is_dir() else item.as_posix()) for f in audio]
    kept, left_out = [], []
    for f, name in named:
        (kept if _dataset.kept(name, include, exclude) else left_out).append(f)
    return kept, left_out, other


def find_inputs(paths, *, include=(), exclude=()):
    """The audio files to classify in ``paths``: files, folders (walked recursively) and manifests.

    A manifest (``.csv``/``.tsv``/``.txt``, read by :func:`audiogmm.dataset.discover`) gives its
    recordings, its labels unused. ``include``/``exclude`` are glob patterns on each file's path
    relative to the folder or manifest it was found through (a file given by itself: its path as
    given), as for training.

    Returns
    -------
    audio : list of Path
        Without duplicates, in the order given; a missing file a manifest lists is kept (its
        prediction reports it unreadable).
    n_other : int
        Non-audio files found in the folders and passed over.

    Raises
    ------
    ParameterError
        A path given does not exist, a manifest is malformed, or the patterns leave nothing.
    """
    found, n_other = [], 0
    for item in [paths] if isinstance(paths, (str, Path)) else paths:
        kept, _, other = _select(item, include, exclude)
        found += kept
        n_other += len(other)
    if (include or exclude) and not found:
        raise ParameterError("no audio file is left after --include/--exclude: check the patterns")
    # A file a manifest lists but that is missing stays in: it is reported as unreadable ("file
    # not found") in its row, as training skips and reports it, instead of stopping the run.
    return _dataset.unique_paths(found), n_other


def predict(model, paths, *, min_confidence=None, excerpts=DEFAULT_EXCERPTS, include=(), exclude=(), n_jobs=1,
            cache_dir=None, progress=None):
    """Label recordings (files, or folders walked recursively).

    A long recording costs a bounded amount of work: with ``excerpts=(n, seconds)`` a
    recording longer than ``n * seconds`` is divided into ``n`` equal parts, an excerpt of
    ``seconds`` is decoded from the middle of each, each excerpt is turned into features on
    its own (normalised as a clip of that length), and the recording's score for a class is
    the mean log-likelihood over the frames of all its excerpts. Shorter recordings are used
    whole. The default, 4 excerpts of 30 s, bounds a 10-minute or 1-hour track to 2 minutes of
    audio; ``excerpts=None`` (or ``(0, ...)``) always uses whole recordings.

    Parameters
    ----------
    model : TrainedModel
    paths : sequence of str or Path
    min_confidence : float in [0, 1], optional
        Label a recording ``"unknown"`` when its top probability is lower (its probabilities
        and scores are still reported).
    excerpts : (int, float) or None, default=(4, 30.0)
        ``(n_excerpts, seconds)`` for long recordings, as described above.
    include, exclude : sequence of str
        Glob patterns; ``paths`` may also hold manifests (see :func:`find_inputs`).
    n_jobs : int, default=1
    cache_dir : str or Path, optional
        Feature cache folder; see :func:`extract_features`.
    progress : callable(stage, done, total), optional

    Returns
    -------
    predictions : list of Prediction
        One per audio file found, in order.
    n_other : int
        Non-audio files found in the folders and passed over.
    """
    min_confidence = _check_confidence(min_confidence)
    excerpts = _check_excerpts(excerpts)
    _check_cache_dir(cache_dir)
    audio, n_other = find_inputs(paths, include=include, exclude=exclude)
    preds = _predict_paths(model, audio, n_jobs, progress, "predicting", cache_dir, excerpts)
    return _apply_confidence(preds, min_confidence), n_other


@dataclass
class Segment:
    """One stretch of a recording's timeline: ``[start, end)`` seconds.

    ``label``, ``probabilities`` and ``scores`` (mean frame log-likelihoods, following the
    model's classes) are None when no frame falls in the segment (the VAD dropped them all).
    """

    start: float
    end: float
    label: str | None
    probabilities: np.ndarray | None = None
    scores: np.ndarray | None = None
    n_frames: int = 0

    @property
    def confidence(self):
        """The top probability, or None."""
        return None if self.probabilities is None else float(self.probabilities.max())


@dataclass
class Timeline:
    """The segments of one recording, or the ``error`` that kept it from being read."""

    path: str
    segments: list = field(default_factory=list)
    duration: float = 0.0
    error: str | None = None


def _check_seconds(seconds):
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not np.isfinite(seconds) \
            or seconds <= 0:
        raise ParameterError(f"segment must be a number of seconds > 0, got {seconds!r}; e.g. 5")
    return float(seconds)


def _timeline(clf, path, X, frames, config, seconds):
    from .audio import duration
    from .exceptions import AudioLoadError

    frame_s = config.hop_length / config.sample_rate
    try:
        total = duration(path)
    except AudioLoadError:
        total = (int(frames[-1]) + 1) * frame_s
    n_seg = max(1, int(np.ceil(total / seconds - 1e-9)))
    seg = np.minimum((frames * frame_s / seconds).astype(np.intp), n_seg - 1)
    # (n_frames, n_classes): every frame scored once (log-likelihood ratios for a UBM model)
    ll = clf.score_frames(X)
    counts = np.bincount(seg, minlength=n_seg)
    sums = np.zeros((n_seg, ll.shape[1]))
    np.add.at(sums, seg, ll)
    segments = []
    for s in range(n_seg):
        start, end = s * seconds, min((s + 1) * seconds, total)
        if counts[s] == 0:
            segments.append(Segment(round(start, 3), round(end, 3), None))
            continue
        scores = sums[s] / counts[s]
        # a short segment's mean is noisier than a whole recording's: the calibrator tempers it
        proba = np.exp(clf.log_proba_from_scores(scores[None], n_frames=[counts[s]])[0])
        label = str(clf.classes_[int(np.argmax(proba))])
        segments.append(Segment(round(start, 3), round(end, 3), label, proba, scores, int(counts[s])))
    return Timeline(str(path), segments, round(total, 3))


def predict_segments(model, paths, seconds, *, min_confidence=None, n_jobs=1, cache_dir=None, progress=None):
    """A timeline per recording: the label of every ``seconds``-long stretch.

    Each recording's frames are scored once under every class's mixture; a segment's
    scores are the mean frame log-likelihoods of the frames centred in it, and its label
    and probabilities follow from them as for a whole recording, by the model's calibrator,
    which tempers segments shorter than the recordings it was fitted on (a short trailing
    segment does not claim certainty). Frames dropped by the VAD count in no segment.

    Parameters
    ----------
    model : TrainedModel
    paths : sequence of str or Path
        Files, or folders walked recursively.
    seconds : float
        Segment length; the last segment of a recording may be shorter.
    min_confidence : float in [0, 1], optional
        Label a segment ``"unknown"`` when its top probability is lower.
    n_jobs : int, default=1
    cache_dir : str or Path, optional
        Feature cache folder; see :func:`extract_features`.
    progress : callable(stage, done, total), optional

    Returns
    -------
    timelines : list of Timeline
        One per audio file found, in order (with ``error`` set for unreadable ones).
    n_other : int
        Non-audio files found in the folders and passed over.

    Raises
    ------
    ParameterError
        ``seconds`` is not a positive number, or a path does not exist.

    Examples
    --------
    >>> timelines, _ = predict_segments(model, ["podcast.ogg"], 5.0)  # doctest: +SKIP
    >>> [(s.start, s.label) for s in timelines[0].segments]  # doctest: +SKIP
    [(0.0, 'en'), (5.0, 'en'), (10.0, 'fr')]
    """
    seconds = _check_seconds(seconds)
    min_confidence = _check_confidence(min_confidence)
    _check_cache_dir(cache_dir)
    audio, n_other = _dataset.find_audio(paths)
    config, clf = model.feature_config, model.classifier
    out = []
    for i, X, frames, reason in _iter_features(audio, config, n_jobs, progress, "segmenting", cache_dir,
                                               with_frames=True):
        if X is None:
            _skip(audio[i], reason)
            out.append(Timeline(str(audio[i]), error=reason))
        else:
            out.append(_timeline(clf, audio[i], X, frames, config, seconds))
            _apply_confidence(out[-1].segments, min_confidence)
    return out, n_other


@dataclass
class Evaluation:
    """Scores of a model on a labelled test set.

    ``labels`` orders the rows and columns of ``confusion`` (true label by row, predicted by
    column): the model's classes, then any test label the model does not know.
    ``balanced_accuracy`` and ``macro_f1`` average over the labels present in the test set.
    ``verification`` holds the equal error rate and DET curve of the one-vs-rest trials
    (:func:`audiogmm.evaluation.verification_metrics`), ``folds`` the per-split figures of a
    cross-validation and ``protocol`` how it was run (both empty for a trained model).
    ``calibration`` (:func:`audiogmm.evaluation.calibration_metrics` of the probabilities
    reported, with ``softmax``: the same figures for the uncalibrated softmax) tells how far
    the top probability can be trusted; its ``coverage`` table gives, per threshold, the share
    of recordings kept by ``--min-confidence`` and their accuracy.
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
    verification: dict | None = None
    folds: list = field(default_factory=list)
    protocol: dict | None = None
    calibration: dict | None = None

    @property
    def eer(self):
        """The equal error rate of the one-vs-rest trials, or None."""
        return None if self.verification is None else self.verification["eer"]

    def to_dict(self):
        """JSON-safe dict of every figure."""
        extra = {}
        if self.verification is not None:
            extra["eer"] = self.verification["eer"]
            extra["det"] = self.verification["det"]
        if self.protocol is not None:
            extra["protocol"] = self.protocol
            extra["folds"] = self.folds
        if self.calibration is not None:
            extra["calibration"] = self.calibration
        return {
            **extra,
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


def evaluate(model, dataset, *, clip=None, include=(), exclude=(), n_jobs=1, cache_dir=None, progress=None):
    """Predict every recording of a labelled dataset and score the predictions.

    Parameters
    ----------
    model : TrainedModel
    dataset : str, Path or sequence of Recording
    clip : float, optional
        Cut every recording into consecutive clips of this many seconds (the model's feature
        configuration, each clip normalised on its own; a tail shorter than a clip is
        dropped, a recording shorter than a clip is one clip), as for training (see
        :func:`audiogmm.evaluation.cut_clips`), and score each clip as an item, named
        ``<path>#<k>``. None: whole recordings.
    include, exclude : sequence of str
    n_jobs : int, default=1
    cache_dir : str or Path, optional
        Feature cache folder; see :func:`extract_features`.
    progress : callable(stage, done, total), optional

    Returns
    -------
    evaluation : Evaluation

    Warns
    -----
    UserWarning
        Some test labels are not classes of the model: their recordings are counted as errors.

    Raises
    ------
    AudiogmmError
        No recording of the test set could be used, or no test label is a class of the model.
    """
    from sklearn import metrics

    clip = _evaluation.check_clip(clip)
    _check_cache_dir(cache_dir)
    rows = _rows(dataset, include, exclude)
    _check_test_labels(model, rows)
    if clip is None:
        preds = _predict_paths(model, [r.path for r in rows], n_jobs, progress, "evaluating", cache_dir)
        truth = [r.label for r in rows]
    else:
        preds, truth = _predict_clips(model, rows, clip, n_jobs, progress, cache_dir)
    pairs = [(t, p.label) for t, p in zip(truth, preds) if p.error is None]
    skipped = [(p.path, p.error) for p in preds if p.error is not None]
    if not pairs:
        raise TrainingError(f"none of the {len(rows)} test recording(s) could be read: nothing to evaluate")
    y_true, y_pred = (list(t) for t in zip(*pairs))
    good = [pr for pr in preds if pr.error is None]
    decision = np.array([pr.scores for pr in good]) + np.log(model.classifier.class_prior_)
    verification = _evaluation.verification_metrics(
        *_evaluation.one_vs_rest_scores(y_true, decision, model.classes))
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
        predictions=good,
        skipped=skipped,
        verification=verification,
        calibration=_calibration_report(np.array([pr.probabilities for pr in good]), decision, y_true,
                                        model.classes, log=True),
    )


def _check_test_labels(model, rows):
    """Refuse a test set with no label of the model; warn when some of its labels are unknown to it."""
    test_labels = sorted({str(r.label) for r in rows})
    known = set(map(str, model.classes))
    unknown = [lab for lab in test_labels if lab not in known]
    if len(unknown) == len(test_labels):
        raise AudiogmmError(
            f"the test labels ({', '.join(unknown)}) are none of the model's classes ({', '.join(model.classes)}): "
            "check that DATA is labelled like the training data (same sub-folder names or manifest labels)")
    if unknown:
        n = sum(str(r.label) in unknown for r in rows)
        warnings.warn(
            f"{n} test recording(s) have label(s) the model does not know ({', '.join(unknown)}; its classes: "
            f"{', '.join(model.classes)}): they are counted as errors", UnknownLabelWarning, stacklevel=3)


def _predict_clips(model, rows, clip, n_jobs, progress, cache_dir):
    """Predictions of every ``clip``-second clip of ``rows`` and each clip's true label."""
    features, skipped = extract_clips([r.path for r in rows], model.feature_config, clip, n_jobs=n_jobs,
                                      cache_dir=cache_dir, progress=progress, stage="evaluating")
    reasons = dict(skipped)
    preds, truth = [], []
    for r, clips in zip(rows, features):
        if clips is None:
            why = reasons.get(str(r.path))
            if why is None:  # read, but the VAD left no frame in any clip
                why = f"no {clip:g}-s clip keeps a frame (the VAD dropped them all)"
                _skip(r.path, why)
            preds.append(Prediction(str(r.path), None, error=why))
            truth.append(r.label)
            continue
        for k, X in enumerate(clips):
            preds.append(_prediction(model.classifier, f"{r.path}#{k}", X))
            truth.append(r.label)
    return preds, truth

def _calibration_report(proba, decision, y_true, classes, log=False):
    """Calibration figures of the reported probabilities (their logs unless ``log``) and, under
    ``softmax``, of the plain softmax of the decision scores."""
    from scipy.special import log_softmax

    with np.errstate(divide="ignore"):
        report = _evaluation.calibration_metrics(np.log(proba) if log else proba, y_true, classes)
    plain = _evaluation.calibration_metrics(log_softmax(np.where(np.isnan(decision), -np.inf, decision), axis=1),
                                            y_true, classes)
    report["softmax"] = {k: plain[k] for k in ("ece", "log_loss", "brier")}
    return report


def cross_validate(
    dataset,
    recipe=None,
    *,
    preset=None,
    feature_config=None,
    n_splits=5,
    group_by=None,
    test=None,
    train=None,
    clip=None,
    include=(),
    exclude=(),
    n_jobs=1,
    random_state=0,
    cache_dir=None,
    progress=None,
    calibrate=True,
    **params,
):
    """Evaluate a training recipe on a dataset without leaking groups from training into test.

    Features are extracted once; then, for every split, a classifier is trained on the
    training part and scores the test part. The figures pool the test predictions of all
    splits (each recording is tested exactly once in k-fold; only the test part of a fixed split).

    Parameters
    ----------
    dataset : str, Path or sequence of Recording
    recipe, preset, feature_config, **params
        What to train, as :func:`train`.
    n_splits : int >= 2, default=5
        Folds of the stratified group k-fold (lowered to the number of groups when fewer);
        ignored when ``test`` is given.
    group_by : str, optional
        A manifest column or a file-name regular expression (see
        :func:`audiogmm.evaluation.group_keys`): recordings with the same key are never split
        between training and test. Default: each file is its own group (with ``clip``, a
        file's clips stay together).
    test, train : sequence of str, optional
        A fixed split instead of k-fold: glob patterns or relative paths of the test (and
        training; default the rest) recordings.
    clip : float, optional
        Cut recordings into clips of this many seconds (train and test on clips).
    include, exclude, n_jobs, random_state, cache_dir, progress
        As :func:`train`; ``random_state`` also shuffles the folds.
    calibrate : bool, default=True
        Calibrate each split's classifier as :func:`train` does (on out-of-fold scores of its
        training part, grouped by ``group_by``), so the reported probabilities and calibration
        figures are those of a trained model on new groups; costs about 3x the training.

    Returns
    -------
    evaluation : Evaluation
        With ``folds`` (per split: sizes and accuracy), ``protocol`` and ``verification``.

    Raises
    ------
    ParameterError
        Bad parameters, a group pattern that does not match, an empty split.
    TrainingError
        No usable recording.
    """
    n_jobs = _check_jobs(n_jobs)
    if not isinstance(calibrate, bool):
        raise ParameterError(f"calibrate must be True or False, got {calibrate!r}")
    chosen = recipe is None and preset is None  # the default: its preset is chosen from the data below
    recipe, estimator = _resolve_recipe(recipe, preset, feature_config, params)
    if estimator is None:
        recipe.make_classifier(random_state=random_state, n_jobs=n_jobs)  # validates before any audio is read

        def make():
            return recipe.make_classifier(random_state=random_state, n_jobs=n_jobs)
    else:
        def make():
            return type(estimator)(**estimator.get_params())
    config = recipe.features
    clip = _evaluation.check_clip(clip)
    if test is None and (isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 2):
        raise ParameterError(f"n_splits must be an int >= 2, got {n_splits!r}")
    _check_cache_dir(cache_dir)
    rows = _rows(dataset, include, exclude)
    groups = _evaluation.group_keys(rows, group_by, dataset=dataset if isinstance(dataset, (str, Path)) else None)
    splits = _evaluation.fixed_split(rows, test=test, train=train) if test else None
    choice = None
    if chosen:  # on all of DATA's recordings: the test parts' durations are no label
        choice, recipe = _chosen_recipe(rows, feature_config, params)
        config = recipe.features
    features, skipped = extract_clips([r.path for r in rows], config, clip, n_jobs=n_jobs, cache_dir=cache_dir, progress=progress)
    # One item per clip (or file), carrying its file's label and group.
    items = [(i, X) for i, Xs in enumerate(features) if Xs is not None for X in Xs]
    if not items:
        raise TrainingError(f"none of the {len(rows)} recording(s) could be read: nothing to evaluate")
    src = np.array([i for i, _ in items])
    X_items = [X for _, X in items]
    y_items = [rows[i].label for i in src]
    g_items = [groups[i] for i in src]
    if splits is None:
        splits = _evaluation.kfold_splits(y_items, g_items, n_splits, random_state=random_state)
    else:  # map file indices to item indices
        tr_files, te_files = splits[0]
        splits = [(np.flatnonzero(np.isin(src, tr_files)), np.flatnonzero(np.isin(src, te_files)))]
        if splits[0][0].size == 0 or splits[0][1].size == 0:
            raise TrainingError("the fixed split leaves no usable recording for training or for test")
    result = _evaluation.run_splits(X_items, y_items, splits, make, progress=progress, calibrate=calibrate,
                                    groups=g_items, random_state=random_state)
    tested = result["tested"]
    y_true = [y for y, t in zip(y_items, tested) if t]
    y_pred = [p for p, t in zip(result["y_pred"], tested) if t]
    scores = result["scores"][tested]
    labels = result["classes"]
    m = _evaluation.classification_metrics(y_true, y_pred, labels)
    verification = _evaluation.verification_metrics(*_evaluation.one_vs_rest_scores(y_true, scores, labels))
    names = [rows[i].name for i in src]
    predictions = [
        Prediction(name, pred, np.exp(lp), sc, int(X.shape[0]))
        for name, pred, sc, lp, X, t in zip(names, result["y_pred"], result["scores"], result["log_proba"], X_items,
                                            tested) if t
    ]
    for f, (tr, te) in zip(result["folds"], splits):
        f["test_groups"] = sorted({str(g_items[i]) for i in te})
    protocol = {
        "kind": "fixed" if test else "k-fold",
        "n_splits": len(splits),
        "group_by": group_by,
        "clip": clip,
        "method": recipe.method,
        "preset": recipe.name,
        "default_choice": choice,
        "n_components": recipe.params["n_components"],
        "feature_config": config.to_dict(),
        "n_items": len(items),
        "n_groups": len(set(g_items)),
        "fold_accuracy_mean": float(np.mean([f["accuracy"] for f in result["folds"]])),
        "fold_accuracy_std": float(np.std([f["accuracy"] for f in result["folds"]])),
        "calibrate": calibrate,
    }
    return Evaluation(
        labels=labels, y_true=y_true, y_pred=y_pred, accuracy=m["accuracy"],
        balanced_accuracy=m["balanced_accuracy"], macro_f1=m["macro_f1"], precision=m["precision"],
        recall=m["recall"], f1=m["f1"], support=m["support"], confusion=m["confusion"],
        predictions=predictions, skipped=skipped, verification=verification, folds=result["folds"],
        protocol=protocol, calibration=_calibration_report(result["log_proba"][tested], scores, y_true, labels),
    )


def sort_library(model, source, into, *, mode="copy", dry_run=False, min_confidence=None, report=None,
                 excerpts=DEFAULT_EXCERPTS, include=(), exclude=(), n_jobs=1, cache_dir=None, progress=None):
    """Sort the audio under a folder, or listed in a manifest, into ``into/<label>/`` (uncertain: ``into/unknown/``).

    Every file under a ``source`` folder appears exactly once in the returned entries (and in
    the CSV report written to ``report`` or ``into/audiogmm-sort-report.csv``): audio files with
    their label and what was done; unreadable ones, non-audio files and audio files the
    ``include``/``exclude`` patterns leave out (decision ``excluded``) as ``left``. A manifest's
    recordings are sorted instead, each listed file once in the entries (one listed but missing
    is ``unreadable``, left); other files beside them are neither touched nor listed. See
    :mod:`audiogmm.sorting` for the no-loss guarantees, which hold for both.

    Parameters
    ----------
    model : TrainedModel
    source : str or Path
        The music folder (walked recursively), or a manifest (``.csv``/``.tsv``/``.txt``, read
        by :func:`audiogmm.dataset.discover`; its labels are unused).
    into : str or Path
        Must not be the folder or inside it; for a manifest, must hold none of its recordings.
    mode : {"copy", "link", "move"}, default="copy"
    dry_run : bool, default=False
        Decide and describe, but touch nothing.
    min_confidence : float in [0, 1], optional
    report : str or Path, optional
    excerpts : (int, float) or None, default=(4, 30.0)
        How long tracks are scored; see :func:`predict`.
    include, exclude : sequence of str
        Glob patterns on each file's path relative to the folder or manifest, as for
        :func:`predict`: only the files they keep are sorted.
    n_jobs : int, default=1
    cache_dir : str or Path, optional
    progress : callable(stage, done, total), optional

    Returns
    -------
    entries : list of SortEntry
    report_path : Path or None
        None for a dry run.

    Raises
    ------
    ParameterError
        A bad option; ``source`` is neither a folder nor a manifest, or a manifest is malformed;
        the patterns leave no audio file; ``into`` is the folder or inside it, or holds a
        recording of the manifest.
    SortError
        Before any work: a label folder would be or contain the folder (or a listed recording's
        folder), a label is not a safe folder name, the destination is not writable, its journal
        holds a bad line, or (move) a source could not be removed. During the run: the
        destination is full or over quota (nothing half-written is left; the same call resumes).
    """
    from .sorting import Sorter, check_labels, check_listed_locations, check_locations, check_removable

    min_confidence = _check_confidence(min_confidence)
    excerpts = _check_excerpts(excerpts)
    _check_cache_dir(cache_dir)
    source, into = Path(source), Path(into)
    if not source.exists():
        raise ParameterError(f"SOURCE {str(source)!r} does not exist: give the music folder, or a manifest listing "
                             "the recordings to sort")
    listed = source.is_file() and source.suffix.lower() in _dataset.MANIFEST_SUFFIXES
    if not (listed or source.is_dir()):
        raise ParameterError(f"SOURCE {str(source)!r} is neither a folder nor a manifest (.csv, .tsv, .txt): give "
                             "the music folder, or a manifest listing the recordings to sort")
    labels = check_labels(dict.fromkeys([*model.classes, "unknown"]))
    if not listed:
        check_locations(source, into, labels)
    audio, excluded, other = _select(source, include, exclude)
    if (include or exclude) and not audio:
        raise ParameterError(f"no audio file of {str(source)!r} is left after --include/--exclude: check the patterns")
    if listed:  # a file listed twice is sorted once
        audio = [Path(os.path.abspath(f)) for f in _dataset.unique_paths(audio)]
        kept = set(audio)
        excluded = [f for f in (Path(os.path.abspath(f)) for f in _dataset.unique_paths(excluded)) if f not in kept]
        check_listed_locations(audio, into, labels)
    sorter = Sorter(None if listed else source, into, mode=mode, dry_run=dry_run,
                    sources=[*audio, *excluded] if listed else None)
    try:
        sorter.start()  # refuses an unwritable destination or a bad journal before any work
        if listed:  # those an earlier run moved away: the report lists them from the journal
            audio = [f for f in audio if not sorter.moved_earlier(f)]
        if mode == "move":  # before anything is placed, not after the first file (a missing one stays missing)
            check_removable([f for f in audio if os.path.lexists(f)])
        preds = _predict_paths(model, audio, n_jobs, progress, "classifying", cache_dir, excerpts)
        preds = _apply_confidence(preds, min_confidence)
        if progress:
            progress("sorting", 0, len(preds))
        for i, p in enumerate(preds):
            if p.error is not None:
                sorter.apply(p.path, "unreadable", note=p.error)
            else:
                sorter.apply(p.path, p.label, p.confidence)
            if progress:
                progress("sorting", i + 1, len(preds))
        for f in excluded:
            sorter.apply(f, "excluded", note="left out by --include/--exclude")
        for f in other:
            sorter.apply(f, "not-audio")
        entries = sorter.finish(report)
    finally:
        sorter.close()
    return entries, sorter.report_path
