"""Parallel feature extraction: one frozen spec, loky worker processes locally, Dask on a cluster.

What to extract travels as one :class:`ExtractionSpec` (feature config, store, frame
indices wanted, excerpts); :func:`iter_features` yields one :class:`Extracted` per input
path, in input order, however the work was spread:

* files already in the store are read in this process (one
  :class:`~audiogmm.cache.FeatureCache` per call);
* the misses are extracted serially (``n_jobs=1``), in joblib's loky worker processes
  (kept alive between calls, one BLAS thread each), or as tasks of a Dask
  ``distributed.Client`` (``executor=``; duck-typed, so dask is imported only by the
  caller who made the client).

Scheduling. Files travel in batches (at most :data:`_BATCH_FILES` files or
:data:`_BATCH_BYTES` bytes of audio, and at least 4 batches per worker when there are enough
files), so short clips share one dispatch and long files go alone. Locally the files are
taken in consecutive waves of at most :data:`_WAVE_BYTES` bytes; within a wave the largest
batches go first (one long file does not run alone at the end while the other workers idle)
and results are put back in input order, so a wave's features are all that is held back.
On Dask every worker writes its batch's entries into the shared store and returns only
metadata (key, frame count, or the reason a file is unusable): the client reads the
features back from the store, so the results are those of the local path, bit for bit.

A worker imports only this module, :mod:`~audiogmm.cache`, :mod:`~audiogmm.features` and
:mod:`~audiogmm.audio` (NumPy, SciPy's FFT, soundfile, soxr): not librosa, not the
classifier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .cache import FeatureCache
from .exceptions import AudiogmmError, AudioLoadError, ParameterError
from .features import FeatureConfig

__all__ = ["ExtractionSpec", "Extracted", "iter_features", "extract_batch", "store_batch"]

#: Work per task: at most this many files or bytes of audio, so short clips travel in
#: batches (one dispatch, one BLAS setting per batch) and long files alone.
_BATCH_FILES, _BATCH_BYTES = 256, 32 << 20
#: Local parallel extraction goes through the files in consecutive waves of at most this
#: many bytes of audio files (see the module notes).
_WAVE_BYTES = 256 << 20


@dataclass(frozen=True)
class ExtractionSpec:
    """What to extract from each file: the one argument every extraction function takes.

    Parameters
    ----------
    config : FeatureConfig
    cache_dir : str or Path, optional
        The feature store (:mod:`audiogmm.cache`): hits are read back, misses are stored.
        Kept as a ``str``.
    with_frames : bool, default False
        Also return the kept frames' indices (:func:`~audiogmm.features.extract_file`
        with ``return_frames=True``).
    excerpts : (int, float), optional
        ``(n_excerpts, seconds)``: long files are represented by excerpts
        (:func:`~audiogmm.features.extract_excerpts`; stored as entries of their own, no
        frame indices). Not with ``with_frames``.

    Raises
    ------
    ParameterError
        A field of the wrong type or value.
    """

    config: FeatureConfig
    cache_dir: str | None = None
    with_frames: bool = False
    excerpts: tuple | None = None

    def __post_init__(self):
        if not isinstance(self.config, FeatureConfig):
            raise ParameterError(f"config must be a FeatureConfig, got {type(self.config).__name__}")
        if self.cache_dir is not None:
            if not isinstance(self.cache_dir, (str, os.PathLike)) or str(self.cache_dir) == "":
                raise ParameterError(f"cache_dir must be None or a folder path, got {self.cache_dir!r}")
            object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))
        if not isinstance(self.with_frames, bool):
            raise ParameterError(f"with_frames must be True or False, got {self.with_frames!r}")
        if self.excerpts is not None:
            try:
                n, seconds = self.excerpts
            except (TypeError, ValueError):
                raise ParameterError(f"excerpts must be None or (n_excerpts, seconds), got {self.excerpts!r}") from None
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ParameterError(f"n_excerpts must be an int >= 1, got {n!r}")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
                raise ParameterError(f"excerpt seconds must be a number > 0, got {seconds!r}")
            if self.with_frames:
                raise ParameterError("with_frames and excerpts cannot be combined: excerpts have no frame timeline")
            object.__setattr__(self, "excerpts", (int(n), float(seconds)))

    def cache(self):
        """A :class:`~audiogmm.cache.FeatureCache` on ``cache_dir`` (created if missing), or None."""
        return None if self.cache_dir is None else FeatureCache(self.cache_dir)


class Extracted(NamedTuple):
    """The outcome for one input file.

    ``reason`` says why when the file could not be used (``X`` is then None); ``X`` is also
    None with ``load=False`` (:func:`iter_features`), where only ``n_frames`` is known;
    ``frames`` is None unless the spec asked for them; ``key`` is the store key (None
    without a store or when the file cannot be ``stat``-ed); ``cached`` tells whether the
    entry was already in the store.
    """

    index: int
    X: object
    frames: object
    reason: str | None
    key: str | None
    cached: bool
    n_frames: int = 0


def _one(path, spec, cache):
    """``(X, frames, reason, key, n_frames)`` of one file, computed (and stored with a store)."""
    key = None
    try:
        if cache is not None:
            key = cache.key(path, spec.config, excerpts=spec.excerpts)
            X, frames = cache.compute(path, spec.config, key=key, excerpts=spec.excerpts)
        elif spec.excerpts is not None:
            from .features import extract_excerpts

            X = extract_excerpts(path, spec.config, n_excerpts=spec.excerpts[0], seconds=spec.excerpts[1])
            frames = None
        else:
            from .features import extract_file

            X, frames = extract_file(path, spec.config, return_frames=True)
        return X, (frames if spec.with_frames else None), None, key, int(X.shape[0])
    except AudioLoadError as exc:
        return None, None, exc.reason, key, 0
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - an unexpected decoder failure must not end the run
        return None, None, f"{type(exc).__name__}: {exc}", key, 0


def _serial(paths, spec, cache):
    """Like :func:`extract_batch`, one file at a time (a generator, in this process)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        for p in paths:
            yield _one(p, spec, cache)


