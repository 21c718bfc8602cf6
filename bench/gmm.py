"""Benchmark audiogmm's EM engine against scikit-learn's GaussianMixture(covariance_type="diag").

Run from the project root::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/gmm.py          # full (minutes)
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/gmm.py --quick  # small run

(unsetting OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE matters only where they are set: they make
current numpy pick a slower OpenBLAS kernel; the kernel in use is printed.)

Everything runs in one process with one BLAS thread (threadpoolctl; but see "2bl" below), on the same data, from
the same initial parameters, for the same fixed number of EM iterations (tol=0). audiogmm runs
with its numba kernels ("audiogmm f32"), with n_jobs=2 (two row-block threads, "audiogmm 2thr") and
on its NumPy path ("audiogmm numpy", numba off); scikit-learn float64 also runs with two BLAS
threads ("sklearn f64 2bl", K < 256), the both-cores reference for "audiogmm 2thr". Per shape it
prints seconds per EM iteration per million frames, the sklearn/audiogmm ratios, the ratio to
the compute floor (4 GEMMs of 2*N*D*K flops at this machine's measured float32 rate on the
E-step shape, plus N*K float32 exponentials at the measured rate; the rates are measured by
running that work over the same number of blocks, timed in the same interleaved rounds as the
fits, best kept), the final mean
log-likelihood (lower_bound_) of each, and the peak traced memory of each (measured in a
separate, untimed one-iteration fit: tracemalloc slows allocation-heavy code). Then the
scoring throughput (frames x models per second) of score_samples_many against a loop of
sklearn score_samples over several models.

Per-iteration time is (fit with max_iter=it) - (fit with max_iter=1), divided by it - 1, for
every implementation, so set-up costs cancel (sklearn's max_iter=0 fails with precisions_init);
the two fits of every implementation are timed ``--repeat`` times, the implementations in
turn, and the best of each kept (this virtual machine's speed drifts by 20-30 % over tens of
seconds). K=256 is timed once (scikit-learn needs minutes per fit there).

Data: MFCC(20)+delta frames (D=40) of a few hundred recordings of ../shared/data/speaker or
language (librosa, 16 kHz), tiled to N frames; synthetic clustered data if that is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:  # the engine's home since the restructure (issue 12)
    from audiogmm.mixture import DiagonalGMM, score_samples_many  # noqa: E402
    from audiogmm.mixture._stats import auto_block_size as _auto_block_size  # noqa: E402
    from audiogmm.mixture._stats import numba_kernels as _numba_kernels  # noqa: E402
except ImportError:  # older checkouts (e.g. to compare against main before it)
    from audiogmm.gmm import (DiagonalGMM, _auto_block_size, _numba_kernels,  # noqa: E402
                              score_samples_many)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_frames(max_files, rng):
    """MFCC(20)+delta frames, (n, 40) float32, or None if no audio is available."""
    files = []
    for sub in ("speaker", "language"):
        root = DATA / sub
        if root.is_dir():
            files += sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac",
                                                                             ".mp3", ".ogg"))
    if not files:
        return None, "synthetic"
    import librosa

    pick = rng.choice(len(files), size=min(max_files, len(files)), replace=False)
    feats = []
    for i in pick:
        y, sr = librosa.load(files[i], sr=16000)
        if y.size < 2048:
            continue
        m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
        feats.append(np.vstack([m, librosa.feature.delta(m, width=min(9, m.shape[1] // 2 * 2 - 1 or 3))]).T)
    X = np.concatenate(feats).astype(np.float32)
    return X, f"MFCC+delta of {len(feats)} recordings ({X.shape[0]} distinct frames)"


def synthetic_frames(n, d, rng):
    centres = rng.normal(0, 4, (50, d))
    return (centres[rng.integers(0, 50, n)] + rng.normal(0, 1, (n, d))).astype(np.float32)


def timed(fn):
    """Run ``fn()``: (result, wall seconds, CPU seconds of this process)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def traced_peak(fn):
    """Peak bytes allocated (tracemalloc) while ``fn()`` runs.

    Never combined with timing: tracing hooks every allocation and slowed audiogmm's
    per-block loop by ~30 % in one measurement (0.46 -> 0.60 s/iter/Mframe at K=64).
    """
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def machine_line():
    """CPU model, core count, load average and BLAS kernel, for the results table."""
    import os
    import platform

    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = "%.1f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else "?"
    blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})"
            for i in threadpool_info() if i["user_api"] == "blas"]
    return (f"{model}, {os.cpu_count()} CPUs, load average {load}; numpy {np.__version__}; "
            f"BLAS {'; '.join(sorted(set(blas)))}")


