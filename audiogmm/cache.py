"""The feature store: feature matrices on disk, keyed, proven on read, indexed, memory-mapped.

A corpus is decoded and analysed once; later runs read the features back, in RAM
(:meth:`FeatureCache.get`) or memory-mapped (:meth:`FeatureCache.open_entry`,
:meth:`FeatureCache.loader`), so training can stream a corpus larger than memory.

Layout
------
``<store>/<k[:2]>/<k>.npy`` holds ``X`` (float32, C order, ``(n_frames, n_features)``) for
the key ``k``; with ``vad=True`` a ``<k>.frames.npy`` beside it holds the indices (int64)
of the frames the VAD kept (the segment timeline needs their times). ``<store>/index.jsonl``
lists what :func:`audiogmm.pipeline.cache_features` stored (see "The index").

Each entry file is a plain ``.npy`` (read with ``allow_pickle=False``, so a store from
elsewhere cannot run code) followed by a trailer of :data:`TRAILER_SIZE` bytes that
``np.load`` ignores: the magic ``AGMMKEY2``, the entry's key (64 ASCII hex digits) and its
shape as two little-endian uint64 (rows, columns; 0 columns for the 1-D frame indices).
An entry is used only when

* its header parses, declares the expected dtype, ``ndim``, column count and C order,
* the file's size is exactly header + ``rows * columns * itemsize`` + trailer (checked from
  the header and ``fstat`` before anything is allocated: a header declaring 2**40 rows is
  refused, not allocated), and
* the trailer's magic, key and shape match: a file copied or renamed under another
  entry's name (a *swapped* entry, even one of the same shape), a truncated or padded file
  and a foreign ``.npy`` are all refused.

A refused entry gives a :class:`~audiogmm.exceptions.CacheWarning` naming the file and
the reason, and is recomputed and overwritten; a missing entry is a silent miss.

The key
-------
``k`` is the SHA-256 of a JSON record of the file's **resolved path, size and modification
time in nanoseconds** (``st_size``, ``st_mtime_ns``), the :class:`~audiogmm.features.FeatureConfig`
(``to_dict()``), the excerpt spec (``None`` for a whole recording, else ``[n_excerpts,
seconds]``: excerpt features are entries of their own) and :data:`CACHE_VERSION`. This is the
trade-off Python makes for its ``.pyc`` files, chosen over hashing the bytes for speed: a
``stat`` costs microseconds, while SHA-256 of the audio would cap the speed-up of a cached
run at about 10x for 44.1 kHz stereo files.

* A file rewritten in place is recomputed: its size or ``mtime_ns`` changes. The exception
  is a rewrite that keeps the size *and* forces the old modification time back (``touch
  -d``, ``cp -p``/``rsync -t`` of another file of the same size over it, or two writes
  within one kernel clock tick, ~4 ms): then the stale features are served. Delete the
  store after such surgery.
* The path is part of the key because size + mtime alone can collide: files unpacked
  from an archive share their whole-second mtimes, and fixed-length clips their sizes.
  A moved, renamed, copied or ``touch``-ed file is therefore recomputed once (a cache
  miss, never a wrong result).
* Changing any field of the FeatureConfig changes the key, so the same store serves
  several configurations side by side.

The index
---------
``index.jsonl`` holds one JSON object per line and per (recording, configuration)::

    {"path": "/abs/corpus/rock/a.wav", "label": "rock", "key": "3f…", "n_frames": 2999,
     "n_features": 60, "dtype": "float32", "config": "9c1e…"}

``path`` is the resolved path (the one in the key), ``label`` the recording's label or
null, ``config`` :meth:`FeatureCache.config_id` of the configuration. Writing an index merges
it with the existing one (a row replaces the row of the same ``path`` and ``config``) under a
lock and replaces the file atomically; :func:`read_index` (or :meth:`FeatureCache.index`)
reads it back, so training can plan its chunks from ``n_frames`` without opening an entry.
The index is a plan, not a proof: every entry is still checked when it is opened.

Writes are atomic (a temporary file in the same folder, then :func:`os.replace`), so a
reader never sees half an entry. Nothing is ever evicted: remove the store (or old ``??/``
sub-folders) to reclaim space. Entries take the size of ``X``: about 24 KB per second of
audio with the default 60 features at 100 frames per second.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
from pathlib import Path

import numpy as np

from ._files import pread_into, write_atomically
from .exceptions import AudiogmmError, CacheWarning, ParameterError
from .features import FeatureConfig, extract_excerpts, extract_file

__all__ = ["FeatureCache", "EntryLoader", "read_index", "CACHE_VERSION", "INDEX_NAME", "TRAILER_SIZE"]

#: Bumped whenever the stored features, the entry layout or the key would change for the
#: same inputs (2: key trailer, excerpt entries).
CACHE_VERSION = 2
#: The index file's name inside the store.
INDEX_NAME = "index.jsonl"

_MAGIC = b"AGMMKEY2"
_TRAILER = struct.Struct("<8s64sQQ")
#: Bytes after the ``.npy`` data of every entry: magic, key, rows, columns.
TRAILER_SIZE = _TRAILER.size
#: An index line longer than this is damaged (a real row is a few hundred bytes).
_MAX_INDEX_LINE = 1 << 16
_INDEX_FIELDS = {"path": str, "key": str, "n_frames": int, "n_features": int, "dtype": str, "config": str}


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
    >>> X = cache.extract("a.wav", FeatureConfig())  # doctest: +SKIP
    >>> key = cache.key("a.wav", FeatureConfig())  # doctest: +SKIP
    >>> Xm = cache.open_entry(key)  # memory-mapped, copy-on-write  # doctest: +SKIP
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

    def _config(self, config):
        cfg = self._config_json.get(config)
        if cfg is None:
            if not isinstance(config, FeatureConfig):
                raise ParameterError(f"config must be a FeatureConfig, got {type(config).__name__}")
            cfg = self._config_json[config] = json.dumps(config.to_dict(), sort_keys=True)
        return cfg

    def config_id(self, config) -> str:
        """A short stable name (16 hex digits) of ``config``, as in the index's ``config`` field."""
        return hashlib.sha256(self._config(config).encode("utf-8")).hexdigest()[:16]

    def key(self, path, config, *, excerpts=None) -> str | None:
        """The entry's key (64 hex digits), or None when the file cannot be ``stat``-ed.

        Parameters
        ----------
        path : str or path-like
        config : FeatureConfig
        excerpts : (int, float), optional
            ``(n_excerpts, seconds)`` for the features of excerpts
            (:func:`~audiogmm.features.extract_excerpts`), an entry of its own.
        """
        cfg = self._config(config)
        try:
            resolved = os.path.realpath(path)
            st = os.stat(resolved)
        except (OSError, ValueError):  # ValueError: a NUL in the name
            return None
        ex = None if excerpts is None else [int(excerpts[0]), float(excerpts[1])]
        record = json.dumps([CACHE_VERSION, resolved, st.st_size, st.st_mtime_ns, cfg, ex])
        return hashlib.sha256(record.encode("utf-8", "surrogateescape")).hexdigest()

    def entry_path(self, key) -> Path:
        """Where the features of ``key`` live (whether or not they are there)."""
        _check_key(key)
        return self.directory / key[:2] / f"{key}.npy"

    def _frames_path(self, key) -> Path:
        return self.directory / key[:2] / f"{key}.frames.npy"

    def contains(self, path, config, *, excerpts=None) -> bool:
        """Whether an entry file exists for ``path`` (not whether it passes its checks)."""
        key = self.key(path, config, excerpts=excerpts)
        return key is not None and self.entry_path(key).is_file()

    def get(self, path, config, *, with_frames=False, key=None, excerpts=None):
        """The stored features of ``path`` under ``config``, or None on a miss.

        An entry that fails its checks (see the module notes) is a miss with a
        :class:`~audiogmm.exceptions.CacheWarning`.

        Parameters
        ----------
        path : str or path-like
        config : FeatureConfig
        with_frames : bool, default False
            Return ``(X, frames)``: the kept frames' indices, as
            :func:`~audiogmm.features.extract_file` with ``return_frames=True``
            (None for excerpt entries).
        key : str, optional
            A key from :meth:`key` (saves a ``stat``).
        excerpts : (int, float), optional
            As :meth:`key`.

        Returns
        -------
        X : np.ndarray or None
            Or ``(X, frames)`` with ``with_frames=True``.
        """
        key = key or self.key(path, config, excerpts=excerpts)
        if key is None:
            return None
        X = self._read(self.entry_path(key), key, np.float32, config.n_features)
        if X is None:
            return None
        frames = None
        if config.vad and excerpts is None:
            frames = self._read(self._frames_path(key), key, np.int64, None)
            if frames is None:
                return None
            if frames.shape[0] != X.shape[0]:
                _warn(self._frames_path(key), f"it holds {frames.shape[0]} frame indices for "
                                              f"{X.shape[0]} feature frames")
                return None
        elif with_frames and excerpts is None:
            frames = np.arange(X.shape[0])
        return (X, frames) if with_frames else X

    def verify(self, path, config, *, key=None, excerpts=None) -> int | None:
        """The frame count of a valid entry for ``path``, or None, without reading its data.

        The same checks as :meth:`get` (header, size, key trailer; a refused entry warns),
        from the headers and trailers alone.
        """
        key = key or self.key(path, config, excerpts=excerpts)
        if key is None:
            return None
        shape = self._read(self.entry_path(key), key, np.float32, config.n_features, load=False)
        if shape is None:
            return None
        if config.vad and excerpts is None:
            f_shape = self._read(self._frames_path(key), key, np.int64, None, load=False)
            if f_shape is None or f_shape[0] != shape[0]:
                if f_shape is not None:
                    _warn(self._frames_path(key), f"it holds {f_shape[0]} frame indices for {shape[0]} "
                                                  f"feature frames")
                return None
        return int(shape[0])

    def _read(self, path, key, dtype, n_cols, load=True):
        """The checked entry's data (its shape with ``load=False``), or None (warned if refused)."""
        try:
            with open(path, "rb") as fh:
                offset, shape = _check_entry(fh, key, dtype, 1 if n_cols is None else 2, n_cols)
                if not load:
                    return shape
                count = int(np.prod(shape))
                fh.seek(offset)
                data = np.fromfile(fh, dtype=dtype, count=count)
        except FileNotFoundError:
            return None
        except _BadEntry as exc:
            _warn(path, str(exc))
            return None
        except (OSError, ValueError) as exc:
            _warn(path, f"it cannot be read ({exc})")
            return None
        if data.size != count:  # shrunk between the check and the read
            _warn(path, "it was truncated while being read")
            return None
        return data.reshape(shape)

    def open_entry(self, key, *, n_features=None) -> np.ndarray:
        """The features of ``key``, memory-mapped copy-on-write (``mmap_mode="c"``).

        Copy-on-write rather than read-only because numba compiles a separate, uncached
        specialisation for read-only arrays. The entry is checked first (see the module
        notes); nothing of the data is read until it is used.

        Parameters
        ----------
        key : str
            A key from :meth:`key` or the index.
        n_features : int, optional
            The column count it must have.

        Returns
        -------
        X : np.memmap, float32, shape (n_frames, n_features)

        Raises
        ------
        AudiogmmError
            The entry is missing or fails its checks (the message names the file and why).
        """
        return _open_checked(self.entry_path(key), key, n_features)

    def loader(self, key, *, n_features=None) -> "EntryLoader":
        """A picklable callable that opens :meth:`open_entry` ``(key)`` each time it is called.

        For a lazily opened part of a frame source (one map per read, none held open).
        """
        return EntryLoader(self.entry_path(key), key, n_features)

    def put(self, path, config, X, frames=None, *, key=None, excerpts=None) -> bool:
        """Store ``X`` (and, with ``config.vad``, ``frames``) atomically.

        Returns
        -------
        bool
            Whether the entry was written (False if the file cannot be ``stat``-ed or the
            store is not writable: the store is an optimisation, never an error).
        """
        key = key or self.key(path, config, excerpts=excerpts)
        if key is None:
            return False
        x_path = self.entry_path(key)
        try:
            x_path.parent.mkdir(exist_ok=True)
            if config.vad and excerpts is None:
                if frames is None:
                    raise ParameterError("frames is required when config.vad is true")
                _save_atomic(self._frames_path(key), np.asarray(frames, dtype=np.int64), key)
            # the features last: their presence is what makes a hit
            _save_atomic(x_path, np.ascontiguousarray(X, dtype=np.float32), key)
        except OSError:
            return False
        return True

    def extract(self, path, config, *, with_frames=False, excerpts=None):
        """``extract_file(path, config)`` through the store: read, or compute and store.

        With ``excerpts=(n, seconds)``, :func:`~audiogmm.features.extract_excerpts` instead
        (no frame indices: ``frames`` is None).

        Raises
        ------
        AudioLoadError
            As :func:`~audiogmm.features.extract_file`.
        """
        key = self.key(path, config, excerpts=excerpts)
        hit = self.get(path, config, with_frames=with_frames, key=key, excerpts=excerpts)
        if hit is not None:
            return hit
        X, frames = self.compute(path, config, key=key, excerpts=excerpts)
        return (X, frames) if with_frames else X

    def compute(self, path, config, *, key=None, excerpts=None):
        """Extract ``path`` and store the result under ``key``; return ``(X, frames)``.

        The entry is written only if the file did not change while it was read (its key
        is the same after). ``frames`` is None for excerpts.

        Raises
        ------
        AudioLoadError
            As :func:`~audiogmm.features.extract_file`.
        """
        key = key or self.key(path, config, excerpts=excerpts)
        if excerpts is not None:
            X = extract_excerpts(path, config, n_excerpts=excerpts[0], seconds=excerpts[1])
            frames = None
        else:
            X, frames = extract_file(path, config, return_frames=True)
        if key is not None and self.key(path, config, excerpts=excerpts) == key:
            self.put(path, config, X, frames, key=key, excerpts=excerpts)
        return X, frames

    def index(self, config=None) -> list:
        """The rows of the store's index (see :func:`read_index`)."""
        return read_index(self.directory, config=None if config is None else self.config_id(config))

    def write_index(self, rows) -> Path:
        """Merge ``rows`` into the store's index and write it atomically.

        Parameters
        ----------
        rows : iterable of dict
            With the fields described in the module notes; a row replaces the existing
            row of the same ``path`` and ``config``.

        Returns
        -------
        Path
            The index file.
        """
        rows = [_check_row(r) for r in rows]
        target = self.directory / INDEX_NAME
        with _locked(self.directory / ".index.lock"):
            merged = {(r["path"], r["config"]): r for r in read_index(self.directory)}
            merged.update({(r["path"], r["config"]): r for r in rows})
            lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in merged.values())
            write_atomically(target, lambda fh: fh.write(lines), text=True, fsync=False, prefix=".tmp-index-")
        return target


