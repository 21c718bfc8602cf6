"""An on-disk cache of feature matrices, so a corpus is decoded and analysed once.

Layout: ``<cache_dir>/<k[:2]>/<k>.npy`` holds ``X`` (float32, ``(n_frames, n_features)``)
for the key ``k``; with ``vad=True`` a ``<k>.frames.npy`` beside it holds the indices of the
frames the VAD kept (the segment timeline needs their times). Both are plain ``.npy`` files
read with ``allow_pickle=False``, so a cache directory from elsewhere cannot run code.

The key
-------
``k`` is the SHA-256 of a JSON record of the file's **resolved path, size and modification
time in nanoseconds** (``st_size``, ``st_mtime_ns``), the :class:`~audiogmm.features.FeatureConfig`
(``to_dict()``) and a cache format version. This is the trade-off Python makes for its
``.pyc`` files, chosen over hashing the bytes for speed: a ``stat`` costs microseconds,
while SHA-256 of the audio (about 1.5 GB/s here) would cap the speed-up of a cached run
at about 10x for 44.1 kHz stereo files.

* A file rewritten in place is recomputed: its size or ``mtime_ns`` changes. The exception
  is a rewrite that keeps the size *and* forces the old modification time back (``touch
  -d``, ``cp -p``/``rsync -t`` of another file of the same size over it, or two writes
  within one kernel clock tick, ~4 ms): then the stale features are served. Delete the
  cache directory after such surgery.
* The path is part of the key because size + mtime alone can collide: files unpacked
  from an archive share their whole-second mtimes, and fixed-length clips their sizes.
  A moved, renamed, copied or ``touch``-ed file is therefore recomputed once (a cache
  miss, never a wrong result).
* Changing any field of the FeatureConfig changes the key, so the same cache directory
  serves several configurations side by side.

Writes are atomic (a temporary file in the same folder, then :func:`os.replace`), so a
reader never sees half an entry; an entry that cannot be read or does not have the
expected dtype and shape (a crash before the data reached the disk, a foreign file) is
treated as missing, recomputed and overwritten. Nothing is ever evicted: remove the
directory (or old ``??/`` sub-folders) to reclaim space. Entries take the size of ``X``:
about 24 KB per second of audio with the default 60 features at 100 frames per second.

This module also holds the worker function that :mod:`audiogmm.pipeline` runs in its
joblib processes, so that a worker imports only this module, :mod:`~audiogmm.features`
and :mod:`~audiogmm.audio` (NumPy, SciPy's FFT, soundfile, soxr): not librosa, not the
classifier.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ._files import write_atomically
from .exceptions import AudioLoadError, ParameterError
from .features import FeatureConfig, extract_file

__all__ = ["FeatureCache", "CACHE_VERSION", "extract_batch", "iter_extract"]

#: Bumped whenever the stored features or the key would change for the same inputs.
CACHE_VERSION = 1


class FeatureCache:
    """Feature matrices on disk, keyed on the file's path, size and mtime plus the config.

    Parameters
    ----------
    directory : str or path-like
        Created (with parents) if missing.

    Raises
    ------
    ParameterError
        ``directory`` exists and is not a folder, or cannot be created.

    Examples
    --------
    >>> cache = FeatureCache("features/")  # doctest: +SKIP
    >>> X = cache.get("a.wav", cfg)  # doctest: +SKIP
    >>> if X is None:  # doctest: +SKIP
    ...     X = extract_file("a.wav", cfg)
    ...     cache.put("a.wav", cfg, X)
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise ParameterError(
                f"cache_dir must be a folder, but {str(self.directory)!r} is a file; pass a folder path"
            )
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ParameterError(
                f"cache_dir {str(self.directory)!r} cannot be created ({exc.strerror or exc}); "
                f"pass a writable folder"
            ) from None
        self._config_json = {}

    def __repr__(self):
        return f"FeatureCache({str(self.directory)!r})"

    def key(self, path, config) -> str | None:
        """The entry's key (64 hex digits), or None when the file cannot be ``stat``-ed."""
        try:
            resolved = os.path.realpath(path)
            st = os.stat(resolved)
        except OSError:
            return None
        cfg = self._config_json.get(config)
        if cfg is None:
            cfg = self._config_json[config] = json.dumps(config.to_dict(), sort_keys=True)
        record = json.dumps([CACHE_VERSION, resolved, st.st_size, st.st_mtime_ns, cfg])
        return hashlib.sha256(record.encode("utf-8")).hexdigest()

    def _paths(self, key):
        folder = self.directory / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.frames.npy"

    def contains(self, path, config) -> bool:
        """Whether an entry exists for ``path`` under ``config`` (not whether it is readable)."""
        key = self.key(path, config)
        return key is not None and self._paths(key)[0].is_file()

    def get(self, path, config, *, with_frames=False, key=None):
        """The cached features of ``path`` under ``config``, or None on a miss.

        Parameters
        ----------
        path : str or path-like
        config : FeatureConfig
        with_frames : bool, default False
            Return ``(X, frames)``: the kept frames' indices, as
            :func:`~audiogmm.features.extract_file` with ``return_frames=True``.
        key : str, optional
            A key from :meth:`key` (saves a ``stat``).

        Returns
        -------
        X : np.ndarray or None
            Or ``(X, frames)`` with ``with_frames=True``.
        """
        key = key or self.key(path, config)
        if key is None:
            return None
        x_path, f_path = self._paths(key)
        try:
            X = np.load(x_path, allow_pickle=False)
            if not (X.dtype == np.float32 and X.ndim == 2 and X.shape[0] >= 1
                    and X.shape[1] == config.n_features):
                return None
            frames = None
            if config.vad:
                frames = np.load(f_path, allow_pickle=False)
                if not (frames.ndim == 1 and frames.shape[0] == X.shape[0]
                        and np.issubdtype(frames.dtype, np.integer)):
                    return None
            elif with_frames:
                frames = np.arange(X.shape[0])
        except (OSError, ValueError, EOFError):  # missing, truncated or foreign: a miss
            return None
        return (X, frames) if with_frames else X

    def put(self, path, config, X, frames=None, *, key=None) -> bool:
        """Store ``X`` (and, with ``config.vad``, ``frames``) atomically.

        Returns
        -------
        bool
            Whether the entry was written (False if the file cannot be ``stat``-ed or the
            cache folder is not writable: the cache is an optimisation, never an error).
        """
        key = key or self.key(path, config)
        if key is None:
            return False
        x_path, f_path = self._paths(key)
        try:
            x_path.parent.mkdir(exist_ok=True)
            if config.vad:
                if frames is None:
                    raise ParameterError("frames is required when config.vad is true")
                _save_atomic(f_path, np.asarray(frames, dtype=np.int64))
            _save_atomic(x_path, np.ascontiguousarray(X, dtype=np.float32))
        except OSError:
            return False
        return True

    def extract(self, path, config, *, with_frames=False):
        """``extract_file(path, config)`` through the cache: read, or compute and store.

        Raises
        ------
        AudioLoadError
            As :func:`~audiogmm.features.extract_file`.
        """
        key = self.key(path, config)
        hit = self.get(path, config, with_frames=with_frames, key=key)
        if hit is not None:
            return hit
        X, frames = extract_file(path, config, return_frames=True)
        if key is not None and self.key(path, config) == key:  # unchanged while we read it
            self.put(path, config, X, frames, key=key)
        return (X, frames) if with_frames else X


