"""The Python workflow API (train / predict / evaluate) on synthetic and, when present, real recordings."""

import numpy as np
import pytest

import audiogmm
from audiogmm import pipeline
from audiogmm.exceptions import AudioSkippedWarning, ParameterError, TrainingError, UnknownLabelWarning
from audiogmm.features import FeatureConfig

from conftest import shared_data


def test_train_predict_evaluate(tone_corpus, tmp_path):
    calls = []
    model = pipeline.train(
        tone_corpus / "train", n_components=2, random_state=0,
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    assert ("features", 12, 12) in calls and ("training", 3, 3) in calls
    assert model.classes == ["high", "low", "noise"]
    assert model.summary["n_recordings"] == 12
    assert model.summary["classes"]["low"]["recordings"] == 4
    from audiogmm.recipes import get_recipe

    # no preset: the default for recordings this short (0.5 s), the speech recipe's features
    assert model.summary["default_choice"]["preset"] == "speech"
    assert model.feature_config == get_recipe(median_seconds=0.5).features == get_recipe("speech").features

    preds, n_other = pipeline.predict(model, [tone_corpus / "test"], n_jobs=2)
    assert n_other == 0
    assert [p.label for p in preds] == [p.path.split("/")[-2] for p in preds]
    assert all(p.n_frames > 0 and p.error is None for p in preds)
    # the prediction is the argmax of the mean frame log-likelihood
    for p in preds:
        assert p.label == model.classes[int(np.argmax(p.scores))]

    ev = pipeline.evaluate(model, tone_corpus / "test")
    assert ev.accuracy == 1.0 and ev.confusion.sum() == 6
    d = ev.to_dict()
    assert d["per_class"]["noise"]["support"] == 2


def test_unknown_test_label_counts_as_error(tone_corpus, tmp_path):
    model = pipeline.train(tone_corpus / "train", n_components=2, include=["low/*", "high/*"])
    assert model.classes == ["high", "low"]
    with pytest.warns(UnknownLabelWarning, match="2 test recording"):
        ev = pipeline.evaluate(model, tone_corpus / "test")
    assert ev.labels == ["high", "low", "noise"]
    assert ev.accuracy == pytest.approx(4 / 6)
    assert ev.confusion[2].sum() == 2 and ev.confusion[2, 2] == 0


def test_skipped_files_warn_and_are_listed(tone_corpus):
    (tone_corpus / "train" / "low" / "bad.flac").write_bytes(b"fLaC broken")
    with pytest.warns(AudioSkippedWarning, match="bad.flac"):
        model = pipeline.train(tone_corpus / "train", n_components=2)
    assert model.summary["n_skipped"] == 1
    with pytest.warns(AudioSkippedWarning):
        preds, _ = pipeline.predict(model, [tone_corpus / "train" / "low"])
    assert [p.label is None for p in preds].count(True) == 1


def test_parameters_checked_before_any_work(tone_corpus):
    with pytest.raises(ParameterError, match="jobs must be"):
        pipeline.train(tone_corpus / "train", n_jobs=0)
    with pytest.raises(ParameterError, match="feature_config must be a FeatureConfig"):
        pipeline.train(tone_corpus / "train", feature_config={"n_mfcc": 13})


def test_top_level_api(tone_corpus, tmp_path):
    model = audiogmm.train(tone_corpus / "train", n_components=2)
    path = model.save(tmp_path / "m.agmm")
    again = audiogmm.load_model(path)
    preds, _ = audiogmm.predict(again, [tone_corpus / "test" / "high"])
    assert {p.label for p in preds} == {"high"}


def test_gmm_import_is_light():
    import subprocess
    import sys

    code = "import sys, audiogmm.mixture; print(sorted(m for m in ('librosa', 'click', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_real_speakers_subset():
    """Two FSDD speakers, all digits: real 8 kHz WAVs, resampled and classified (upstream test indices)."""
    root = shared_data("speaker")
    manifest = root / "MANIFEST.tsv"
    train_rows = audiogmm.discover(manifest, include=["george/*_[5-9].wav", "jackson/*_[5-9].wav"])
    assert len(train_rows) == 100
    model = pipeline.train(train_rows, n_components=8, n_jobs=2)
    test_rows = audiogmm.discover(manifest, include=["george/*_[0-4].wav", "jackson/*_[0-4].wav"])
    ev = pipeline.evaluate(model, test_rows, n_jobs=2)
    assert len(ev.y_true) == 100
    assert ev.accuracy >= 0.9


def two_class_recording(write_wav):
    """3 s of the 'low' tone, then 3 s of the 'high' tone, back to back."""
    from conftest import synth_tone

    y = np.concatenate([synth_tone("low", seconds=3.0, seed=101), synth_tone("high", seconds=3.0, seed=102)])
    return write_wav("mix/two.wav", y)


def switch_index(labels, first, second):
    """Where ``labels`` turns from ``first`` to ``second`` (asserting it does so once)."""
    k = labels.index(second)
    assert labels[:k] == [first] * k and labels[k:] == [second] * (len(labels) - k), labels
    return k


def test_predict_segments_finds_the_switch(tone_corpus, write_wav, tmp_path):
    # No CMVN: these stationary synthetic tones are told apart by their spectral shape, which
    # normalisation removes; per-recording CMVN would also mix the two halves' statistics.
    cfg = FeatureConfig(cmvn="none")
    model = pipeline.train(tone_corpus / "train", feature_config=cfg, n_components=2, random_state=0)
    path = two_class_recording(write_wav)
    timelines, n_other = pipeline.predict_segments(model, [path, tmp_path / "mix"], 1.0, cache_dir=tmp_path / "c")
    assert n_other == 0 and len(timelines) == 1  # the folder holds the same file once
    t = timelines[0]
    assert t.error is None and t.duration == 6.0
    assert [(s.start, s.end) for s in t.segments] == [(float(i), float(i + 1)) for i in range(6)]
    assert abs(switch_index([s.label for s in t.segments], "low", "high") - 3) <= 1  # within one segment
    for s in t.segments:
        assert s.n_frames in (100, 101) and abs(s.probabilities.sum() - 1) < 1e-9
        assert s.label == model.classes[int(np.argmax(s.scores))]
    # the same timeline from the cache, at a length that does not divide the recording
    again, _ = pipeline.predict_segments(model, [path], 2.5, cache_dir=tmp_path / "c")
    assert [(s.start, s.end) for s in again[0].segments] == [(0.0, 2.5), (2.5, 5.0), (5.0, 6.0)]
    assert [s.label for s in again[0].segments][::2] == ["low", "high"]


def test_predict_segments_errors_and_skips(tone_corpus, tmp_path):
    model = pipeline.train(tone_corpus / "train", n_components=1, random_state=0)
    for bad in (0, -1, float("nan"), "5", True):
        with pytest.raises(ParameterError, match="segment must be a number of seconds > 0"):
            pipeline.predict_segments(model, [tone_corpus / "test"], bad)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....garbage")
    with pytest.warns(AudioSkippedWarning):
        timelines, _ = pipeline.predict_segments(model, [broken], 1.0)
    assert timelines[0].error and timelines[0].segments == []
