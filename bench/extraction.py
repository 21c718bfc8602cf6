"""Benchmark feature extraction on Dask (``--scheduler local:2``) against loky (``--jobs 2``).

Run from the project root::

    python bench/extraction.py              # ../shared/data/soundtrack, 1 round
    python bench/extraction.py --repeat 3   # best of 3 interleaved rounds

Both ways extract the same recordings (``../shared/data/soundtrack``, minutes-long Ogg
Vorbis music; skipped with a message when absent) with the default FeatureConfig into a
fresh, empty feature store, as ``audiogmm features DATA --cache STORE`` does:

* **jobs 2**: ``pipeline.cache_features(..., n_jobs=2)``: two loky worker processes (warmed
  up first on a short generated file, as the Dask workers are);
* **local:2**: ``pipeline.cache_features(..., executor=client)`` with
  ``audiogmm._dask.client_for("local:2")``: two single-threaded Dask worker processes that
  write the store and return only metadata; the client reads the features back.

It prints the wall time of each (best of ``--repeat`` interleaved rounds), the ratio
local:2 / jobs 2 (1.0: the same speed), the cluster's start-up time (paid once per run,
not in the ratio) and checks that both stores hold identical features. The machine is
shared: compare ratios within one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiogmm import _dask, pipeline  # noqa: E402
from audiogmm.cache import FeatureCache, read_index  # noqa: E402
from audiogmm.features import FeatureConfig  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "soundtrack"


def _warm_up(folder, config, **kwargs):
    """One short file through the same path, so worker start-up and imports are not timed."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"warm{i}.wav" for i in range(4)]  # a batch for each worker
    for path in paths:
        sf.write(path, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    pipeline.cache_features(paths, config, folder / "store", **kwargs)


def _run(data, config, store, **kwargs):
    t = time.perf_counter()
    summary = pipeline.cache_features(data, config, store, **kwargs)
    return time.perf_counter() - t, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of recordings (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the best is shown")
    parser.add_argument("--files", type=int, default=None, help="only the first N recordings (sorted)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"skipped: {args.data} is not present (the soundtrack corpus of ../shared/data)")
        return 0
    config = FeatureConfig()
    data = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".ogg", ".wav", ".flac", ".mp3"))
    data = data[:args.files] if args.files else data
    with tempfile.TemporaryDirectory(prefix="audiogmm-bench-") as tmp:
        t = time.perf_counter()
        with _dask.client_for("local:2") as client:
            start = time.perf_counter() - t
            _warm_up(Path(tmp) / "w1", config, n_jobs=2)
            _warm_up(Path(tmp) / "w2", config, executor=client)
            times = {"jobs 2": [], "local:2": []}
            stores = {}
            for r in range(args.repeat):
                for name, kwargs in (("jobs 2", {"n_jobs": 2}), ("local:2", {"executor": client})):
                    store = Path(tmp) / f"{name.replace(' ', '').replace(':', '')}-{r}"
                    seconds, summary = _run(data, config, store, **kwargs)
                    times[name].append(seconds)
                    stores[name] = store
                    print(f"round {r + 1} {name:8s} {seconds:7.2f} s  ({summary['n_extracted']} files, "
                          f"{summary['frames']} frames, {summary['n_skipped']} skipped)", flush=True)
        best = {name: min(v) for name, v in times.items()}
        same = _same(stores["jobs 2"], stores["local:2"])
    print(f"\nbest of {args.repeat}: jobs 2 {best['jobs 2']:.2f} s, local:2 {best['local:2']:.2f} s")
    print(f"ratio local:2 / jobs 2 = {best['local:2'] / best['jobs 2']:.3f}  (cluster start-up {start:.2f} s, "
          f"not included)")
    print(f"features identical in both stores: {same}")
    return 0 if same else 1


def _same(a, b):
    rows_a = {r["key"]: r for r in read_index(a)}
    rows_b = {r["key"]: r for r in read_index(b)}
    if rows_a.keys() != rows_b.keys():
        return False
    ca, cb = FeatureCache(a), FeatureCache(b)
    return all(np.array_equal(ca.open_entry(k), cb.open_entry(k)) for k in rows_a)


if __name__ == "__main__":  # a LocalCluster spawns processes that import this module
    sys.exit(main())
