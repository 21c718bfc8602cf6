"""Dask clients for ``--scheduler``: connect to a cluster, or start a local one that behaves.

Nothing here imports dask at module import: :func:`client_for` imports ``distributed`` when
called, so ``import audiogmm`` never does, and a missing extra is a
:class:`~audiogmm.exceptions.ParameterError` that names the install command.

A local cluster (``local:N``) is N worker processes with one thread each, bound to
127.0.0.1, dashboard off, with these fixes for pitfalls measured on Dask:

* the nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers, which doubled the CPU
  time of feature extraction: it is dropped through ``distributed.nanny.pre-spawn-environ``;
* the nanny writes its pre-spawn variables into *this* process's ``os.environ`` as well:
  ``MALLOC_TRIM_THRESHOLD_``, ``OMP_NUM_THREADS`` and the other BLAS variables are put back
  as they were once the workers have started (and again at the end);
* one BLAS thread per worker (``OMP_NUM_THREADS`` etc. = 1 in the workers): parallelism
  comes from the worker count;
* ``NUMBA_CACHE_DIR`` points workers at a writable folder (the package folder may not be).

A script that starts a local cluster needs an ``if __name__ == "__main__":`` guard (the
workers are spawned processes that import the main module).

:class:`DaskExecutor` runs the EM engine's tasks (:mod:`audiogmm.mixture`: one task per
fixed partition of frames) on a client: ``DiagonalGMM().fit(X, executor=DaskExecutor(client))``.
The engine's executor protocol is duck-typed, so this module does not import the engine, and
the engine never imports dask.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import weakref

import numpy as np

from ._validation import check_int
from .exceptions import AudiogmmError, ParameterError

__all__ = ["client_for", "parse_scheduler", "DaskExecutor", "as_executor", "INSTALL_HINT"]

#: How to get the optional dependencies, as the error message says it.
INSTALL_HINT = 'pip install "audiogmm[dask]" (in a source checkout: pip install -e ".[dask]")'
#: Variables the nanny leaks into the parent process; restored after the cluster starts.
_PARENT_ENV = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMBA_CACHE_DIR", "PYTHONHASHSEED")
_LOCAL = re.compile(r"local:(\d{1,4})")
#: The scheduler's HTTP server (health checks; no dashboard) on a free port: by default it
#: tries 8787 and warns when another cluster holds it.
LOCAL_SCHEDULER_KWARGS = {"dashboard_address": "127.0.0.1:0"}
_MAX_LOCAL_WORKERS = 1024


def parse_scheduler(scheduler):
    """``("local", n_workers)`` or ``("address", address)`` for a ``--scheduler`` value.

    Raises
    ------
    ParameterError
        Not a string, an empty one, or ``local:N`` with N outside 1..1024.
    """
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ParameterError(f"scheduler must be an address (tcp://HOST:PORT) or local:N, got {scheduler!r}")
    scheduler = scheduler.strip()
    if scheduler.startswith("local"):
        m = _LOCAL.fullmatch(scheduler)
        if m is None or not 1 <= int(m.group(1)) <= _MAX_LOCAL_WORKERS:
            raise ParameterError(f"scheduler {scheduler!r}: write local:N with N worker processes, "
                                 f"1 to {_MAX_LOCAL_WORKERS} (e.g. local:2)")
        return "local", int(m.group(1))
    return "address", scheduler


def _import_distributed():
    try:
        import dask
        import distributed
    except ImportError as exc:
        raise ParameterError(f"a scheduler needs dask and distributed ({exc.name or exc} is missing); "
                             f"install them with {INSTALL_HINT}") from None
    return dask, distributed


def _numba_cache_dir():
    folder = os.path.join(tempfile.gettempdir(), f"audiogmm-numba-{os.getuid() if hasattr(os, 'getuid') else 0}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


def _restore(saved):
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def client_for(scheduler):
    """A ``distributed.Client`` for ``scheduler``, closed (with what it started) at the end.

    Parameters
    ----------
    scheduler : str
        ``tcp://HOST:PORT`` (or any address ``distributed.Client`` accepts) of a running
        scheduler, or ``local:N`` to start a local cluster of N single-threaded worker
        processes (see the module notes).

    Yields
    ------
    distributed.Client

    Raises
    ------
    ParameterError
        A bad ``scheduler``, or dask/distributed are not installed (the message names
        the install command).
    AudiogmmError
        The scheduler cannot be reached or the local cluster cannot start.

    Examples
    --------
    >>> with client_for("local:2") as client:  # doctest: +SKIP
    ...     features, skipped = extract_features(paths, cfg, cache_dir="store/", executor=client)
    """
    kind, value = parse_scheduler(scheduler)
    dask, distributed = _import_distributed()
    if kind == "address":
        try:
            client = distributed.Client(value, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise AudiogmmError(f"cannot connect to the Dask scheduler {value!r} ({exc}); start it "
                                f"(dask scheduler) or pass --scheduler local:N") from None
        with contextlib.closing(client):
            yield client
        return
    saved = {name: os.environ.get(name) for name in _PARENT_ENV}
    env = {
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,  # None: not set at all
        "distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": 1,
        "distributed.nanny.pre-spawn-environ.MKL_NUM_THREADS": 1,
        "distributed.nanny.pre-spawn-environ.OPENBLAS_NUM_THREADS": 1,
        "distributed.nanny.pre-spawn-environ.NUMBA_CACHE_DIR": saved["NUMBA_CACHE_DIR"] or _numba_cache_dir(),
    }
    # kept for the cluster's whole life: the nanny reads it again when it restarts a worker
    with dask.config.set(env):
        try:
            try:
                cluster = distributed.LocalCluster(n_workers=value, threads_per_worker=1, processes=True,
                                                   host="127.0.0.1", dashboard_address=None,
                                                   scheduler_kwargs=LOCAL_SCHEDULER_KWARGS)
            except (OSError, TimeoutError, RuntimeError) as exc:
                raise AudiogmmError(f"the local Dask cluster of {value} workers did not start ({exc})") from None
            finally:
                _restore(saved)
            with contextlib.closing(cluster), contextlib.closing(distributed.Client(cluster)) as client:
                yield client
        finally:
            _restore(saved)


# --------------------------------------------------------------------------------------
# The EM engine's tasks on a Dask client
# --------------------------------------------------------------------------------------

#: Fields that make a task argument a partition task of the engine (``PartitionTask``).
_PARTITION_FIELDS = frozenset({"source", "start", "stop", "state", "generation", "use_hint"})
_BLAS = {"lock": threading.Lock(), "limiter": None, "done": False}


def _is_source(obj):
    """The frame-source protocol of :mod:`audiogmm.mixture` (duck-typed, as the engine does)."""
    return not isinstance(obj, np.ndarray) and all(
        hasattr(obj, a) for a in ("n_frames", "n_features", "dtype", "read", "take"))


def _is_local_state(state):
    """A frame state whose per-frame values live in this process's RAM (``MemoryFrameState``).

    File-backed states (a ``directory``) are read where the task runs; states that keep
    nothing (no ``values``) need nothing. Only in-RAM values must travel with the task.
    """
    return (callable(getattr(state, "views", None)) and not hasattr(state, "directory")
            and isinstance(getattr(state, "values", None), np.ndarray))


def _one_blas_thread():
    """Keep BLAS at one thread in this worker process, from its first task on.

    Set once and never undone: a limit entered and left per task is process-wide, so two
    threads of one worker would restore each other's BLAS threads in the middle of a task.
    Parallelism comes from the workers and their threads.
    """
    with _BLAS["lock"]:
        if not _BLAS["done"]:
            _BLAS["done"] = True
            try:
                from threadpoolctl import threadpool_limits

                _BLAS["limiter"] = threadpool_limits(limits=1, user_api="blas")
            except Exception:  # pragma: no cover - threadpoolctl missing or broken
                pass


class _CarriedState:
    """A task's slice of an in-RAM frame state: the hint goes with the task, ``out`` comes back.

    Implements the frame-state protocol for rows ``start:start + n`` of one generation.
    """

    def __init__(self, hint, start, n, dtype):
        self.hint, self.start, self.n, self.dtype = hint, start, n, np.dtype(dtype)
        self.out = None

    def views(self, generation, start, stop, use_hint):
        a, b = start - self.start, stop - self.start
        hint = self.hint[a:b] if use_hint else None
        return hint, np.empty(b - a, dtype=self.dtype)

    def commit(self, generation, start, out):
        if self.out is None:
            self.out = np.empty(self.n, dtype=self.dtype)
        a = start - self.start
        self.out[a:a + out.size] = out


def _identity(x):
    return x


def _run_task(fn, stub, positions, *values):
    """On a worker: put the scattered sources back into the argument and run ``fn``."""
    _one_blas_thread()
    arg = stub
    if positions:
        items = list(stub)
        for i, v in zip(positions, values):
            items[i] = v
        arg = type(stub)(*items) if hasattr(stub, "_fields") else type(stub)(items)
    result = fn(arg)
    if isinstance(getattr(arg, "state", None), _CarriedState):
        return result, arg.state.out
    return result


def _rows_of(arg):
    """``(source, start, stop)`` a task argument works on, or None."""
    if hasattr(arg, "_fields") and _PARTITION_FIELDS <= set(arg._fields):
        return arg.source, arg.start, arg.stop
    if isinstance(arg, tuple) and len(arg) >= 3 and _is_source(arg[0]):
        return arg[0], arg[1], arg[2]
    return None


def describe_task(fn, arg):
    """A task for messages: the function, its rows and the source parts they lie in."""
    name = getattr(fn, "__name__", repr(fn))
    rows = _rows_of(arg)
    if rows is None:
        return f"task {name}"
    source, start, stop = rows
    text = f"task {name} on rows {start}:{stop} of {source!r}"
    offsets, parts = getattr(source, "offsets", None), getattr(source, "parts", None)
    if offsets is not None and parts is not None and stop > start:
        first = max(int(np.searchsorted(offsets, start, side="right")) - 1, 0)
        last = max(int(np.searchsorted(offsets, stop - 1, side="right")) - 1, first)
        shown = ", ".join(f"{i} ({parts[i]!r})" if not isinstance(parts[i], np.ndarray)
                          else f"{i} (an array)" for i in range(first, min(last, first + 2) + 1))
        more = f" and {last - first - 2} more" if last - first > 2 else ""
        text += f" (source part(s) {shown}{more})"
    return text


class DaskExecutor:
    """Runs the EM engine's tasks on a Dask cluster: one task per partition, results in order.

    An executor for :meth:`audiogmm.mixture.DiagonalGMM.fit`,
    :func:`audiogmm.mixture.map_statistics` and the classifiers' ``fit(..., executor=)``.
    Each task accumulates the statistics of one fixed, chunk-aligned partition of frames
    (about 2^20 frames) where it runs; the engine folds the results in partition order and
    does the M-step here, so the model is bit-identical to the in-process fit for any number
    of workers and threads, and after a worker dies (the task runs again from the same
    inputs).

    What travels:

    * the frame source is sent once per fit (a task returning it, so a worker that dies
      with it does not lose it; then one copy per worker that needs it), not once per
      task. An in-memory source is therefore copied to the scheduler and workers: fine for
      moderate data; the intended use is a store-backed source (a ``ConcatSource`` of
      ``FeatureCache.loader(key)`` parts), which ships only loaders and is read where the
      task runs -- the store must then be on a file system every worker sees;
    * the per-frame hint: a ``FileFrameState`` (``fit(..., frame_state=)``) is read and
      written by the workers in its folder, which they must all see; the default in-RAM
      state travels with the tasks instead (its rows go out with each task and come back
      with its result: 4 bytes per frame each way in float32), so no shared folder is
      needed for it.

    Every task sets BLAS to one thread in its worker (threadpoolctl) for good.

    Parameters
    ----------
    client : distributed.Client
    retries : int >= 0, default=2
        How many times Dask re-runs a task that raised. A worker that dies is handled by
        the scheduler (its tasks run elsewhere, up to its ``allowed-failures``, 3 by default).

    Raises
    ------
    AudiogmmError
        From :meth:`map`: a task that failed for good, named by its rows and source parts,
        with the cause.

    Examples
    --------
    >>> with client_for("local:2") as client:  # doctest: +SKIP
    ...     gmm = DiagonalGMM(64, random_state=0).fit(source, executor=DaskExecutor(client))
    """

    task_unit = "partition"

    def __init__(self, client, *, retries=2):
        if not all(callable(getattr(client, m, None)) for m in ("submit", "cancel")):
            raise ParameterError(f"client must be a distributed.Client (see audiogmm._dask.client_for), "
                                 f"got {client!r}")
        self.client = client
        self.retries = check_int("retries", retries, 0)
        self._sent = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def _remote(self, source):
        """The future of ``source`` on the cluster (scattered at its first task), or the source."""
        with self._lock:
            try:
                future = self._sent.get(source)
            except TypeError:  # not weak-referenceable or unhashable: ship it with each task
                return source
            if future is None:
                # a task, not client.scatter: scattered data dies with the worker holding it,
                # a task's result is recomputed from its inputs (kept by the scheduler)
                import dask

                with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1 PiB"}):
                    future = self.client.submit(_identity, source, pure=False)
                self._sent[source] = future
            return future

    def _submit(self, fn, arg):
        """Submit one task; returns (future or None, what to do with its result)."""
        carried = None
        if hasattr(arg, "_fields") and _PARTITION_FIELDS <= set(arg._fields) and _is_local_state(arg.state):
            hint, out = arg.state.views(arg.generation, arg.start, arg.stop, arg.use_hint)
            hint = None if hint is None else np.array(hint)  # the state may reuse its memory
            arg = arg._replace(state=_CarriedState(hint, arg.start, arg.stop - arg.start, out.dtype))
            carried = out
        elif isinstance(arg, tuple) and any(_is_local_state(x) for x in arg):
            return None, None  # reads only an in-RAM state: run it here (see map)
        positions, values = [], []
        if isinstance(arg, tuple):
            for i, x in enumerate(arg):
                if _is_source(x):
                    positions.append(i)
                    values.append(self._remote(x))
            if positions:
                items = list(arg)
                for i in positions:
                    items[i] = None
                arg = type(arg)(*items) if hasattr(arg, "_fields") else type(arg)(items)
        future = self.client.submit(_run_task, fn, arg, tuple(positions), *values,
                                    pure=False, retries=self.retries)
        return future, carried

    def map(self, fn, args):
        """``[fn(a) for a in args]`` as Dask tasks, gathered in order.

        Raises
        ------
        AudiogmmError
            A task failed for good (after ``retries``, or its workers died too often).
        """
        args = list(args)
        submitted = [self._submit(fn, a) for a in args]
        futures = [f for f, _ in submitted if f is not None]
        results = []
        try:
            for arg, (future, carried) in zip(args, submitted):
                if future is None:
                    results.append(fn(arg))
                    continue
                try:
                    result = future.result()
                except Exception as exc:
                    raise AudiogmmError(
                        f"{describe_task(fn, arg)} failed on the Dask cluster after {self.retries} "
                        f"retries ({type(exc).__name__}: {exc})") from exc
                if carried is not None:
                    result, out = result
                    carried[:] = out
                    arg.state.commit(arg.generation, arg.start, carried)
                results.append(result)
        except BaseException:
            self.client.cancel(futures)
            raise
        return results

    def __repr__(self):
        return f"DaskExecutor({self.client!r}, retries={self.retries})"


def as_executor(executor, *, name="executor"):
    """``executor`` as an engine executor: a ``distributed.Client`` is wrapped in :class:`DaskExecutor`.

    None stays None; an object with ``map(fn, list_of_args)`` (``DaskExecutor``,
    ``audiogmm.mixture.ThreadExecutor``...) is returned as it is.

    Raises
    ------
    ParameterError
        Anything else.
    """
    if executor is None or isinstance(executor, DaskExecutor):
        return executor
    distributed = sys.modules.get("distributed")
    if distributed is not None and isinstance(executor, distributed.Client):
        return DaskExecutor(executor)
    if callable(getattr(executor, "map", None)) and not callable(getattr(executor, "submit", None)):
        return executor
    raise ParameterError(f"{name} must be a distributed.Client, an audiogmm._dask.DaskExecutor or an object "
                         f"with map(fn, list_of_args), got {type(executor).__name__}")
