"""A small synthetic corpus for ``audiogmm demo``: five "diphthongs", made with NumPy.

No download and no third-party audio: every recording is synthesised from a
seeded random generator by a source-filter model of a voice:

* **source**: a harmonic glottal-like pulse train (harmonic amplitudes falling at
  -6 dB per octave) at a random pitch of 85-260 Hz with declination, vibrato and
  jitter;
* **filter**: three formant resonances (F1-F3) that glide from one vowel to
  another, scaled by a random vocal-tract length factor (0.85-1.2, "speaker") and
  jittered by a few percent per recording;
* **recording**: random onset, glide time and speed, attack/release, breath noise,
  background noise of random colour at 3-30 dB SNR, and random loudness.

The five classes (:data:`DEMO_LABELS`) are the vowel glides a->i, i->a, a->u,
u->a and o->i. "ai" and "ia" (and "au" and "ua") contain the same two vowels and
differ only in their order, i.e. in the direction of the formant movement, which
only the delta features and a multi-modal model of the frames can pick up; speaker
scaling makes vowels of different classes overlap. So the demo is not trivially
separable: one Gaussian per class is clearly worse than a mixture of several.

Everything is deterministic: each file has its own generator seeded with
``(seed, split, label, index)``, so the same arguments give byte-identical files,
and a test file does not change when ``n_train`` changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from audiogmm.exceptions import ParameterError

__all__ = ["DEMO_LABELS", "synthesize", "write_demo_corpus"]

#: Class labels of the demo corpus: vowel glides (first vowel -> second vowel).
DEMO_LABELS: tuple[str, ...] = ("ai", "ia", "au", "ua", "oi")

# Average adult formant frequencies (Hz), F1-F3 (after Peterson & Barney, 1952).
_VOWELS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
_BANDWIDTHS = (90.0, 110.0, 170.0)
_CONTROL_HZ = 200  # rate of the formant and pitch trajectories
_MIN_SECONDS = 0.3
_SPLITS = {"train": 0, "test": 1}


def _check_label(label):
    if label not in DEMO_LABELS:
        raise ParameterError(f"label must be one of {', '.join(DEMO_LABELS)}, got {label!r}")


def _check_seconds(seconds):
    ok = isinstance(seconds, (int, float, np.integer, np.floating)) and not isinstance(seconds, bool)
    if not ok or not np.isfinite(seconds) or seconds < _MIN_SECONDS:
        raise ParameterError(f"seconds must be a number >= {_MIN_SECONDS}, got {seconds!r}")
    return float(seconds)


def _check_sr(sr):
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr < 8000:
        raise ParameterError(f"sr must be an int >= 8000, got {sr!r}")
    return int(sr)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _resonance(f, fc, bw):
    """Magnitude of a second-order resonance at fc with bandwidth bw (unit gain at DC)."""
    return fc * fc / np.sqrt((fc * fc - f * f) ** 2 + (bw * f) ** 2)


def _coloured_noise(n, alpha, rng):
    """Noise with a 1/f**alpha power spectrum, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (-alpha / 2.0)
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def synthesize(label, *, seconds, sr=16000, rng) -> np.ndarray:
    """Synthesise one recording of a demo class.

    Parameters
    ----------
    label : str
        One of :data:`DEMO_LABELS`.
    seconds : float
        Duration, >= 0.3.
    sr : int, default 16000
        Sample rate (>= 8000).
    rng : numpy.random.Generator
        Source of all randomness (pitch, speaker, timing, noise, loudness).

    Returns
    -------
    y : np.ndarray, float32, shape (round(seconds * sr),)
        Mono samples with peak amplitude between 0.1 and 0.9.

    Raises
    ------
    ParameterError
        Unknown label, too short ``seconds``, ``sr`` < 8000, or ``rng`` not a Generator.

    Examples
    --------
    >>> import numpy as np
    >>> y = synthesize("ai", seconds=1.0, rng=np.random.default_rng(0))
    >>> y.shape, y.dtype
    ((16000,), dtype('float32'))
    """
    _check_label(label)
    seconds = _check_seconds(seconds)
    sr = _check_sr(sr)
    if not isinstance(rng, np.random.Generator):
        raise ParameterError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")

    n = int(round(seconds * sr))
    nyquist = sr / 2.0
    n_ctrl = int(np.ceil(seconds * _CONTROL_HZ)) + 2
    t_ctrl = np.arange(n_ctrl) / _CONTROL_HZ  # seconds
    t = np.arange(n) / sr

    # Speaker: vocal-tract scale (shorter tract -> higher formants and pitch).
    scale = np.exp(rng.uniform(np.log(0.85), np.log(1.2)))
    f0_base = np.exp(rng.uniform(np.log(85.0), np.log(150.0))) * scale ** 2.5
    f0_base = float(np.clip(f0_base, 85.0, 260.0))

    # Timing: voiced region and the glide inside it.
    on = rng.uniform(0.03, 0.2) * seconds
    off = seconds - rng.uniform(0.03, 0.2) * seconds
    voiced = off - on
    glide_mid = on + rng.uniform(0.3, 0.7) * voiced
    glide_len = rng.uniform(0.1, 0.4) * voiced
    w = _smoothstep((t_ctrl - glide_mid) / glide_len + 0.5)  # 0 -> first vowel, 1 -> second

    # Formant trajectories: per-recording jitter of each target, slow wander, speaker scale.
    v1 = np.array(_VOWELS[label[0]]) * np.exp(rng.normal(0.0, 0.06, 3))
    v2 = np.array(_VOWELS[label[1]]) * np.exp(rng.normal(0.0, 0.06, 3))
    wander = np.cumsum(rng.normal(0.0, 0.004, (n_ctrl, 3)), axis=0)
    formants = ((1 - w)[:, None] * v1 + w[:, None] * v2) * scale * np.exp(wander)
    formants = np.minimum(formants, 0.9 * nyquist)
    bandwidths = np.array(_BANDWIDTHS) * np.exp(rng.normal(0.0, 0.15, 3))

    # Pitch: declination, vibrato, jitter.
    vib_rate, vib_depth = rng.uniform(4.0, 6.5), rng.uniform(0.0, 0.025)
    f0 = f0_base * (1.0 - rng.uniform(0.0, 0.15) * t_ctrl / seconds)
    f0 *= 1.0 + vib_depth * np.sin(2 * np.pi * vib_rate * t_ctrl + rng.uniform(0, 2 * np.pi))
    f0 *= np.exp(np.cumsum(rng.normal(0.0, 0.003, n_ctrl)))

    # Harmonic amplitudes at control rate: source tilt x formant filter, band-limited.
    n_harm = int(0.95 * nyquist / f0.min())
    h = np.arange(1, n_harm + 1)[:, None]
    fh = h * f0[None, :]  # (n_harm, n_ctrl)
    amp = 1.0 / h
    for k in range(3):
        amp = amp * _resonance(fh, formants[None, :, k], bandwidths[k])
    amp = np.where(fh < 0.95 * nyquist, amp, 0.0)

    # Render: sum_h a_h(t) sin(h * phase(t)), with sin(h x) by the Chebyshev recurrence
    # sin((h+1)x) = 2 cos(x) sin(hx) - sin((h-1)x) (all harmonics in sine phase, like a
    # pulse train) and a_h(t) linearly interpolated from the control rate.
    f0_s = np.interp(t, t_ctrl, f0)
    phase = 2 * np.pi * np.cumsum(f0_s) / sr + rng.uniform(0, 2 * np.pi)
    idx = t * _CONTROL_HZ
    i0 = np.minimum(idx.astype(np.int64), n_ctrl - 2)
    frac = idx - i0
    two_cos = 2.0 * np.cos(phase)
    s_prev, s_cur = np.zeros(n), np.sin(phase)
    voice = np.zeros(n)
    for j in range(n_harm):
        a0 = amp[j, i0]
        voice += (a0 + frac * (amp[j, i0 + 1] - a0)) * s_cur
        s_prev, s_cur = s_cur, two_cos * s_cur - s_prev

    # Amplitude envelope with attack and release; slight loudness drift.
    attack, release = rng.uniform(0.015, 0.06), rng.uniform(0.03, 0.12)
    env = _smoothstep((t - on) / attack) * _smoothstep((off - t) / release)
    env *= 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t + rng.uniform(0, 2 * np.pi))
    voice = voice * env
    rms_voice = np.sqrt(np.mean(voice[env > 0.5] ** 2)) if np.any(env > 0.5) else 1.0
    voice /= rms_voice + 1e-12

    # Breath noise shaped like the mean vocal-tract response, following the envelope.
    breath = np.fft.rfft(rng.standard_normal(n))
    fb = np.fft.rfftfreq(n, 1.0 / sr)
    shape = np.ones_like(fb)
    mean_formants = formants.mean(axis=0)
    for k in range(3):
        shape *= _resonance(fb, mean_formants[k], bandwidths[k] * 2)
    breath = np.fft.irfft(breath * shape, n)
    breath *= env / (np.sqrt(np.mean(breath ** 2)) + 1e-12)
    y = voice + 10 ** (-rng.uniform(15, 30) / 20) * breath

    # Background noise of random colour and SNR.
    snr_db = rng.uniform(3.0, 30.0)
    y = y + 10 ** (-snr_db / 20) * _coloured_noise(n, rng.uniform(0.0, 1.8), rng)

    peak = np.max(np.abs(y))
    y = y * (rng.uniform(0.1, 0.9) / (peak + 1e-12))
    return y.astype(np.float32)