def extract_batch(paths, spec):
    """Worker: features of several files with one BLAS thread, stored when the spec has a store.

    Parameters
    ----------
    paths : sequence of str or Path
    spec : ExtractionSpec

    Returns
    -------
    list of (X or None, frames or None, reason or None, key or None, n_frames)
        One per path, in order; ``reason`` says why a file could not be used. Exceptions
        other than MemoryError/KeyboardInterrupt never escape: one bad file must not end
        a run.
    """
    return list(_serial(paths, spec, spec.cache()))


def store_batch(paths, spec):
    """Dask worker: extract ``paths`` into the spec's store and return only metadata.

    Returns
    -------
    list of (key or None, n_frames, reason or None, stored)
        ``stored`` is False when the entry could not be written (the file changed while
        it was read, the store is not writable here): the client then extracts it itself.
    """
    cache = spec.cache()
    out = []
    for X, _, reason, key, n_frames in _serial(paths, spec, cache):
        stored = X is not None and key is not None and cache.entry_path(key).is_file()
        out.append((key, n_frames, reason, stored))
    return out


def _metadata(results):
    """The results without their arrays (what the caller of ``load=False`` keeps)."""
    for _, _, reason, key, n_frames in results:
        yield None, None, reason, key, n_frames


def _extract_indexed(indices, paths, spec, load=True):
    """Worker: ``(indices, extract_batch(paths, spec))`` (results of a reordered batch)."""
    results = extract_batch(paths, spec)
    return indices, (results if load else list(_metadata(results)))


def _file_sizes(paths):
    sizes = []
    for p in paths:
        try:
            sizes.append(Path(p).stat().st_size)
        except (OSError, ValueError):
            sizes.append(0)
    return sizes


def _check_workers(n_workers):
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ParameterError(f"n_jobs must be a resolved worker count >= 1 here, got {n_workers!r}")
    return n_workers


