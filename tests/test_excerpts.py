"""Long tracks are scored on excerpts spread across them (bounded work per track)."""

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiogmm import audio, pipeline
from audiogmm.cli import main
from audiogmm.exceptions import ParameterError
from audiogmm.features import FeatureConfig, extract, extract_excerpts, extract_file

from conftest import synth_tone


def test_excerpt_starts_centre_one_excerpt_per_part():
    assert audio.excerpt_starts(100.0, 4, 10.0) == [7.5, 32.5, 57.5, 82.5]
    assert audio.excerpt_starts(40.0, 4, 10.0) == []  # not longer than 4 x 10 s: use it whole
    assert audio.excerpt_starts(41.0, 4, 10.0)[0] == pytest.approx(0.125)


def test_load_excerpts_reads_the_right_samples(tmp_path, rng):
    y = rng.standard_normal(16000 * 20).astype(np.float32) * 0.1
    path = tmp_path / "long.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    parts = audio.load_excerpts(path, sr=16000, n_excerpts=4, seconds=2.0)
    assert len(parts) == 4
    for k, part in enumerate(parts):
        start = int(((k + 0.5) * 5.0 - 1.0) * 16000)
        np.testing.assert_array_equal(part, y[start:start + 32000])
    assert audio.load_excerpts(path, sr=16000, n_excerpts=4, seconds=5.0) is None
    resampled = audio.load_excerpts(path, sr=8000, n_excerpts=2, seconds=1.5)
    assert [p.size for p in resampled] == [12000, 12000]
    with pytest.raises(ParameterError, match="n_excerpts must be an int >= 1"):
        audio.load_excerpts(path, sr=16000, n_excerpts=0, seconds=1.0)


def test_stereo_excerpts_are_mixed_to_mono(tmp_path, rng):
    left = rng.standard_normal(16000 * 6).astype(np.float32) * 0.1
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, -left * 0.5], axis=1), 16000, subtype="FLOAT")
    (part,) = audio.load_excerpts(path, sr=16000, n_excerpts=1, seconds=2.0)
    np.testing.assert_allclose(part, (left[32000:64000] * 0.25), atol=1e-7)


def test_extract_excerpts_normalises_each_excerpt(tmp_path):
    config = FeatureConfig()
    y = np.concatenate([synth_tone("low", seconds=4, seed=1), synth_tone("noise", seconds=4, seed=2)])
    path = tmp_path / "mix.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    X = extract_excerpts(path, config, n_excerpts=2, seconds=1.0)
    parts = audio.load_excerpts(path, sr=16000, n_excerpts=2, seconds=1.0)
    np.testing.assert_array_equal(X, np.concatenate([extract(p, config) for p in parts]))
    # a short recording is used whole
    np.testing.assert_array_equal(extract_excerpts(path, config, n_excerpts=2, seconds=10.0), extract_file(path, config))


def test_predict_long_track_costs_bounded_frames(tone_corpus, tmp_path):
    model = pipeline.train(tone_corpus / "train", n_components=2, feature_config=FeatureConfig(cmvn="none"))
    long_path = tmp_path / "long_high.wav"
    sf.write(long_path, synth_tone("high", seconds=30, seed=9), 16000)
    (whole,), _ = pipeline.predict(model, [long_path], excerpts=None)
    (short,), _ = pipeline.predict(model, [long_path], excerpts=(3, 1.0))
    assert whole.n_frames == 3001
    assert short.n_frames == 3 * 101
    assert short.label == whole.label == "high"
    result = CliRunner().invoke(main, ["predict", str(model.save(tmp_path / "m.agmm")), str(long_path),
                                       "--excerpts", "2", "--excerpt-seconds", "1", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["predictions"][0]["n_frames"] == 2 * 101
    with pytest.raises(ParameterError, match=r"excerpt seconds must be a number >= 0.025 \(one analysis window\)"):
        pipeline.predict(model, [long_path], excerpts=(2, 0))
    with pytest.raises(ParameterError, match="excerpt seconds must be a number >= 0.025"):
        pipeline.predict(model, [long_path], excerpts=(2, 1e-9))  # failed per file before, as 'no audio'
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "m.agmm"), str(long_path), "--excerpt-seconds", "1e-9"])
    assert result.exit_code == 2 and "excerpt seconds must be a number >= 0.025" in result.stderr