def floor_pass(n, n_features, k, block, dtype):
    """One EM iteration's floor work on N frames, timed: ``(GEMM seconds, exp seconds)``.

    For each of the N / block blocks, the 4 GEMMs of the E-step shape (block, D) @ (D, K)
    and one float32 ``exp`` of (block, K), on cache-hot operands (one Python call each,
    about 1 us against tens of us of work). Timed like the fits (seconds of work, in the
    same interleaved rounds, best kept), not as a best-of-many microsecond burst: this
    virtual machine's speed drifts, and a burst catches moments a multi-second fit cannot.
    """
    rng = np.random.default_rng(0)
    A = rng.standard_normal((block, n_features)).astype(dtype)
    B = rng.standard_normal((n_features, k)).astype(dtype)
    C = np.empty((block, k), dtype=dtype)
    E = (rng.random((block, k)) * -30).astype(dtype)
    F = np.empty_like(E)
    blocks = -(-n // block)
    t0 = time.process_time()
    for _ in range(4 * blocks):
        np.matmul(A, B, out=C)
    t1 = time.process_time()
    for _ in range(blocks):
        np.exp(E, out=F)
    return t1 - t0, time.process_time() - t1


def bench_shape(X, k, iters, rng, log, threads=True, repeat=2, two_blas=True):
    n, d = X.shape
    X64 = X.astype(np.float64)
    init = DiagonalGMM(k, max_iter=0, random_state=0).fit(X)
    w0, m0, v0 = init.weights_, init.means_, init.variances_
    from sklearn.mixture import GaussianMixture

    def ours(it, n_threads=1, use_numba=True):
        g = DiagonalGMM(k, weights_init=w0, means_init=m0, variances_init=v0, tol=0.0,
                        max_iter=it, n_jobs=n_threads)  # row-block threads, 1 BLAS thread each
        g._use_numba = use_numba  # False: the NumPy path (numba kernels off)
        return g.fit(X)

    def sk(it, data):
        g = GaussianMixture(k, covariance_type="diag", weights_init=w0, means_init=m0,
                            precisions_init=1 / v0, tol=0.0, max_iter=it,
                            init_params="random_from_data", random_state=0)
        return g.fit(data)

    def sk_two_blas(it):  # scikit-learn on both cores: its GEMMs with 2 BLAS threads
        with threadpool_limits(limits=2, user_api="blas"):
            return sk(it, X64)

    runs = [("audiogmm f32", ours), ("sklearn f64", lambda it: sk(it, X64)),
            ("sklearn f32", lambda it: sk(it, X))]
    if _numba_kernels() is not None:
        runs.insert(1, ("audiogmm numpy", lambda it: ours(it, use_numba=False)))
    if threads:
        runs.insert(1, ("audiogmm 2thr", lambda it: ours(it, 2)))
        if two_blas:
            runs.append(("sklearn f64 2bl", sk_two_blas))
    best = {name: [np.inf] * 4 for name, _ in runs}  # wall/CPU of fit(1), of fit(iters)
    models = {}
    bs = _auto_block_size(k)
    t_gemm = t_exp = np.inf
    for _ in range(repeat):  # interleaved, best kept: the same treatment for everyone
        g, e = floor_pass(n, d, k, bs, np.float32)
        t_gemm, t_exp = min(t_gemm, g), min(t_exp, e)
        for name, run in runs:
            b = best[name]
            _, t, c = timed(lambda: run(1))
            b[0], b[1] = min(b[0], t), min(b[1], c)
            models[name], t, c = timed(lambda: run(iters))
            b[2], b[3] = min(b[2], t), min(b[3], c)
    rows = {}
    for name, run in runs:
        t0, c0, t1, c1 = best[name]
        peak = traced_peak(lambda: run(1))  # separate, untimed run
        rows[name] = ((t1 - t0) / (iters - 1) / n * 1e6, (c1 - c0) / (iters - 1) / n * 1e6,
                      models[name].lower_bound_, peak)
    passed = -(-n // bs) * bs  # frames of floor_pass's whole blocks
    gemm_rate, exp_rate = 4 * 2 * passed * d * k / t_gemm, passed * k / t_exp
    floor = (4 * 2 * n * d * k / gemm_rate + n * k / exp_rate) / n * 1e6
    ours_t, ours_c = rows["audiogmm f32"][:2]
    ref_ll = rows["sklearn f64"][2]
    log(f"\nK={k}  D={d}  N={n:,}  iterations={iters} (tol=0), best of {repeat}   "
        f"floor {floor:.3f} s/iter/Mframe (1 core: f32 GEMM {gemm_rate / 1e9:.0f} GFLOP/s on "
        f"({bs},{d})@({d},{k}), exp {exp_rate / 1e9:.2f} Gelem/s)")
    log(f"  {'':16s}{'wall s/it/Mfr':>14s}{'x audiogmm':>11s}{'CPU s/it/Mfr':>14s}"
        f"{'x audiogmm':>11s}{'mean loglik':>15s}{'rel.diff f64':>13s}{'peak MB':>9s}")
    for name, (sec, cpu, ll, peak) in rows.items():
        log(f"  {name:16s}{sec:14.3f}{sec / ours_t:10.1f}x{cpu:14.3f}{cpu / ours_c:10.1f}x"
            f"{ll:15.6f}{abs(ll - ref_ll) / abs(ref_ll):13.1e}{peak / 2**20:9.0f}")
    log(f"  audiogmm / floor = {ours_t / floor:.2f} (wall), {ours_c / floor:.2f} (CPU)")
    if "sklearn f64 2bl" in rows:
        # sklearn's best wall time on this machine: 2 BLAS threads are slower at small K
        two, sk_two = rows["audiogmm 2thr"][0], min(rows["sklearn f64 2bl"][0], rows["sklearn f64"][0])
        log(f"  both cores (wall): sklearn f64 (faster of 1 and 2 BLAS threads) / audiogmm n_jobs=2 = "
            f"{sk_two / two:.1f}x; one core (CPU): sklearn f64 / audiogmm = "
            f"{rows['sklearn f64'][1] / ours_c:.1f}x")
    return init


def bench_scoring(X, base, n_models, log):
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(1)
    models, skl = [], []
    for i in range(n_models):
        mu = base.means_ + rng.normal(0, 0.1, base.means_.shape) * np.sqrt(base.variances_)
        g = DiagonalGMM(base.n_components)
        g.weights_, g.means_, g.variances_ = base.weights_, mu, base.variances_
        g.n_features_in_ = X.shape[1]
        models.append(g)
        s = GaussianMixture(base.n_components, covariance_type="diag")
        s.weights_, s.means_, s.covariances_ = base.weights_, mu, base.variances_
        s.precisions_cholesky_ = 1 / np.sqrt(base.variances_)
        s.n_features_in_ = X.shape[1]
        skl.append(s)
    ours, t_ours, c_ours = _best(lambda: score_samples_many(models, X))
    X64 = X.astype(np.float64)
    ref, t_sk, c_sk = _best(lambda: np.stack([s.score_samples(X64) for s in skl], axis=1), reps=1)
    err = np.max(np.abs(ours - ref) / np.abs(ref))
    fm = X.shape[0] * n_models
    log(f"\nscoring {n_models} models x K={base.n_components} on {X.shape[0]:,} frames: "
        f"score_samples_many {fm / t_ours / 1e6:.1f} M frame-models/s, sklearn score_samples "
        f"(f64) {fm / t_sk / 1e6:.1f} M/s  -> {t_sk / t_ours:.1f}x wall, {c_sk / c_ours:.1f}x CPU"
        f"  (max rel. diff {err:.1e})")


def _best(fn, reps=3):
    out, best, best_cpu = None, np.inf, np.inf
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return out, best, best_cpu


def _proc_status_mb(field):
    """A memory field of /proc/self/status in MiB (Linux), or the peak RSS from resource."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_big(X, k, iters, log):
    """Memory of training on X (e.g. 1e7 x 40 float32): peak RSS growth and traced peak."""
    before = _proc_status_mb("VmRSS")
    try:  # reset the RSS high-water mark so VmHWM covers this fit only (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    g = DiagonalGMM(k, max_iter=iters, tol=0.0, random_state=0)
    _, wall, cpu = timed(lambda: g.fit(X))
    peak = _proc_status_mb("VmHWM")
    traced = traced_peak(lambda: DiagonalGMM(k, max_iter=1, tol=0.0, random_state=0).fit(X))
    log(f"\nbig: N={X.shape[0]:,} D={X.shape[1]} K={k}, fit with {iters} EM iterations incl. "
        f"init (data {X.nbytes / 2**20:.0f} MiB float32): {wall:.1f} s wall, {cpu:.1f} s CPU; "
        f"peak traced allocations {traced / 2**20:.0f} MiB; peak RSS {peak - before:.0f} MiB "
        f"above the RSS with the data loaded"
        + ("" if reset else " (high-water mark not resettable: an upper bound)"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N=100k, K in {8, 64}, 3 iterations")
    ap.add_argument("--n-frames", type=int, default=None)
    ap.add_argument("--components", type=int, nargs="*", default=None)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--files", type=int, default=300, help="recordings for real MFCC frames")
    ap.add_argument("--models", type=int, default=10, help="models for the scoring benchmark")
    ap.add_argument("--repeat", type=int, default=2,
                    help="time every fit this many times and keep the best (default 2)")
    ap.add_argument("--no-threads", action="store_true",
                    help="skip the variant of audiogmm with 2 row-block threads")
    ap.add_argument("--big", action="store_true",
                    help="only the memory check: 1e7 frames, D=40, K=64, 3 iterations (minutes)")
    args = ap.parse_args(argv)
    n = args.n_frames or (10_000_000 if args.big else 100_000 if args.quick else 1_000_000)
    ks = args.components or ([64] if args.big else [8, 64] if args.quick else [8, 32, 64, 256])
    iters = args.iters or (3 if args.quick or args.big else 5)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)

    def log(msg):
        print(msg, flush=True)

    import os

    with threadpool_limits(limits=1, user_api="blas"):
        log(f"machine: {machine_line()}")
        log(f"command: python bench/gmm.py {' '.join(sys.argv[1:] if argv is None else argv)}"
            f"  (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}, "
            f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}; BLAS limited to 1 thread)")
        frames, source = real_frames(args.files, rng)
        if frames is None:
            frames = synthetic_frames(200_000, 40, rng)
        X = np.ascontiguousarray(np.resize(frames, (n, frames.shape[1])))
        del frames
        nb = _numba_kernels()  # compile / load the kernels before any timing
        log(f"audiogmm engine: {'numba kernels' if nb is not None else 'NumPy path'} around "
            f"the BLAS GEMMs ('audiogmm numpy' = the NumPy path, same process)")
        log(f"data: {source}, tiled to {X.shape} float32; audiogmm block_size=None "
            f"(auto: {', '.join(f'K={k}: {_auto_block_size(k)}' for k in ks)})")
        if args.big:
            for k in ks:
                bench_big(X, k, iters, log)
            return
        base = None
        for k in ks:
            it = max(3, iters // 2 + 1) if k >= 256 else max(iters, 2)
            init = bench_shape(X, k, it, rng, log, threads=not args.no_threads,
                               repeat=args.repeat if k < 256 else 1, two_blas=k < 256)
            if k == 64 or base is None:
                base = init
        bench_scoring(X[: min(n, 200_000)], base, args.models, log)


if __name__ == "__main__":
    main()
