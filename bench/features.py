"""Benchmark audiogmm's feature extraction against the plain librosa way, on the same files.

Run from the project root::

    python bench/features.py           # full: a few minutes
    python bench/features.py --quick   # under a minute or two

In one process, on the same recordings (decoded and resampled to 16 kHz, the default
FeatureConfig: 25 ms / 10 ms, 40 mels, 20 MFCC + delta + delta-delta):

* **plain**: ``librosa.load(path, sr=16000)`` + ``librosa.feature.mfcc`` + two
  ``librosa.feature.delta`` calls, one file at a time (librosa's defaults for BLAS threads);
* **audiogmm serial**: ``pipeline.extract_features(paths, config, n_jobs=1)`` (CMVN off, so
  the output is comparable);
* **audiogmm 2 jobs**: the same with ``n_jobs=2`` (loky workers warmed up first, as librosa
  is imported and warmed up for the plain way);
* **FFT floor**: ``scipy.fft.rfft`` of the same windowed frames (n_fft 512, hop 160) of the
  already-decoded 16 kHz audio, one BLAS/FFT thread: the least any MFCC front end must do
  once the audio is decoded. Compared with both the serial run (decoding and resampling
  included: Ogg Vorbis decoding alone runs at only ~400 audio-s/CPU-s here) and
  :func:`audiogmm.features.extract` on the same decoded audio;
* **cache**: a cold run into an empty cache folder, then the same run again (all hits);
* **1 hour**: a generated 1-hour 22.05 kHz WAV (default config, resampled to 16 kHz)
  extracted in a fresh process; its peak resident memory (``ru_maxrss``), before and after.

It prints audio-seconds per CPU-second (workers' CPU included, read from /proc) and per
wall-second, the ratios against the targets, and the maximum relative difference from the
plain way's features (max |a - b| / max |b| per file, the worst file). The machine is
shared: compare ratios within one run, not absolute times across runs.

Data: ../shared/data (speaker: FSDD 8 kHz WAV clips; language: 44.1 kHz Ogg Vorbis words;
soundtrack: minutes-long Ogg Vorbis music) when present, else generated WAVs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiogmm import pipeline  # noqa: E402
from audiogmm.features import FeatureConfig  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIG = FeatureConfig(cmvn="none")  # the default front end, without CMVN (librosa has none)


# -- timing ---------------------------------------------------------------------------------
def _descendants_cpu():
    """CPU seconds (user + system) of this process's live descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d)] = int(fields[1])
        cpu[int(d)] = (int(fields[11]) + int(fields[12])) / tick
    me, total = os.getpid(), 0.0
    for pid in cpu:
        p = pid
        while p in parent and p != me and p > 1:
            p = parent[p]
        if p == me and pid != me:
            total += cpu[pid]
    return total


def measure(fn):
    """(result, wall seconds, CPU seconds of this process and its workers)."""
    c0, k0, t0 = time.process_time(), _descendants_cpu(), time.perf_counter()
    out = fn()
    t1, c1, k1 = time.perf_counter(), time.process_time(), _descendants_cpu()
    return out, t1 - t0, (c1 - c0) + max(0.0, k1 - k0)


# -- data -----------------------------------------------------------------------------------
def pick_files(quick):
    if not DATA.is_dir():
        return None
    speaker = sorted((DATA / "speaker").rglob("*.wav"))
    language = sorted((DATA / "language").rglob("*.ogg"))
    soundtrack = sorted((DATA / "soundtrack").rglob("*.ogg"))
    rng = np.random.default_rng(0)

    def some(files, n):
        if len(files) <= n:
            return files
        return [files[i] for i in sorted(rng.choice(len(files), n, replace=False))]

    if quick:
        return some(speaker, 400) + some(language, 150) + some(soundtrack, 1)
    return some(speaker, 1500) + some(language, 600) + some(soundtrack, 4)


def generate_files(folder, quick):
    """Short 8 kHz clips, 44.1 kHz words and two minutes-long 22.05 kHz pieces."""
    rng = np.random.default_rng(0)
    files = []
    for i, (sr, seconds) in enumerate([(8000, 0.45)] * (300 if quick else 1200) + [(44100, 1.5)] * (100 if quick else 400)
                                      + [(22050, 120.0)] * (1 if quick else 3)):
        t = np.arange(int(sr * seconds)) / sr
        f0 = rng.uniform(100, 400)
        y = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        y = (0.2 * y + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        path = Path(folder) / f"{i:05d}.wav"
        sf.write(path, y, sr, subtype="PCM_16")
        files.append(path)
    return files


# -- the contenders -------------------------------------------------------------------------
def plain_way(paths, cfg):
    import librosa

    out = []
    for p in paths:
        y, sr = librosa.load(p, sr=cfg.sample_rate)
        m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=cfg.n_mfcc, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                 win_length=cfg.win_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=sr / 2)
        mode = "interp" if m.shape[1] >= cfg.delta_width else "nearest"
        d1 = librosa.feature.delta(m, width=cfg.delta_width, order=1, mode=mode)
        d2 = librosa.feature.delta(m, width=cfg.delta_width, order=2, mode=mode)
        out.append(np.concatenate([m, d1, d2]).T)
    return out


def fft_floor(signals, cfg):
    """rfft of the windowed frames of already-decoded audio, in blocks of 256 frames."""
    import scipy.fft

    n_fft, hop = cfg.n_fft, cfg.hop_length
    window = np.hanning(n_fft).astype(np.float32)
    for y in signals:
        y = np.pad(y, n_fft // 2)
        frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop]
        for a in range(0, frames.shape[0], 256):
            scipy.fft.rfft(frames[a:a + 256] * window, axis=-1)


