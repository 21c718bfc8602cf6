"""``-q`` silences C libraries' own stderr lines too (libmpg123's notes on damaged MP3 frames).

These run the real command in a child process: only there is stderr file descriptor 2, the one
libmpg123 writes to (CliRunner and pytest's capture replace ``sys.stderr``).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiogmm import pipeline


@pytest.fixture
def damaged_mp3(tmp_path):
    """An MP3 with zeroed stretches, on which libmpg123 prints ``Note: ...`` lines and resyncs."""
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    good = tmp_path / "good.mp3"
    x = (np.random.default_rng(0).standard_normal(16000 * 3) * 0.1).astype(np.float32)
    sf.write(good, x, 16000, format="MP3")
    data = bytearray(good.read_bytes())
    for i in range(2000, len(data), 1500):
        data[i:i + 40] = bytes(40)
    bad = tmp_path / "damaged.mp3"
    bad.write_bytes(bytes(data))
    return bad


def _predict(args):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "audiogmm", "predict", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_quiet_silences_the_mp3_decoders_notes_but_not_our_errors(tone_corpus, tmp_path, damaged_mp3):
    model = tmp_path / "tones.agmm"
    pipeline.train(tone_corpus / "train", n_components=2).save(model)

    loud = _predict([model, damaged_mp3])
    assert loud.returncode == 0, loud.stderr
    if "Illegal Audio-MPEG-Header" not in loud.stderr:
        pytest.skip("this libmpg123 prints no notes for the damaged file")
    assert "damaged.mp3" in loud.stdout

    quiet = _predict(["-q", "--jobs", "2", model, damaged_mp3, damaged_mp3.with_name("good.mp3")])
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert "damaged.mp3" in quiet.stdout and "good.mp3" in quiet.stdout  # results still on stdout

    # An error raised while fd 2 is silenced (the model is read after -q took effect) is still
    # reported on the real stderr.
    broken = tmp_path / "broken.agmm"
    broken.write_bytes(b"not a model")
    failed = _predict(["-q", broken, damaged_mp3])
    assert failed.returncode == 1
    assert "not a usable audiogmm model" in failed.stderr
