"""The EM driver over a frame source: partitions, the canonical fold, executors, frame state.

Layout of a pass over ``N`` frames (``B`` = block size):

- a *chunk* is ``B * CHUNK_BLOCKS`` consecutive frames (the unit of the row threads);
- a *partition* is ``PARTITION_CHUNKS`` consecutive chunks (about 2^20 frames at the default
  block size; the unit of a distributed task). Both depend only on ``B`` and the module
  constants, never on the number of workers or threads.

The canonical fold: chunk statistics are summed in order within a partition, then the
partition sums in order. Below one partition this is the order the engine has always used,
so results are bit-identical for any executor, any number of threads or workers, and
whether the frames are one array, a :class:`~._source.ConcatSource` or a file-backed store.

The per-partition work is the top-level function :func:`accumulate_partition` of one
picklable :class:`PartitionTask`; an *executor* runs a list of them:
``executor.map(fn, list_of_args) -> list of results in order``. :class:`SerialExecutor` and
:class:`ThreadExecutor` ship here; a Dask adapter is any object with the same ``map`` (e.g.
``lambda fn, args: client.gather(client.map(fn, args))``), nothing here imports dask.
Executors whose ``task_unit`` is ``"chunk"`` (the in-process threads) get one task per chunk
instead of per partition, so threads parallelise below one partition too; the driver folds
the chunk results exactly as the partition task would.

Per-frame state: the previous iteration's per-frame log-likelihood (the *hint*) makes the
E-step one GEMM. A frame state stores it by *generation* (one per E-step pass): generation
``g`` reads ``g - 1``'s values and writes its own. :class:`MemoryFrameState` keeps one array
in RAM (read and overwritten in place, as the engine always did); :class:`FileFrameState`
keeps two files by parity, read and written chunk by chunk with ``pread``/``pwrite``, so
memory stays flat in ``N`` and a retried task (same generation) rewrites the same values.
"""

from __future__ import annotations

import math
import os
import threading
from typing import NamedTuple

import numpy as np

from audiogmm._files import pread_into
from audiogmm._validation import check_int, nonfinite_error

from ._init import initial_parameters
from ._stats import (CHUNK_BLOCKS, SuffStats, Workspace, _LOGGER, accumulate_range,
                     design_weights, numba_kernels, update)

__all__ = ["PARTITION_CHUNKS", "SerialExecutor", "ThreadExecutor", "MemoryFrameState",
           "FileFrameState", "PartitionTask", "accumulate_partition", "worst_partition",
           "partitions", "accumulate_source", "column_moments", "em_run"]

#: Chunks per partition: 64 chunks of 16 blocks of 1024 frames = 2^20 frames. Fixed (never
#: derived from workers or threads) because it sets the fold order.
PARTITION_CHUNKS = 64

#: A component whose responsibility sum falls below this is "empty".
_EMPTY_COUNT = 1e-3
#: A variance counts as "at the floor" when its raw value (before reg_covar) is at most
#: reg_covar + this fraction of the data variance in that dimension.
_FLOOR_RELATIVE = 1e-4
#: At most this many EM iterations per initialisation may re-seed components.
_MAX_RESEED_ROUNDS = 5
#: Column moments are summed over row steps of at least this many frames.
_MOMENT_STEP = 16384


# --------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------


class SerialExecutor:
    """Runs the tasks one after another in this thread."""

    task_unit = "partition"

    def map(self, fn, args):
        """``[fn(a) for a in args]``."""
        return [fn(a) for a in args]

    def __repr__(self):
        return "SerialExecutor()"


