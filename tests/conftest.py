"""Shared fixtures: a seeded random generator and short synthetic recordings in tmp_path."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def rng():
    """A seeded NumPy generator, so every test is reproducible."""
    return np.random.default_rng(0)


def synth_tone(kind, *, seconds=1.0, sr=16000, seed=0):
    """A short synthetic recording of one of three easily told-apart kinds.

    ``"low"``: a 220 Hz harmonic tone; ``"high"``: a 1760 Hz harmonic tone;
    ``"noise"``: band-limited noise. Each has a little random jitter so no two
    recordings are identical.
    """
    r = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    if kind == "noise":
        y = r.standard_normal(t.size)
        y = np.convolve(y, np.ones(4) / 4, mode="same")
    else:
        f0 = {"low": 220.0, "high": 1760.0}[kind] * (1 + 0.03 * r.standard_normal())
        y = sum(np.sin(2 * np.pi * f0 * h * t + r.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3))
        y = y + 0.05 * r.standard_normal(t.size)
    y = 0.3 * y / np.max(np.abs(y))
    return y.astype(np.float32)


@pytest.fixture
def write_wav(tmp_path):
    """Write ``y`` at ``sr`` to ``tmp_path / name`` (creating folders) and return the path."""

    def _write(name, y, sr=16000):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, y, sr)
        return path

    return _write


@pytest.fixture
def tone_corpus(tmp_path):
    """A folder-per-label corpus: ``train/<label>/*.wav`` and ``test/<label>/*.wav``.

    Three labels (low, high, noise), 4 training and 2 test recordings each, 0.5 s at 16 kHz.
    """
    root = tmp_path / "corpus"
    seed = 0
    for split, n in (("train", 4), ("test", 2)):
        for kind in ("low", "high", "noise"):
            for i in range(n):
                seed += 1
                path = root / split / kind / f"{kind}_{i}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, synth_tone(kind, seconds=0.5, seed=seed), 16000)
    return root


def shared_data(name):
    """The path of ``../shared/data/<name>``, or skip the test cleanly when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is not present")
    return path