def write_demo_corpus(directory, *, n_train=20, n_test=10, seconds=1.5, sr=16000, seed=0):
    """Write the demo corpus as folder-per-label WAV files.

    Layout: ``directory/train/<label>/<label>_NNN.wav`` (``NNN`` = 000, 001, ...)
    and ``directory/test/<label>/<label>_NNN.wav``, 16-bit PCM mono.

    Parameters
    ----------
    directory : str or path-like
        Created if missing. Its ``train`` and ``test`` sub-folders must not exist or
        be empty, so an older corpus is never mixed with a new one.
    n_train, n_test : int, default 20 and 10
        Recordings per label in each split (``n_test`` may be 0).
    seconds : float, default 1.5
        Duration of each recording.
    sr : int, default 16000
        Sample rate.
    seed : int, default 0
        Same seed, same files (byte for byte).

    Returns
    -------
    (train_dir, test_dir) : tuple of pathlib.Path

    Raises
    ------
    ParameterError
        Invalid counts, duration, rate or seed, or ``train``/``test`` already hold files.

    Examples
    --------
    >>> train_dir, test_dir = write_demo_corpus("demo_corpus")  # doctest: +SKIP
    >>> sorted(p.name for p in train_dir.iterdir())  # doctest: +SKIP
    ['ai', 'au', 'ia', 'oi', 'ua']
    """
    for name, value, minimum in (("n_train", n_train, 1), ("n_test", n_test, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ParameterError(f"{name} must be an int >= {minimum}, got {value!r}")
    seconds = _check_seconds(seconds)
    sr = _check_sr(sr)
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise ParameterError(f"directory must be a folder, but {root} is a file")
    train_dir, test_dir = root / "train", root / "test"
    for d in (train_dir, test_dir):
        if d.exists() and (not d.is_dir() or any(d.iterdir())):
            raise ParameterError(
                f"directory {root} already holds a corpus ({d} is not empty); "
                f"choose a new or empty directory"
            )
    for split, count, split_dir in (("train", n_train, train_dir), ("test", n_test, test_dir)):
        for label_id, label in enumerate(DEMO_LABELS):
            folder = split_dir / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(int(count)):
                rng = np.random.default_rng([int(seed), _SPLITS[split], label_id, i])
                y = synthesize(label, seconds=seconds, sr=sr, rng=rng)
                sf.write(folder / f"{label}_{i:03d}.wav", y, sr, subtype="PCM_16")
    return train_dir, test_dir
