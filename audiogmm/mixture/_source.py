"""Frame sources: the frames of one fit as a virtual (n_frames, n_features) matrix.

A source is what the EM driver iterates over, chunk by chunk, instead of one array in
memory. The protocol (duck-typed; any object with these members is a source):

``n_frames``, ``n_features`` : int
``dtype`` : numpy dtype (float32 or float64)
``c_contiguous`` : bool
    True when ``read`` returns C-contiguous arrays (the numba kernels need them).
``read(start, stop, out=None) -> ndarray`` of shape (stop - start, n_features)
    Rows ``start:stop``, a view when possible, else gathered into ``out[:stop - start]``
    (a C-contiguous (m >= stop - start, n_features) array of ``dtype``) or a new array.
    The result is only valid until the next ``read`` into the same ``out``.
``take(indices) -> ndarray`` of shape (len(indices), n_features)
    The rows at global indices (sorted ascending is the efficient case; any order works).

Reads give exactly the float values the concatenated array would (dtype preserved), so a
fit over a source is bit-identical to the fit over the array it stands for. Sources are
picklable when their parts are (an ndarray or a picklable zero-argument callable, e.g.
``functools.partial(np.load, path, mmap_mode="c")``), so executors in other processes can
read where the data lives.
"""

from __future__ import annotations

import numpy as np

from audiogmm._validation import check_frames, is_int
from audiogmm.exceptions import ParameterError

__all__ = ["ArraySource", "ConcatSource", "IndexedSource", "as_source", "is_source"]


def is_source(obj):
    """True if ``obj`` has the frame-source protocol (and is not an array)."""
    return (not isinstance(obj, np.ndarray)
            and all(hasattr(obj, a) for a in ("n_frames", "n_features", "dtype", "read",
                                               "take")))


def as_source(X, *, name="X"):
    """``X`` itself if it is a source, else :class:`ArraySource` of the checked array."""
    if is_source(X):
        if not (is_int(X.n_frames) and X.n_frames >= 1):
            raise ParameterError(f"{name}: the frame source has n_frames={X.n_frames!r}; it "
                                 f"must hold at least one frame")
        if not (is_int(X.n_features) and X.n_features >= 1):
            raise ParameterError(f"{name}: the frame source has n_features={X.n_features!r}; "
                                 f"it must hold at least one feature")
        if np.dtype(X.dtype) not in (np.float32, np.float64):
            raise ParameterError(f"{name}: the frame source has dtype {X.dtype}; it must be "
                                 f"float32 or float64")
        return X
    return ArraySource(X, name=name)


def _check_range(source, start, stop):
    if not (0 <= start <= stop <= source.n_frames):
        raise ParameterError(f"rows {start}:{stop} are outside the source's "
                             f"{source.n_frames} frames")


def _buffer(out, n, d, dtype):
    if out is None:
        return np.empty((n, d), dtype=dtype)
    if out.dtype != dtype or out.ndim != 2 or out.shape[0] < n or out.shape[1] != d:
        raise ParameterError(f"out must be an array of dtype {dtype} and shape (>= {n}, {d}), "
                             f"got {out.dtype} {out.shape}")
    return out[:n]


class ArraySource:
    """An in-memory 2-D array as a source (``read`` returns views, nothing is copied).

    Parameters
    ----------
    X : array-like of shape (n_frames, n_features)
        Checked as ``DiagonalGMM.fit`` checks it; float32/float64 arrays are not copied.
    """

    def __init__(self, X, *, name="X"):
        self.X = check_frames(X, name=name)
        self.n_frames, self.n_features = self.X.shape
        self.dtype = self.X.dtype
        # A non-C-contiguous array is read as strided views (the NumPy path handles them;
        # the numba kernels are used only on C-contiguous frames, as before sources).
        self.c_contiguous = bool(self.X.flags.c_contiguous)

    def read(self, start, stop, out=None):
        """Rows ``start:stop`` as a view of the array."""
        return self.X[start:stop]

    def take(self, indices):
        """Rows at ``indices`` (a copy)."""
        return self.X[np.asarray(indices, dtype=np.intp)]

    def __repr__(self):
        return f"ArraySource({self.n_frames} x {self.n_features}, {self.dtype})"


