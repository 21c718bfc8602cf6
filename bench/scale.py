"""Out-of-core training: peak memory flat in the frame count, and its speed against in-memory.

Synthetic features (D=60 float32, recordings of 30,000 frames, 2 classes) are written straight
into a feature store with the store's own writer (``FeatureCache.put`` and ``write_index``);
training then plans its classes from the index and reads them chunk by chunk through store
loaders (what ``audiogmm train DATA --cache STORE --out-of-core`` does after extraction).

Memory: each run is a fresh process training per-class GMMs (K=64, a few EM iterations) out
of core; its peak RSS (``ru_maxrss``, which counts the mapped store pages resident while a
chunk is read) is compared between 2e6 and 2e7 frames. Speed: in one process, per-iteration
CPU time of out-of-core training against in-memory training on the same frames (the arrays
loaded beforehand, so the page cache is warm), alternating, median of the rounds.

Run from the repository root (prints the figures and their ratios, measured in this run)::

    python bench/scale.py                  # memory at 2e6 and 2e7 frames, speed at 2e6
    python bench/scale.py --big            # also 1.2e8 frames (a ~29 GB store; skipped without room)
    python bench/scale.py --store /big/disk/scale-store --keep
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiogmm.cache import FeatureCache, read_index  # noqa: E402
from audiogmm.classifier import GMMClassifier  # noqa: E402
from audiogmm.features import FeatureConfig  # noqa: E402
from audiogmm.mixture import ConcatSource  # noqa: E402

D = 60
REC_FRAMES = 30_000
N_CLASSES = 2


def _config_id(cache):
    return cache.config_id(FeatureConfig())


def build_store(store, n_frames, seed=0):
    """Write ``n_frames`` synthetic frames into ``store`` (skipped if its index already has them)."""
    cache = FeatureCache(store)
    cid = _config_id(cache)
    have = sum(r["n_frames"] for r in read_index(store, config=cid))
    if have == n_frames:
        return
    if have:
        raise SystemExit(f"{store} holds {have} frames, not {n_frames}: give another --store")
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (N_CLASSES, 16, D)).astype(np.float32)
    rows, i, left = [], 0, int(n_frames)
    while left:
        n = min(REC_FRAMES, left)
        label = i % N_CLASSES
        comp = rng.integers(0, 16, n)
        X = centres[label][comp] + rng.standard_normal((n, D), dtype=np.float32)
        key = hashlib.sha256(f"synthetic {seed} {i}".encode()).hexdigest()
        path = f"/synthetic/c{label}/rec{i:06d}.wav"
        if not cache.put(path, FeatureConfig(), X, key=key):
            raise SystemExit(f"cannot write into {store}")
        rows.append({"path": path, "label": f"c{label}", "key": key, "n_frames": n, "n_features": D,
                     "dtype": "float32", "config": cid})
        left -= n
        i += 1
    cache.write_index(rows)


def sources_from_index(store):
    """(recordings as ConcatSources of store loaders, labels), from the index alone."""
    cache = FeatureCache(store)
    rows = read_index(store, config=_config_id(cache))
    X = [ConcatSource([cache.loader(r["key"], n_features=D)], [r["n_frames"]], n_features=D, dtype=np.float32)
         for r in rows]
    return X, [r["label"] for r in rows]


def _timed_fit(X, y, k, iters, scratch):
    """Fit; return per-iteration CPU seconds (EM iterations after the first, every class)."""
    marks = []
    clf = GMMClassifier(n_components=k, max_iter=iters, tol=0.0, random_state=0)
    progress = lambda stage, done, total: marks.append((stage, done, time.process_time()))  # noqa: E731
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few iterations: "did not converge" on purpose
        clf.fit(X, y, progress=progress, scratch_dir=scratch)
    per_iter = [t1 - t0 for (s0, d0, t0), (s1, d1, t1) in zip(marks, marks[1:])
                if s0 == s1 and s0.startswith("EM ") and d1 == d0 + 1 and d0 >= 1]
    return clf, per_iter


def child_memory(store, k, iters):
    X, y = sources_from_index(store)
    scratch = tempfile.mkdtemp(prefix=".bench-scratch-", dir=store)
    t0 = time.perf_counter()
    _, per_iter = _timed_fit(X, y, k, iters, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss": peak, "seconds": time.perf_counter() - t0,
                      "cpu_per_iter": float(np.median(per_iter)) if per_iter else None}))


def child_speed(store, k, iters, rounds):
    X, y = sources_from_index(store)
    arrays = [np.array(x.read(0, x.n_frames)) for x in X]  # in RAM; also warms the page cache
    scratch = tempfile.mkdtemp(prefix=".bench-scratch-", dir=store)
    mem, ooc = [], []
    for _ in range(rounds):
        a, pa = _timed_fit(arrays, y, k, iters, None)
        b, pb = _timed_fit(X, y, k, iters, scratch)
        mem.append(np.median(pa))
        ooc.append(np.median(pb))
        same = all(np.array_equal(getattr(g, n), getattr(h, n)) for g, h in zip(a.gmms_, b.gmms_)
                   for n in ("weights_", "means_", "variances_"))
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"mem": float(np.median(mem)), "ooc": float(np.median(ooc)), "identical": same}))


def _run_child(*args):
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None, help="parent folder of the stores [a temp dir]")
    ap.add_argument("--components", type=int, default=64)
    ap.add_argument("--iters", type=int, default=3, help="EM iterations per class fit")
    ap.add_argument("--frames", type=float, nargs=2, default=(2e6, 2e7), metavar=("SMALL", "LARGE"))
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of the speed comparison")
    ap.add_argument("--big", action="store_true", help="also 1.2e8 frames (~29 GB of store)")
    ap.add_argument("--keep", action="store_true", help="keep the stores")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        mode, store, *rest = a.child
        if mode == "memory":
            child_memory(store, int(rest[0]), int(rest[1]))
        else:
            child_speed(store, int(rest[0]), int(rest[1]), int(rest[2]))
        return
    parent = Path(a.store) if a.store else Path(tempfile.mkdtemp(prefix="audiogmm-scale-"))
    parent.mkdir(parents=True, exist_ok=True)
    sizes = [int(a.frames[0]), int(a.frames[1])] + ([int(1.2e8)] if a.big else [])
    try:
        results = {}
        for n in sizes:
            need = n * D * 4 * 1.01
            if shutil.disk_usage(parent).free < need * 1.1:
                print(f"{n:.3g} frames: skipped, {parent} has {shutil.disk_usage(parent).free / 2**30:.1f} GiB "
                      f"free and the store needs {need / 2**30:.1f} GiB")
                continue
            store = parent / f"n{n}"
            t0 = time.perf_counter()
            build_store(store, n)
            print(f"{n:.3g} frames: store of {n * D * 4 / 2**30:.2f} GiB ready in {time.perf_counter() - t0:.0f} s")
            r = _run_child("memory", store, a.components, a.iters)
            results[n] = r
            print(f"  out-of-core K={a.components}, {a.iters} EM iterations: peak RSS "
                  f"{r['peak_rss'] / 2**20:.0f} MiB, {r['seconds']:.0f} s, CPU per iteration "
                  f"{r['cpu_per_iter']:.2f} s ({r['cpu_per_iter'] / n * 1e6:.3f} s per Mframe)")
        small, large = sizes[0], sizes[1]
        if small in results and large in results:
            diff = (results[large]["peak_rss"] - results[small]["peak_rss"]) / 2**20
            print(f"peak RSS at {large:.3g} minus at {small:.3g} frames: {diff:+.1f} MiB (target <= 32 MiB; "
                  f"in-memory training would hold ~{(large - small) * D * 4 * 2 / 2**30:.1f} GiB more)")
        if small in results:
            s = _run_child("speed", parent / f"n{small}", a.components, a.iters, a.rounds)
            print(f"speed at {small:.3g} frames, CPU s per EM iteration (median of {a.rounds} alternating "
                  f"rounds, warm page cache): in memory {s['mem']:.3f}, out of core {s['ooc']:.3f}, ratio "
                  f"{s['ooc'] / s['mem']:.3f}x (goal <= 1.2x); models identical: {s['identical']}")
    finally:
        if not a.keep:
            shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