MEMORY_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    def hwm():  # peak resident set of this process (VmHWM; ru_maxrss can carry the parent's over fork)
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
    import numpy as np
    from threadpoolctl import threadpool_limits
    from audiogmm.features import FeatureConfig, extract, extract_file
    cfg = FeatureConfig()
    extract(np.full(16000, 0.1, np.float32), cfg)  # imports and constant tables
    before = hwm()
    t = time.perf_counter()
    with threadpool_limits(1, user_api="blas"):
        X = extract_file(sys.argv[1], cfg)
    print(before, hwm(), X.shape[0], X.nbytes / 2**20,
          time.perf_counter() - t)
""")


def one_hour_memory(folder):
    path = Path(folder) / "one_hour.wav"
    sr, rng = 22050, np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as f:
        for minute in range(60):
            t = np.arange(sr * 60) / sr
            y = 0.2 * np.sin(2 * np.pi * (200 + 5 * minute) * t) * (np.sin(2 * np.pi * 0.3 * t) > 0)
            f.write((y + 0.02 * rng.standard_normal(t.size)).astype(np.float32))
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path), str(Path(__file__).resolve().parents[1])],
                         capture_output=True, text=True, check=True)
    before, after, n_frames, x_mib, seconds = map(float, out.stdout.split())
    return before, after, int(n_frames), x_mib, seconds


# -- main -----------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer files (under a minute or two)")
    ap.add_argument("--no-hour", action="store_true", help="skip the 1-hour memory measurement")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    with tempfile.TemporaryDirectory(prefix="audiogmm-bench-") as tmp:
        paths = pick_files(args.quick)
        source = f"{DATA}"
        if not paths:
            paths = generate_files(tmp, args.quick)
            source = "generated"
        import librosa  # noqa: F401 - warm up the plain way's imports and JIT on one file

        plain_way(paths[:2], CONFIG)
        pipeline.extract_features(paths[:8], CONFIG, n_jobs=2)  # start and warm the loky workers

        print(f"{len(paths)} files from {source}")
        plain, t_plain, c_plain = measure(lambda: plain_way(paths, CONFIG))
        audio_s = sum(x.shape[0] - 1 for x in plain) * CONFIG.hop_length / CONFIG.sample_rate
        serial, t_ser, c_ser = measure(lambda: pipeline.extract_features(paths, CONFIG, n_jobs=1)[0])
        par, t_par, c_par = measure(lambda: pipeline.extract_features(paths, CONFIG, n_jobs=2)[0])
        import librosa as _lr

        signals = [_lr.load(p, sr=CONFIG.sample_rate)[0] for p in paths]
        from threadpoolctl import threadpool_limits

        from audiogmm.features import extract

        with threadpool_limits(1):
            _, t_fft, c_fft = measure(lambda: fft_floor(signals, CONFIG))
            _, t_mem, c_mem = measure(lambda: [extract(y, CONFIG) for y in signals])
        del signals

        rel = 0.0
        for a, b, c in zip(serial, plain, par):
            if a is None:
                continue
            assert np.array_equal(a, c), "serial and parallel features differ"
            rel = max(rel, float(np.max(np.abs(a - b)) / np.max(np.abs(b))))

        cache_dir = Path(tmp) / "cache"
        _, t_cold, _ = measure(lambda: pipeline.extract_features(paths, CONFIG, n_jobs=1, cache_dir=cache_dir))
        _, t_warm, c_warm = measure(lambda: pipeline.extract_features(paths, CONFIG, n_jobs=1, cache_dir=cache_dir))

        def row(name, wall, cpu):
            print(f"  {name:<22} {audio_s / cpu:>10,.0f} {audio_s / wall:>10,.0f} {wall:>8.2f} {cpu:>8.2f}")

        print(f"{audio_s:,.0f} s of audio\n")
        print(f"  {'':<22} {'audio-s/CPU-s':>10} {'audio-s/s':>10} {'wall s':>8} {'CPU s':>8}")
        row("plain librosa", t_plain, c_plain)
        row("audiogmm serial", t_ser, c_ser)
        row("audiogmm 2 jobs", t_par, c_par)
        row("FFT floor (no decode)", t_fft, c_fft)
        row("audiogmm, no decode", t_mem, c_mem)
        row("cached re-run", t_warm, c_warm)
        print()
        checks = [
            ("serial vs plain, per CPU-second", c_plain / c_ser, 2.0),
            ("2 jobs vs plain, per wall-second", t_plain / t_par, 3.5),
            ("serial / FFT floor, CPU (decode included)", c_ser / c_fft, None),
            ("extract() / FFT floor, CPU (decoded audio)", c_mem / c_fft, None),
            ("cached re-run speed-up (wall)", t_cold / t_warm, 20.0),
        ]
        for name, value, target in checks:
            ok = (value <= 3.0) if target is None else (value >= target)
            want = "<= 3" if target is None else f">= {target:g}"
            print(f"  {name:<45} {value:7.2f}x  (target {want}: {'ok' if ok else 'MISSED'})")
        print(f"  {'max relative difference from librosa':<45} {rel:9.2e} (target <= 1e-4: "
              f"{'ok' if rel <= 1e-4 else 'MISSED'})")

        print(f"  (load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        if not args.no_hour:
            before, after, n_frames, x_mib, seconds = one_hour_memory(tmp)
            print(f"\n1-hour file (22.05 kHz WAV -> 16 kHz, {n_frames:,} frames, X = {x_mib:.0f} MiB, "
                  f"{seconds:.1f} s): peak RSS {after:.0f} MiB for the whole process "
                  f"({before:.0f} MiB before; +{after - before:.0f} MiB) "
                  f"(target < 300 MiB: {'ok' if after < 300 else 'MISSED'})")


if __name__ == "__main__":
    main()