class ThreadExecutor:
    """Runs the tasks on ``n_threads`` threads of this process (results in order).

    The numba chunk kernel and BLAS release the GIL, so row chunks scale over threads. Keep
    BLAS on one thread (``single_blas_thread``) while it runs. Use as a context manager, or
    call :meth:`shutdown`; the pool is created at the first :meth:`map`.

    Parameters
    ----------
    n_threads : int >= 1
    """

    task_unit = "chunk"

    def __init__(self, n_threads):
        self.n_threads = check_int("n_threads", n_threads, 1)
        self._pool = None

    def map(self, fn, args):
        """``list(pool.map(fn, args))``."""
        args = list(args)
        if self.n_threads == 1 or len(args) < 2:
            return [fn(a) for a in args]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.n_threads)
        return list(self._pool.map(fn, args))

    def shutdown(self):
        """Stop the threads (a later ``map`` starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
        return False

    def __repr__(self):
        return f"ThreadExecutor({self.n_threads})"


# --------------------------------------------------------------------------------------
# Per-frame state
# --------------------------------------------------------------------------------------


class MemoryFrameState:
    """The per-frame hint in RAM: one array, read and overwritten in place by each pass.

    Protocol (shared with :class:`FileFrameState`):

    - ``prepare(n_frames, dtype)``: before a fit (and again when the compute dtype changes);
    - ``views(generation, start, stop, use_hint) -> (hint or None, out)``: the previous
      generation's values of rows ``start:stop`` (None when ``use_hint`` is False) and an
      array that receives this generation's (both of ``dtype``; here the same view);
    - ``commit(generation, start, out)``: store ``out`` as rows ``start:`` of ``generation``;
    - ``read(generation, start, stop)``: the stored values of ``generation`` (the last one
      written: re-seeding picks the worst-explained frames from them).
    """

    def __init__(self):
        self.values = None

    def prepare(self, n_frames, dtype):
        dtype = np.dtype(dtype)
        if self.values is None or self.values.shape != (n_frames,) or self.values.dtype != dtype:
            self.values = np.empty(n_frames, dtype=dtype)

    def views(self, generation, start, stop, use_hint):
        view = self.values[start:stop]
        return (view if use_hint else None), view

    def commit(self, generation, start, out):
        pass  # written in place

    def read(self, generation, start, stop):
        return self.values[start:stop]

    def __repr__(self):
        return "MemoryFrameState()"


class _ScratchFrameState:
    """No state: fresh output buffers, nothing kept (passes that need no hint)."""

    def prepare(self, n_frames, dtype):
        self.dtype = np.dtype(dtype)

    def views(self, generation, start, stop, use_hint):
        return None, np.empty(stop - start, dtype=self.dtype)

    def commit(self, generation, start, out):
        pass

    def read(self, generation, start, stop):
        raise NotImplementedError("a scratch frame state keeps no values")


class FileFrameState:
    """The per-frame hint in two files of ``directory`` (generation parity), not in RAM.

    Generation ``g`` reads file ``(g - 1) % 2`` and writes file ``g % 2``, chunk by chunk
    with ``os.pread``/``os.pwrite`` (no memory map, so resident memory stays flat in the
    frame count). A task retried for the same generation reads the same old values and
    rewrites the same new ones, so retries are safe. Picklable (file descriptors are opened
    lazily in each process); the files stay in ``directory`` until :meth:`remove`.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if missing; must be visible to every process that runs a task.
    """

    _NAMES = ("frame-state-0.bin", "frame-state-1.bin")

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        self.dtype = None
        self._fds = None
        self._pid = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"directory": self.directory, "dtype": self.dtype}

    def __setstate__(self, state):
        self.__init__(state["directory"])
        self.dtype = state["dtype"]

    def _files(self):
        with self._lock:
            if self._fds is None or self._pid != os.getpid():
                os.makedirs(self.directory, exist_ok=True)
                self._fds = [os.open(os.path.join(self.directory, name),
                                     os.O_RDWR | os.O_CREAT, 0o666) for name in self._NAMES]
                self._pid = os.getpid()
            return self._fds

    def prepare(self, n_frames, dtype):
        self.dtype = np.dtype(dtype)
        self._files()

    def read(self, generation, start, stop):
        values = np.empty(stop - start, dtype=self.dtype)
        done = pread_into(self._files()[generation % 2], values, start * self.dtype.itemsize)
        if done < values.nbytes:
            raise OSError(f"frame state {self.directory}: generation {generation} is "
                          f"missing rows from {start + done // self.dtype.itemsize}")
        return values

    def views(self, generation, start, stop, use_hint):
        hint = self.read(generation - 1, start, stop) if use_hint else None
        return hint, np.empty(stop - start, dtype=self.dtype)

    def commit(self, generation, start, out):
        fd = self._files()[generation % 2]
        view = memoryview(np.ascontiguousarray(out, dtype=self.dtype)).cast("B")
        offset, done = start * self.dtype.itemsize, 0
        while done < view.nbytes:
            done += os.pwrite(fd, view[done:], offset + done)

    def close(self):
        """Close the file descriptors of this process."""
        with self._lock:
            if self._fds is not None and self._pid == os.getpid():
                for fd in self._fds:
                    os.close(fd)
            self._fds = None

    def remove(self):
        """Close and delete the two files."""
        self.close()
        for name in self._NAMES:
            try:
                os.remove(os.path.join(self.directory, name))
            except FileNotFoundError:
                pass

    def __repr__(self):
        return f"FileFrameState({self.directory!r})"


# --------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------


def partitions(n_frames, block_size):
    """``(start, stop)`` of every partition of ``n_frames`` frames (the fixed layout)."""
    size = block_size * CHUNK_BLOCKS * PARTITION_CHUNKS
    return [(a, min(a + size, n_frames)) for a in range(0, n_frames, size)]


class PartitionTask(NamedTuple):
    """Everything one task needs (picklable when the source and the state are).

    ``start:stop`` is a partition, or one chunk of one (``task_unit == "chunk"``); either
    way a whole number of chunks from a partition's start, except at the end of the data.
    """

    source: object
    start: int
    stop: int
    block_size: int
    WT: np.ndarray
    center: np.ndarray
    use_numba: bool
    state: object
    generation: int
    use_hint: bool


_LOCAL = threading.local()


def _thread_buffers(k, d, bs, dtype, src_dtype, numba):
    """This thread's workspace and read buffer (kept for the next task of the same kind).

    Keyed by the numba flag too: the numba chunk kernel uses the design buffer with another
    layout, and the NumPy path relies on the row of ones written once at construction.
    """
    key = (k, d, bs, np.dtype(dtype), np.dtype(src_dtype), bool(numba))
    cached = getattr(_LOCAL, "buffers", None)
    if cached is None or cached[0] != key:
        ws = Workspace(k, d, bs, dtype)
        buf = np.empty((bs * CHUNK_BLOCKS, d), dtype=src_dtype)
        cached = _LOCAL.buffers = (key, ws, buf)
    return cached[1], cached[2]


def worst_frames(loglik, offset, m):
    """The ``m`` lowest values of ``loglik`` by (value, index): (values f64, global indices)."""
    n = loglik.size
    if m <= 0:
        return np.empty(0), np.empty(0, dtype=np.int64)
    idx = np.arange(n)
    if m < n:  # the m-th smallest value bounds the candidates (a few more on ties)
        idx = np.flatnonzero(loglik <= np.partition(loglik, m - 1)[m - 1])
    values = loglik[idx].astype(np.float64)
    order = np.lexsort((idx, values))[:m]
    return values[order], idx[order].astype(np.int64) + offset


def _merge_worst(values, indices, m):
    values, indices = np.concatenate(values), np.concatenate(indices)
    order = np.lexsort((indices, values))[:m]
    return values[order], indices[order]


def accumulate_partition(task):
    """Statistics of the frames ``task.start:task.stop`` (chunks folded in order).

    Reads each chunk from ``task.source``, takes the hint of generation
    ``task.generation - 1`` from ``task.state`` (if ``task.use_hint``), writes this
    generation's per-frame log-likelihoods back.

    Returns
    -------
    SuffStats
    """
    src, bs, WT = task.source, task.block_size, task.WT
    k, p = WT.shape
    d = (p - 2) // 2
    ws, buf = _thread_buffers(k, d, bs, WT.dtype, src.dtype, task.use_numba)
    ws.C[:] = task.center
    nb = numba_kernels() if task.use_numba else None
    chunk = bs * CHUNK_BLOCKS
    parts = []
    for a in range(task.start, task.stop, chunk):
        b = min(a + chunk, task.stop)
        X = src.read(a, b, out=buf)
        hint, out = task.state.views(task.generation, a, b, task.use_hint)
        acc, total = accumulate_range(X, WT, ws, 0, b - a, bs, hint, out, nb)
        task.state.commit(task.generation, a, out)
        parts.append(SuffStats.from_sums(acc, total, b - a))
    return SuffStats.fold(parts)


def worst_partition(args):
    """The ``m`` frames of ``start:stop`` with the lowest log-likelihood in ``generation``.

    ``args = (state, generation, start, stop, chunk, m)``; reads the frame state only (not
    the frames). Returns (values float64, global indices), ordered by (value, index).
    """
    state, generation, start, stop, chunk, m = args
    vals, idx = [], []
    for a in range(start, stop, chunk):
        v, i = worst_frames(state.read(generation, a, min(a + chunk, stop)), a, m)
        vals.append(v)
        idx.append(i)
    return _merge_worst(vals, idx, m)


def worst_source(n_frames, block_size, executor, state, generation, m):
    """The ``m`` worst frames of all of a generation (per partition, then merged)."""
    chunk = block_size * CHUNK_BLOCKS
    res = executor.map(worst_partition, [(state, generation, a, b, chunk, m)
                                         for a, b in partitions(n_frames, block_size)])
    return _merge_worst([v for v, _ in res], [i for _, i in res], m)


def accumulate_source(source, WT, center, *, block_size, executor, state, generation,
                      use_hint, use_numba=False):
    """One fused E-step pass over ``source``: statistics in the canonical fold order.

    Returns
    -------
    SuffStats
    """
    n = source.n_frames
    chunk = block_size * CHUNK_BLOCKS
    tasks, owner = [], []
    for j, (a, b) in enumerate(partitions(n, block_size)):
        ranges = ([(c, min(c + chunk, b)) for c in range(a, b, chunk)]
                  if getattr(executor, "task_unit", "partition") == "chunk" else [(a, b)])
        for s, e in ranges:
            tasks.append(PartitionTask(source, s, e, block_size, WT, center, use_numba, state,
                                       generation, use_hint))
            owner.append(j)
    results = executor.map(accumulate_partition, tasks)
    per_part = {}
    for j, r in zip(owner, results):
        per_part.setdefault(j, []).append(r)
    return SuffStats.fold(SuffStats.fold(per_part[j]) for j in sorted(per_part))


def moments_partition(args):
    """Column sums about ``x0`` of rows ``start:stop``: (s1, s2, lo, hi), float64."""
    source, start, stop, step, x0 = args
    d = x0.size
    s1, s2 = np.zeros(d), np.zeros(d)
    lo, hi = np.full(d, np.inf), np.full(d, -np.inf)
    with np.errstate(over="ignore", invalid="ignore"):
        for a in range(start, stop, step):
            b = np.asarray(source.read(a, min(a + step, stop)), dtype=np.float64) - x0
            s1 += b.sum(axis=0)
            s2 += np.einsum("ij,ij->j", b, b)
            np.minimum(lo, b.min(axis=0), out=lo)
            np.maximum(hi, b.max(axis=0), out=hi)
    return s1, s2, lo, hi


def nonfinite_partition(args):
    """(number of rows holding NaN/inf, first such global row or -1) in ``start:stop``."""
    source, start, stop, step = args
    count, first = 0, -1
    for a in range(start, stop, step):
        bad = np.flatnonzero(~np.isfinite(source.read(a, min(a + step, stop))).all(axis=1))
        if bad.size and first < 0:
            first = a + int(bad[0])
        count += int(bad.size)
    return count, first


def column_moments(source, block_size, executor, *, name="X"):
    """One pass over ``source``: column mean, variance and max |x - mean| (float64).

    Sums per partition, partitions folded in order (below one partition: one sequential
    pass in row steps of ``max(block_size, 16384)``). Raises ParameterError on NaN/inf.
    """
    n = source.n_frames
    x0 = np.asarray(source.read(0, 1)[0], dtype=np.float64)
    step = max(block_size, _MOMENT_STEP)
    parts = partitions(n, block_size)
    res = executor.map(moments_partition, [(source, a, b, step, x0) for a, b in parts])
    d = x0.size
    s1, s2 = np.zeros(d), np.zeros(d)
    lo, hi = np.full(d, np.inf), np.full(d, -np.inf)
    with np.errstate(over="ignore", invalid="ignore"):
        for p1, p2, plo, phi in res:
            s1 += p1
            s2 += p2
            np.minimum(lo, plo, out=lo)
            np.maximum(hi, phi, out=hi)
    if not (np.all(np.isfinite(s2)) and np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        bad = executor.map(nonfinite_partition, [(source, a, b, step) for a, b in parts])
        count = sum(c for c, _ in bad)
        if count:
            raise nonfinite_error(name, count, next(f for c, f in bad if c))
        from audiogmm.exceptions import ParameterError

        raise ParameterError(f"{name} has values too large to square in float64 (|x| > 1e150); "
                             f"rescale the features")
    m = s1 / n
    var = np.maximum(s2 / n - m * m, 0.0)
    mean = x0 + m
    max_dev = float(np.max(np.maximum(np.abs(lo - m), np.abs(hi - m))))
    return mean, var, max_dev


# --------------------------------------------------------------------------------------
# The EM loop
# --------------------------------------------------------------------------------------


def _reseed(source, w, mu, var, bad, worst_index, gvar, reg):
    """Move the ``bad`` components onto the worst-explained frames (in place).

    The i-th bad component (in component order) gets the i-th worst frame by (log-likelihood,
    global index); the rows are fetched with ``source.take``.
    """
    idx = np.flatnonzero(bad)
    good = ~bad
    worst = worst_index[:idx.size]
    order = np.sort(worst)
    rows = np.asarray(source.take(order), dtype=np.float64)
    mu[idx] = rows[np.searchsorted(order, worst)]
    typical = (w[good, None] * var[good]).sum(axis=0) / w[good].sum()
    var[idx] = np.maximum(typical, gvar + reg)
    w[idx] = 1.0 / w.size
    w /= w.sum()


def em_run(source, params, inits, *, init_params, executor, state, use_numba=True,
           verbose=0, n_init_override=None):
    """Fit a diagonal GMM to the frames of ``source`` by EM (``n_init`` runs, best kept).

    Parameters
    ----------
    source : frame source
    params : dict
        Validated ``DiagonalGMM`` parameters (``n_components``, ``tol``, ``reg_covar``,
        ``max_iter``, ``n_init``, ``dtype``, ``block_size``, ``rng``).
    inits : (weights_init, means_init, variances_init), each float64 or None
    init_params : {"k-means++", "random"}
    executor : executor (``map(fn, args)``)
    state : frame state (``prepare``/``views``/``commit``)
    use_numba : bool
        Allow the numba kernels (float32 compute on C-contiguous reads).
    verbose : int or callable

    Returns
    -------
    dict
        The best run: weights, means, variances, converged, n_iter, lower_bound, history,
        events (re-seeds), collapsed, change.
    """
    n, k = source.n_frames, params["n_components"]
    rng, bs, dtype = params["rng"], min(params["block_size"], n), params["dtype"]
    center64, gvar, max_dev = column_moments(source, bs, executor)
    if dtype == np.float32 and max_dev > 1e15:  # squares would overflow float32
        dtype = np.dtype(np.float64)
    deterministic = inits[1] is not None
    n_init = 1 if deterministic else params["n_init"]
    run = _Run(source, params, executor, state, bs, center64, gvar, verbose,
               use_numba and getattr(source, "c_contiguous", True))
    best = None
    for init in range(n_init):
        w, mu, var = initial_parameters(source, k, init_params, rng, params["reg_covar"],
                                        gvar, *inits)
        result = run.em(w, mu, var, dtype, init)
        if best is None or result["lower_bound"] > best["lower_bound"]:
            best = result
        if verbose and not callable(verbose):
            _LOGGER.info("init %d: lower bound %.6f after %d iterations (converged=%s)",
                         init, result["lower_bound"], result["n_iter"], result["converged"])
    return best


class _Run:
    """The EM iterations of one fit (shared settings across its initialisations)."""

    def __init__(self, source, params, executor, state, bs, center64, gvar, verbose, numba_ok):
        self.source, self.params, self.executor, self.state = source, params, executor, state
        self.bs, self.center64, self.gvar, self.verbose = bs, center64, gvar, verbose
        self.numba_ok = numba_ok
        self.generation = 0

    def _pass(self, WT, center, dtype, use_hint):
        self.generation += 1
        use_numba = self.numba_ok and dtype == np.float32 and numba_kernels() is not None
        return accumulate_source(self.source, WT, center, block_size=self.bs,
                                 executor=self.executor, state=self.state,
                                 generation=self.generation, use_hint=use_hint,
                                 use_numba=use_numba)

    def em(self, w, mu, var, dtype, init):
        params, n = self.params, self.source.n_frames
        k = w.shape[0]
        reg, tol = params["reg_covar"], params["tol"]
        center = self.center64.astype(dtype)
        c64 = center.astype(np.float64)  # the centre actually used
        self.state.prepare(n, dtype)
        have_hint = False
        history, events = [], []
        lower_bound, converged, n_iter = -np.inf, False, 0
        reseed_rounds, quiet_until = 0, 0
        floor = reg + _FLOOR_RELATIVE * self.gvar
        raw = None
        nk = None
        change = 0
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            if params["max_iter"] == 0:
                WT = design_weights(w, mu, var, c64).astype(dtype)
                stats = self._pass(WT, center, dtype, False)
                lower_bound = stats.loglik / n
            for n_iter in range(1, params["max_iter"] + 1):
                WT = design_weights(w, mu, var, c64).astype(dtype)
                stats = self._pass(WT, center, dtype, have_hint)
                if not math.isfinite(stats.loglik) and dtype == np.float32:
                    # float32 overflow (e.g. reg_covar=0 on wide data): redo in float64,
                    # the same generation again (exact maxima: no hint needed)
                    dtype = np.dtype(np.float64)
                    center = self.center64.copy()
                    c64 = self.center64
                    self.state.prepare(n, dtype)
                    WT = design_weights(w, mu, var, c64)
                    self.generation -= 1
                    stats = self._pass(WT, center, dtype, False)
                have_hint = True
                prev, lower_bound = lower_bound, stats.loglik / n
                history.append(lower_bound)
                w, mu, var, raw = update(stats, c64, reg)
                nk = stats.nk
                change = lower_bound - prev
                reseeded = False
                if reseed_rounds < _MAX_RESEED_ROUNDS:
                    bad = (nk < _EMPTY_COUNT) | ((nk < 2) & np.all(raw <= floor, axis=1))
                    if bad.any() and bad.sum() < k:
                        # the worst frames of this pass, from the frame state (a rare
                        # extra read of 4-8 bytes per frame instead of a cost every pass)
                        _, worst = worst_source(n, self.bs, self.executor, self.state,
                                                self.generation, int(bad.sum()))
                        _reseed(self.source, w, mu, var, bad, worst, self.gvar, reg)
                        events.append((n_iter, np.flatnonzero(bad).tolist(), nk[bad].tolist()))
                        reseed_rounds += 1
                        reseeded = True
                        quiet_until = n_iter + 1
                if callable(self.verbose):
                    self.verbose(init=init, n_iter=n_iter, lower_bound=lower_bound,
                                 change=change)
                elif self.verbose and self.verbose >= 2:
                    _LOGGER.info("init %d iteration %d: lower bound %.6f (change %.3g)",
                                 init, n_iter, lower_bound, change)
                if abs(change) < tol and not reseeded and n_iter > quiet_until:
                    converged = True
                    break
        collapsed = []
        if raw is not None:
            collapsed = np.flatnonzero((nk >= 2) & np.all(raw <= floor, axis=1)).tolist()
        return {"weights": w, "means": mu, "variances": var, "converged": converged,
                "n_iter": n_iter, "lower_bound": lower_bound, "history": history,
                "events": events, "collapsed": collapsed, "change": change if history else 0}
