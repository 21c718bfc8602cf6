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
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

from .exceptions import AudiogmmError, ParameterError

__all__ = ["client_for", "parse_scheduler", "INSTALL_HINT"]

#: How to get the optional dependencies, as the error message says it.
INSTALL_HINT = 'pip install "audiogmm[dask]" (in a source checkout: pip install -e ".[dask]")'
#: Variables the nanny leaks into the parent process; restored after the cluster starts.
_PARENT_ENV = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMBA_CACHE_DIR", "PYTHONHASHSEED")
_LOCAL = re.compile(r"local:(\d{1,4})")
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
                                                   host="127.0.0.1", dashboard_address=None)
            except (OSError, TimeoutError, RuntimeError) as exc:
                raise AudiogmmError(f"the local Dask cluster of {value} workers did not start ({exc})") from None
            finally:
                _restore(saved)
            with contextlib.closing(cluster), contextlib.closing(distributed.Client(cluster)) as client:
                yield client
        finally:
            _restore(saved)