def _save_atomic(path: Path, array: np.ndarray) -> None:
    # no fsync: a cache entry lost in a power cut is simply recomputed
    write_atomically(path, lambda f: np.save(f, array, allow_pickle=False), fsync=False, prefix=".tmp-",
                     suffix=".npy")


def _one(path, config, cache, with_frames, excerpts=None):
    try:
        if excerpts is not None:  # excerpts of long files: cheap, not cached
            from .features import extract_excerpts

            return extract_excerpts(path, config, n_excerpts=excerpts[0], seconds=excerpts[1]), None, None
        if cache is not None:
            out = cache.extract(path, config, with_frames=True)
        else:
            out = extract_file(path, config, return_frames=True)
        X, frames = out
        return X, (frames if with_frames else None), None
    except AudioLoadError as exc:
        return None, None, exc.reason
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - an unexpected decoder failure must not end the run
        return None, None, f"{type(exc).__name__}: {exc}"


def iter_extract(paths, config, cache_dir=None, with_frames=False, excerpts=None):
    """Like :func:`extract_batch`, one file at a time (a generator, for serial runs)."""
    from threadpoolctl import threadpool_limits

    if not isinstance(config, FeatureConfig):
        raise ParameterError(f"config must be a FeatureConfig, got {type(config).__name__}")
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    with threadpool_limits(1, user_api="blas"):
        for p in paths:
            yield _one(p, config, cache, with_frames, excerpts)


def extract_batch(paths, config, cache_dir=None, with_frames=False, excerpts=None):
    """Worker: features of several files with one BLAS thread, through the cache if given.

    Parameters
    ----------
    paths : sequence of str or Path
    config : FeatureConfig
    cache_dir : str or Path, optional
    with_frames : bool, default False
    excerpts : (int, float), optional
        ``(n_excerpts, seconds)``: long files are represented by excerpts
        (:func:`audiogmm.features.extract_excerpts`; not cached, no frame indices).

    Returns
    -------
    list of (X or None, frames or None, reason or None)
        One per path, in order; ``reason`` says why a file could not be used. Exceptions
        other than MemoryError/KeyboardInterrupt never escape: one bad file must not end
        a run.
    """
    from threadpoolctl import threadpool_limits

    if not isinstance(config, FeatureConfig):
        raise ParameterError(f"config must be a FeatureConfig, got {type(config).__name__}")
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    with threadpool_limits(1, user_api="blas"):
        return [_one(p, config, cache, with_frames, excerpts) for p in paths]
