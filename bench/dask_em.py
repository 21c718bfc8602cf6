"""EM per iteration on a local Dask cluster against the in-process fit, and the scheduler's overhead.

Run from the project root (needs the dask extra)::

    python bench/dask_em.py            # 2^21 frames, D=60, K=64 (about 0.5 GB of temporary files)
    python bench/dask_em.py --quick    # 2^20 frames, D=20, K=16

Synthetic float32 features are written as .npy files (one per "recording", 16 of them) into a
temporary folder and read through a ConcatSource of memory-mapped loaders, as a feature store
is: each Dask task reads its own partition of 2^20 frames where it runs. In one run, alternating
the implementations in ``--repeat`` rounds (best of each kept):

* ``in-process n_jobs=2``: DiagonalGMM(n_jobs=2) (two row-chunk threads, hint in RAM);
* ``dask 2x1 file state``: DaskExecutor on ``client_for("local:2")`` (2 worker processes of one
  thread), the per-frame hint in a FileFrameState in the temporary folder;
* ``dask 2x1 carried state``: the same with the default in-RAM hint travelling with the tasks.

Per-iteration time is the wall time between the first and the last EM iteration's callback
divided by the iterations in between (start-up, column moments and initialisation excluded).
Every fit starts from the same parameters and runs a fixed number of iterations (tol=0); the
models are checked to be identical. The scheduler's overhead per iteration is the time of one
round of as many no-op tasks as an iteration has partitions (and of 8 and 64 no-op tasks).
"""

import argparse
import functools
import os
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from audiogmm import _dask  # noqa: E402
from audiogmm.exceptions import ConvergenceWarning  # noqa: E402
from audiogmm.mixture import ConcatSource, DiagonalGMM, FileFrameState  # noqa: E402


def _noop(_):
    return None


def _write_store(folder, n, d, k, rng, n_files=16):
    centres = rng.normal(0, 3, (k, d)).astype(np.float32)
    paths, lengths = [], []
    for i, m in enumerate(np.diff(np.linspace(0, n, n_files + 1).astype(int))):
        X = centres[rng.integers(0, k, m)] + rng.normal(0, 1, (m, d)).astype(np.float32)
        path = os.path.join(folder, f"rec{i:02d}.npy")
        np.save(path, X)
        paths.append(path)
        lengths.append(m)
    return paths, lengths, centres


class _Timer:
    def __init__(self):
        self.t = []

    def __call__(self, *, init, n_iter, lower_bound, change):
        self.t.append(time.perf_counter())

    def per_iteration(self):
        return (self.t[-1] - self.t[0]) / (len(self.t) - 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, d, k = ((1 << 20, 20, 16) if args.quick else (1 << 21, 60, 64))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="audiogmm-bench-dask-") as folder:
        paths, lengths, centres = _write_store(folder, n, d, k, rng)
        src = ConcatSource([functools.partial(np.load, p, mmap_mode="c") for p in paths], lengths=lengths,
                           n_features=d, dtype=np.float32)
        n_parts = -(-n // (1 << 20))  # the engine's partitions at the default block of 1024 frames
        init = dict(weights_init=np.full(k, 1.0 / k), means_init=centres + 0.5,
                    variances_init=np.full((k, d), 2.0))
        params = dict(n_components=k, max_iter=args.iters, tol=0.0, random_state=0, **init)
        print(f"N={n} frames ({n_parts} partitions of 2^20), D={d}, K={k}, float32, {args.iters} iterations, "
              f"best of {args.repeat}")
        with _dask.client_for("local:2") as client:
            ex = _dask.DaskExecutor(client)
            state = FileFrameState(os.path.join(folder, "state"))
            runs = {
                "in-process n_jobs=2": lambda v: DiagonalGMM(**params, n_jobs=2, verbose=v).fit(src),
                "dask 2x1 file state": lambda v: DiagonalGMM(**params, verbose=v).fit(
                    src, executor=ex, frame_state=state),
                "dask 2x1 carried state": lambda v: DiagonalGMM(**params, verbose=v).fit(src, executor=ex),
            }
            best, models = {}, {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0: a fixed number of iterations
                DiagonalGMM(**{**params, "max_iter": 1}).fit(src, executor=ex)  # warm-up: numba in workers
                for _ in range(args.repeat):
                    for name, run in runs.items():
                        timer = _Timer()
                        models[name] = run(timer)
                        best[name] = min(best.get(name, np.inf), timer.per_iteration())
            ref = models["in-process n_jobs=2"]
            for name, g in models.items():
                same = all(np.array_equal(getattr(g, a), getattr(ref, a)) for a in ("weights_", "means_", "variances_"))
                print(f"  {name:24s} {best[name]:.3f} s/iteration  ratio {best[name] / best['in-process n_jobs=2']:.2f}"
                      f"  identical={same}")
            for m in (n_parts, 8, 64):
                t = []
                for _ in range(max(args.repeat, 5)):
                    t0 = time.perf_counter()
                    ex.map(_noop, [None] * m)
                    t.append(time.perf_counter() - t0)
                print(f"  scheduler overhead: a round of {m:2d} no-op tasks {min(t) * 1e3:.1f} ms "
                      f"(median {np.median(t) * 1e3:.1f} ms)")
            state.remove()


if __name__ == "__main__":  # the local cluster's workers import this module
    main()