class EntryLoader:
    """Opens one checked entry memory-mapped (``mmap_mode="c"``) each time it is called.

    Parameters
    ----------
    path : str or Path
        The entry file.
    key : str
    n_features : int, optional
    """

    __slots__ = ("path", "key", "n_features")

    def __init__(self, path, key, n_features=None):
        self.path, self.key, self.n_features = str(path), key, n_features

    def __call__(self) -> np.ndarray:
        return _open_checked(self.path, self.key, self.n_features)

    def read_rows(self, start, stop, out):
        """Read rows ``start:stop`` of the entry straight into ``out`` (C-contiguous float32).

        One ``preadv`` from the page cache into the caller's buffer: no mapping is made or
        kept, so memory stays flat, and no second copy. The entry is checked as by
        :meth:`__call__` once per process and file state (inode, size, modification time): a
        replaced or damaged file is checked again before any of its rows is used.
        """
        fd = os.open(self.path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            offset, shape = _checked_layout(self.path, fd, st, self.key, self.n_features)
            if not 0 <= start <= stop <= shape[0] or out.shape != (stop - start, shape[1]) \
                    or out.dtype != np.float32 or not out.flags.c_contiguous:
                raise AudiogmmError(f"feature store entry {self.path}: rows {start}:{stop} do not fit its shape "
                                    f"{shape} or the buffer {out.shape} {out.dtype}")
            if pread_into(fd, out, offset + start * shape[1] * 4) < out.nbytes:
                raise AudiogmmError(f"feature store entry {self.path} ended early (truncated while in use); "
                                    f"recompute it (audiogmm features)")
        except OSError as exc:
            raise AudiogmmError(f"feature store entry {self.path} cannot be read ({exc.strerror or exc}); "
                                f"recompute it (audiogmm features)") from None
        finally:
            os.close(fd)

    def __repr__(self):
        return f"EntryLoader({self.path!r})"

    def __getstate__(self):
        return (self.path, self.key, self.n_features)

    def __setstate__(self, state):
        self.path, self.key, self.n_features = state


def read_index(directory, *, config=None) -> list:
    """The rows of ``<directory>/index.jsonl`` (an empty list when there is none).

    Parameters
    ----------
    directory : str or Path
        The store.
    config : str, optional
        Keep only the rows of this :meth:`FeatureCache.config_id`.

    Returns
    -------
    list of dict
        ``path``, ``label``, ``key``, ``n_frames``, ``n_features``, ``dtype``, ``config``, in
        file order. A damaged line is left out with a
        :class:`~audiogmm.exceptions.CacheWarning` naming the line.
    """
    target = Path(directory) / INDEX_NAME
    rows = []
    try:
        fh = open(target, "rb")
    except FileNotFoundError:
        return rows
    except OSError as exc:
        raise AudiogmmError(f"{target}: the feature index cannot be read ({exc.strerror or exc})") from None
    with fh:
        for n, line in enumerate(iter(lambda: fh.readline(_MAX_INDEX_LINE + 1), b""), 1):
            try:
                if len(line) > _MAX_INDEX_LINE:
                    raise ValueError("the line is too long")
                row = _check_row(json.loads(line.decode("utf-8")))
            except (ValueError, TypeError, RecursionError) as exc:
                warnings.warn(f"{target}, line {n}: left out, it is not an index row ({exc})",
                              CacheWarning, stacklevel=2)
                if len(line) > _MAX_INDEX_LINE:
                    while line and not line.endswith(b"\n"):  # skip the rest of the long line
                        line = fh.readline(_MAX_INDEX_LINE)
                continue
            if config is None or row["config"] == config:
                rows.append(row)
    return rows


def _check_row(row):
    if not isinstance(row, dict):
        raise ValueError("a row must be a JSON object")
    for name, kind in _INDEX_FIELDS.items():
        value = row.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{name} must be a {kind.__name__}, got {value!r:.40}")
    _check_key(row["key"])
    if row["n_frames"] < 1 or row["n_features"] < 1:
        raise ValueError("n_frames and n_features must be >= 1")
    if row.get("label") is not None and not isinstance(row["label"], str):
        raise ValueError("label must be a string or null")
    return {"path": row["path"], "label": row.get("label"), **{name: row[name] for name in _INDEX_FIELDS}}


class _BadEntry(Exception):
    pass


def _check_key(key):
    if not (isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
        raise ParameterError(f"key must be 64 lowercase hex digits (from FeatureCache.key), got {key!r:.80}")


def _check_entry(fh, key, dtype, ndim, n_cols=None):
    """``(data offset, shape)`` of the open entry ``fh``, or :class:`_BadEntry` saying why.

    ``n_cols`` (2-D entries) is the column count required, None for any.
    """
    size = os.fstat(fh.fileno()).st_size
    try:
        major, _ = np.lib.format.read_magic(fh)
        if major == 1:
            shape, fortran, found = np.lib.format.read_array_header_1_0(fh)
        elif major in (2, 3):
            shape, fortran, found = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"npy version {major}")
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise _BadEntry(f"it is not a readable .npy file ({exc})") from None
    if found != np.dtype(dtype) or fortran or len(shape) != ndim:
        raise _BadEntry(f"it holds {found} of shape {shape}{' (Fortran order)' if fortran else ''}, "
                        f"not {np.dtype(dtype)} with {ndim} dimension(s)")
    if n_cols is not None and shape[1] != n_cols:
        raise _BadEntry(f"it has {shape[1]} features per frame, not {n_cols}")
    if shape[0] < 1:
        raise _BadEntry("it holds no frames")
    offset = fh.tell()
    cols = shape[1] if ndim == 2 else 0
    expected = offset + shape[0] * max(cols, 1) * np.dtype(dtype).itemsize + TRAILER_SIZE
    if size != expected:
        raise _BadEntry(f"it is {size} bytes but its header declares {shape[0]} rows ({expected} bytes): "
                        f"truncated, padded or foreign")
    fh.seek(size - TRAILER_SIZE)
    magic, stored_key, rows, stored_cols = _TRAILER.unpack(fh.read(TRAILER_SIZE))
    if magic != _MAGIC:
        raise _BadEntry("it has no audiogmm key trailer (a foreign file or an older store layout)")
    if stored_key != key.encode("ascii"):
        raise _BadEntry(f"it is the entry of another key ({stored_key[:12].decode('ascii', 'replace')}...): "
                        f"a swapped or copied file")
    if (rows, stored_cols) != (shape[0], cols):
        raise _BadEntry(f"its trailer records shape ({rows}, {stored_cols}), its header {shape}")
    return offset, shape


#: Entries already checked by this process: path -> ((inode, size, mtime_ns), data offset, shape).
_CHECKED = {}


def _checked_layout(path, fd, st, key, n_features):
    """``(data offset, shape)`` of an entry, checked once per process and file state."""
    state = (st.st_ino, st.st_size, st.st_mtime_ns)
    known = _CHECKED.get(path)
    if known is not None and known[0] == state:
        return known[1], known[2]
    try:
        with os.fdopen(os.dup(fd), "rb") as fh:
            offset, shape = _check_entry(fh, key, np.float32, 2, n_features)
    except _BadEntry as exc:
        raise AudiogmmError(f"feature store entry {path}: {exc}; recompute it (audiogmm features)") from None
    _CHECKED[path] = (state, offset, shape)
    return offset, shape


def _open_checked(path, key, n_features):
    try:
        with open(path, "rb") as fh:
            _check_entry(fh, key, np.float32, 2, n_features)
    except _BadEntry as exc:
        raise AudiogmmError(f"feature store entry {path}: {exc}; recompute it (audiogmm features)") from None
    except OSError as exc:
        raise AudiogmmError(f"feature store entry {path} cannot be opened ({exc.strerror or exc}); "
                            f"recompute it (audiogmm features)") from None
    return np.load(path, mmap_mode="c", allow_pickle=False)


def _warn(path, reason):
    warnings.warn(f"feature store entry {path} is not used: {reason}; recomputing it", CacheWarning,
                  stacklevel=4)


def _save_atomic(path: Path, array: np.ndarray, key: str) -> None:
    rows = array.shape[0]
    cols = array.shape[1] if array.ndim == 2 else 0
    trailer = _TRAILER.pack(_MAGIC, key.encode("ascii"), rows, cols)

    def write(fh):
        np.save(fh, array, allow_pickle=False)
        fh.write(trailer)

    # no fsync: an entry lost in a power cut is recomputed (its size check fails or it is missing)
    write_atomically(path, write, fsync=False, prefix=".tmp-", suffix=".npy")


class _locked:
    """An exclusive ``flock`` on ``path`` (a no-op where ``fcntl`` is missing)."""

    def __init__(self, path):
        self.path, self.fd = path, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: the atomic replace still keeps the file whole
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
        return False