class ConcatSource:
    """The recordings of one class as one source, without concatenating them.

    Parameters
    ----------
    parts : sequence of ndarray or zero-argument callable
        Each part is a (n_i, n_features) array, or a callable returning an array-like
        (e.g. ``functools.partial(np.load, path, mmap_mode="c")``). A callable is called at
        every read that touches it and its result dropped afterwards, so a store-backed
        source holds no mapping between reads (peak memory stays flat in the frame count).
    lengths : sequence of int, optional
        Frames of each part; required for callable parts (so that chunks can be planned
        without opening them), checked against arrays.
    n_features : int, optional
        Needed only when every part is a callable (else the first one is opened once).
    dtype : dtype, optional
        The source's dtype; default: NumPy's result type of the parts (as ``np.concatenate``),
        float64 for integer parts.

    Examples
    --------
    >>> import numpy as np
    >>> a, b = np.arange(6.0).reshape(3, 2), np.arange(6.0, 10.0).reshape(2, 2)
    >>> src = ConcatSource([a, lambda: b], lengths=[3, 2])
    >>> src.read(2, 4).tolist()
    [[4.0, 5.0], [6.0, 7.0]]
    """

    def __init__(self, parts, lengths=None, *, n_features=None, dtype=None):
        parts = list(parts)
        if not parts:
            raise ParameterError("parts must hold at least one array or callable, got none")
        if lengths is not None:
            lengths = list(lengths)
            if len(lengths) != len(parts):
                raise ParameterError(f"lengths has {len(lengths)} entries for {len(parts)} "
                                     f"parts; give one length per part")
        widths, dtypes, lens = set(), [], []
        for i, part in enumerate(parts):
            if callable(part) and not isinstance(part, np.ndarray):
                if lengths is None or not is_int(lengths[i]) or lengths[i] < 0:
                    raise ParameterError(f"part {i} is a callable: pass its frame count in "
                                         f"lengths (an int >= 0), got "
                                         f"{None if lengths is None else lengths[i]!r}")
                lens.append(int(lengths[i]))
                continue
            arr = np.asarray(part)
            if arr.ndim != 2:
                raise ParameterError(f"part {i} must be a 2-D array (n_frames, n_features), "
                                     f"got shape {arr.shape}")
            if lengths is not None and lengths[i] != arr.shape[0]:
                raise ParameterError(f"part {i} has {arr.shape[0]} frames but lengths says "
                                     f"{lengths[i]!r}")
            parts[i] = arr
            widths.add(arr.shape[1])
            dtypes.append(arr.dtype)
            lens.append(arr.shape[0])
        if (n_features is None and not widths) or (dtype is None and not dtypes):
            first = np.asarray(parts[0]())  # opened once to learn the width and dtype
            widths.add(first.shape[1] if first.ndim == 2 else -1)
            dtypes.append(first.dtype)
            del first
        if n_features is not None:
            widths.add(int(n_features))
        if len(widths) != 1 or min(widths) < 1:
            raise ParameterError(f"all parts must have the same number of features (>= 1), "
                                 f"got {sorted(widths)}")
        if dtype is None:
            dtype = np.result_type(*dtypes)
            if dtype not in (np.float32, np.float64):
                dtype = np.dtype(np.float64)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ParameterError(f"dtype must be float32 or float64, got {dtype!r}")
        self.parts = parts
        self.lengths = np.asarray(lens, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.n_frames = int(self.offsets[-1])
        self.n_features = widths.pop()
        self.c_contiguous = True

    def _open(self, i):
        part = self.parts[i]
        if isinstance(part, np.ndarray):
            return part
        arr = np.asarray(part())
        if arr.shape != (self.lengths[i], self.n_features):
            raise ParameterError(f"part {i} returned an array of shape {arr.shape}, expected "
                                 f"({self.lengths[i]}, {self.n_features}) as declared")
        return arr

    def read(self, start, stop, out=None):
        """Rows ``start:stop``: a view inside one in-memory part, else gathered into ``out``."""
        _check_range(self, start, stop)
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        first = min(max(first, 0), len(self.parts) - 1)
        n = stop - start
        if n and stop <= self.offsets[first + 1] and isinstance(self.parts[first], np.ndarray):
            part = self.parts[first]
            view = part[start - self.offsets[first]:stop - self.offsets[first]]
            if view.dtype == self.dtype and view.flags.c_contiguous:
                return view
        buf = _buffer(out, n, self.n_features, self.dtype)
        i, row = first, start
        while row < stop:
            while self.offsets[i + 1] <= row:  # skip empty parts
                i += 1
            end = min(stop, int(self.offsets[i + 1]))
            a = row - int(self.offsets[i])
            reader = getattr(self.parts[i], "read_rows", None)
            if reader is not None and buf.dtype == self.dtype:  # e.g. a store entry: read into buf directly
                reader(a, a + end - row, buf[row - start:end - start])
            else:
                arr = self._open(i)
                buf[row - start:end - start] = arr[a:a + end - row]
                del arr  # release a mapping before opening the next part
            row, i = end, i + 1
        return buf

    def take(self, indices):
        """Rows at global ``indices`` (each part opened once, in order)."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        out = np.empty((idx.size, self.n_features), dtype=self.dtype)
        if idx.size == 0:
            return out
        if idx.min() < 0 or idx.max() >= self.n_frames:
            raise ParameterError(f"indices must lie in [0, {self.n_frames}), got "
                                 f"{idx.min()}..{idx.max()}")
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        which = np.searchsorted(self.offsets, sidx, side="right") - 1
        bounds = np.searchsorted(which, np.arange(len(self.parts) + 1))
        rows = np.empty_like(out)
        for i in range(len(self.parts)):
            a, b = bounds[i], bounds[i + 1]
            if a == b:
                continue
            arr = self._open(i)
            rows[a:b] = arr[sidx[a:b] - self.offsets[i]]
            del arr
        out[order] = rows
        return out

    def __repr__(self):
        return (f"ConcatSource({len(self.parts)} parts, {self.n_frames} x {self.n_features}, "
                f"{self.dtype})")


class IndexedSource:
    """Rows of ``base`` picked by an index array (repeats allowed), read chunk by chunk.

    The UBM's balanced pool without building it: ``IndexedSource(ConcatSource(all), idx)``
    reads as ``np.concatenate(all)[idx]`` would, a chunk at a time.

    Parameters
    ----------
    base : source or ndarray
    indices : array-like of int, shape (n_frames,)
        Global row indices into ``base``, in the order the rows appear in this source.
    """

    def __init__(self, base, indices):
        self.base = as_source(base, name="base")
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size < 1 or idx.dtype.kind not in "iu":
            raise ParameterError(f"indices must be a non-empty 1-D integer array, got "
                                 f"{idx.dtype} of shape {idx.shape}")
        if idx.min() < 0 or idx.max() >= self.base.n_frames:
            raise ParameterError(f"indices must lie in [0, {self.base.n_frames}), got "
                                 f"{idx.min()}..{idx.max()}")
        self.indices = idx.astype(np.int64)
        self.n_frames = int(idx.size)
        self.n_features = self.base.n_features
        self.dtype = np.dtype(self.base.dtype)
        self.c_contiguous = True

    def read(self, start, stop, out=None):
        """Rows ``start:stop`` gathered into ``out`` (or a new array)."""
        _check_range(self, start, stop)
        buf = _buffer(out, stop - start, self.n_features, self.dtype)
        buf[:] = self.base.take(self.indices[start:stop])
        return buf

    def take(self, indices):
        """Rows at ``indices`` of this source."""
        return self.base.take(self.indices[np.asarray(indices, dtype=np.intp)])

    def __repr__(self):
        return f"IndexedSource({self.n_frames} rows of {self.base!r})"