def _batches(paths, n_workers, sizes=None):
    """Consecutive slices of ``paths``, at least 4 per worker when there are enough files."""
    n_workers = _check_workers(n_workers)
    if sizes is None:
        sizes = _file_sizes(paths)
    target = min(_BATCH_BYTES, max(1, sum(sizes) // (4 * n_workers)))
    max_files = min(_BATCH_FILES, max(1, -(-len(paths) // (4 * n_workers))))
    out, start, acc = [], 0, 0
    for i, size in enumerate(sizes):
        acc += size
        if acc >= target or i + 1 - start >= max_files:
            out.append(paths[start:i + 1])
            start, acc = i + 1, 0
    if start < len(paths):
        out.append(paths[start:])
    return out


def _waves(n_files, sizes, n_workers):
    """Index lists, one per batch, grouped in waves: ``[[batch, ...], ...]``.

    Waves are consecutive runs of files (at most :data:`_WAVE_BYTES`); a wave's batches come
    largest first.
    """
    waves, start, acc = [], 0, 0
    for i in range(n_files):
        acc += sizes[i]
        if acc >= _WAVE_BYTES or i + 1 == n_files:
            idx = list(range(start, i + 1))
            waves.append(_largest_first(_batches(idx, n_workers, [sizes[j] for j in idx]), sizes))
            start, acc = i + 1, 0
    return waves


def _largest_first(batches, sizes):
    return sorted(batches, key=lambda b: -sum(sizes[j] for j in b))


def _parallel(paths, spec, n_workers, load=True):
    """Yield :func:`extract_batch` results for ``paths`` in order, computed in loky workers."""
    from joblib import Parallel, delayed, parallel_config

    sizes = _file_sizes(paths)
    with parallel_config(backend="loky", inner_max_num_threads=1):
        for wave in _waves(len(paths), sizes, n_workers):
            first = min(b[0] for b in wave)
            pending = {}
            done = Parallel(n_jobs=n_workers, return_as="generator_unordered")(
                delayed(_extract_indexed)(b, [paths[i] for i in b], spec, load) for b in wave)
            for indices, results in done:
                pending.update(zip(indices, results))
                while first in pending:
                    yield pending.pop(first)
                    first += 1


def _executor_slots(executor):
    """How many tasks ``executor`` runs at once (a Dask client's threads; else its workers)."""
    try:
        return max(1, sum(executor.nthreads().values()))  # distributed.Client
    except Exception:  # noqa: BLE001 - any other executor, or a client with no workers yet
        return max(1, int(getattr(executor, "_max_workers", 1) or 1))


def _distributed(paths, spec, executor, cache, load=True):
    """Yield ``(X, frames, reason, key, n_frames)`` for ``paths`` in order, as executor tasks."""
    sizes = _file_sizes(paths)
    batches = _batches(list(range(len(paths))), _executor_slots(executor), sizes)
    # submitted largest first (Dask runs tasks roughly in submission order), awaited in input order
    pure = {"pure": False} if _accepts_pure(executor) else {}  # a re-run must extract again
    futures = {b[0]: executor.submit(store_batch, [paths[i] for i in b], spec, **pure)
               for b in _largest_first(batches, sizes)}
    for b in batches:
        try:
            results = futures.pop(b[0]).result()
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - a task that failed for good (its worker died, ...)
            raise AudiogmmError(f"the extraction task for {paths[b[0]]} and {len(b) - 1} more file(s) failed "
                                f"on the executor ({type(exc).__name__}: {exc})") from exc
        for i, (key, n_frames, reason, stored) in zip(b, results):
            if reason is not None:
                yield None, None, reason, key, 0
                continue
            if stored and not load:
                if cache.verify(paths[i], spec.config, key=key, excerpts=spec.excerpts) is None:
                    raise _not_shared(spec, cache, key)
                yield None, None, None, key, n_frames
                continue
            hit = cache.get(paths[i], spec.config, with_frames=True, key=key, excerpts=spec.excerpts) \
                if stored else None
            if hit is None and stored:
                raise _not_shared(spec, cache, key)
            if hit is None:  # not stored by the worker (the file changed meanwhile): do it here
                done = _serial([paths[i]], spec, cache)
                yield next(done if load else _metadata(done))
            else:
                yield hit[0], (hit[1] if spec.with_frames else None), None, key, int(hit[0].shape[0])


def _not_shared(spec, cache, key):
    return ParameterError(
        f"cache_dir {spec.cache_dir!r}: an entry a worker wrote ({cache.entry_path(key)}) is not readable "
        f"here; with a scheduler the store must be a folder on a file system shared by this machine and "
        f"every worker")


def _accepts_pure(executor):
    # distributed.Client.submit takes pure=; concurrent.futures executors would pass it to the task
    return type(executor).__module__.startswith("distributed")


def iter_features(paths, spec, *, n_jobs=1, executor=None, progress=None, stage="features", load=True):
    """Yield one :class:`Extracted` per path, in input order.

    Parameters
    ----------
    paths : sequence of str or Path
    spec : ExtractionSpec
    n_jobs : int, default=1
        Local worker processes (a resolved count >= 1; see
        :func:`audiogmm.pipeline.extract_features` for the user-facing rule).
    executor : distributed.Client or concurrent.futures.Executor, optional
        Run the misses as tasks of this executor instead (``n_jobs`` is then unused). It
        needs ``spec.cache_dir``, a store every worker can write and this process can read.
    progress : callable(stage, done, total), optional
    stage : str, default "features"
        The stage name passed to ``progress``.
    load : bool, default True
        False: only fill the store (and say what it holds): no features come back, entries
        already there are checked from their header without reading their data, and the
        workers return only metadata.

    Raises
    ------
    ParameterError
        A bad spec, ``n_jobs`` or ``executor``; an executor without a store.
    """
    if not isinstance(spec, ExtractionSpec):
        raise ParameterError(f"spec must be an ExtractionSpec, got {type(spec).__name__}")
    n_jobs = _check_workers(n_jobs)
    if executor is not None:
        if not callable(getattr(executor, "submit", None)):
            raise ParameterError(f"executor must be a distributed.Client (or have .submit), got {executor!r}")
        if spec.cache_dir is None:
            raise ParameterError("an executor needs cache_dir: the workers write the features into a store "
                                 "shared with this machine and return only their keys")
    paths = list(paths)
    if not load and spec.cache_dir is None:
        raise ParameterError("load=False needs cache_dir: the features are only stored")
    return _iter(paths, spec, n_jobs, executor, progress, stage, load)


def _iter(paths, spec, n_jobs, executor, progress, stage, load):
    cache = spec.cache()
    total = len(paths)
    if progress:
        progress(stage, 0, total)
    hits = {}
    if cache is not None:
        for i, p in enumerate(paths):
            key = cache.key(p, spec.config, excerpts=spec.excerpts)
            if key is None:
                continue
            if load:
                hit = cache.get(p, spec.config, with_frames=True, key=key, excerpts=spec.excerpts)
                if hit is not None:
                    hits[i] = (hit[0], hit[1], key, int(hit[0].shape[0]))
            else:
                n_frames = cache.verify(p, spec.config, key=key, excerpts=spec.excerpts)
                if n_frames is not None:
                    hits[i] = (None, None, key, n_frames)
    misses = [p for i, p in enumerate(paths) if i not in hits]
    if not misses:
        computed = iter(())
    elif executor is not None:
        computed = _distributed(misses, spec, executor, cache, load)
    elif n_jobs == 1 or len(misses) == 1:
        computed = _serial(misses, spec, cache)
        computed = computed if load else _metadata(computed)
    else:
        computed = _parallel(misses, spec, n_jobs, load)
    for i in range(total):
        if i in hits:
            X, frames, key, n_frames = hits.pop(i)
            out = Extracted(i, X, frames if spec.with_frames else None, None, key, True, n_frames)
        else:
            X, frames, reason, key, n_frames = next(computed)
            out = Extracted(i, X, frames, reason, key, False, n_frames)
        if progress:
            progress(stage, i + 1, total)
        yield out
