"""Tests for audiogmm.demo: the deterministic synthetic demo corpus."""

import numpy as np
import pytest
import soundfile as sf

from audiogmm.demo import DEMO_LABELS, synthesize, write_demo_corpus
from audiogmm.exceptions import ParameterError


def test_labels():
    assert isinstance(DEMO_LABELS, tuple) and len(DEMO_LABELS) == len(set(DEMO_LABELS)) >= 4
    assert all(isinstance(label, str) and label.isidentifier() for label in DEMO_LABELS)


@pytest.mark.parametrize("label", DEMO_LABELS)
def test_synthesize_shape_and_range(label):
    y = synthesize(label, seconds=0.5, rng=np.random.default_rng(1))
    assert y.dtype == np.float32 and y.shape == (8000,)
    assert np.isfinite(y).all()
    assert 0.1 - 1e-6 <= np.max(np.abs(y)) <= 0.9 + 1e-6
    assert np.std(y) > 0.005


def test_synthesize_other_rate():
    y = synthesize("ai", seconds=0.4, sr=8000, rng=np.random.default_rng(0))
    assert y.shape == (3200,) and np.isfinite(y).all()


def test_synthesize_deterministic():
    a = synthesize("ia", seconds=0.5, rng=np.random.default_rng(7))
    b = synthesize("ia", seconds=0.5, rng=np.random.default_rng(7))
    c = synthesize("ia", seconds=0.5, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"label": "xy"}, "label must be one of"),
        ({"seconds": 0.1}, r"seconds must be a number >= 0.3, got 0.1"),
        ({"seconds": float("nan")}, "seconds must be a number"),
        ({"sr": 4000}, r"sr must be an int >= 8000, got 4000"),
        ({"rng": 0}, "rng must be a numpy.random.Generator, got int"),
    ],
)
def test_synthesize_validation(kwargs, match):
    args = {"label": "ai", "seconds": 0.5, "sr": 16000, "rng": np.random.default_rng(0), **kwargs}
    label = args.pop("label")
    with pytest.raises(ParameterError, match=match):
        synthesize(label, **args)


def files_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.wav"))}


def test_write_demo_corpus_layout_and_determinism(tmp_path):
    train, test = write_demo_corpus(tmp_path / "a", n_train=2, n_test=1, seconds=0.4)
    assert (train, test) == (tmp_path / "a" / "train", tmp_path / "a" / "test")
    a = files_of(tmp_path / "a")
    expected = {f"train/{lab}/{lab}_{i:03d}.wav" for lab in DEMO_LABELS for i in range(2)}
    expected |= {f"test/{lab}/{lab}_000.wav" for lab in DEMO_LABELS}
    assert set(a) == expected
    assert sorted(p.name for p in train.iterdir()) == sorted(DEMO_LABELS)

    info = sf.info(train / "ai" / "ai_001.wav")
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 6400, "PCM_16")

    write_demo_corpus(tmp_path / "b", n_train=2, n_test=1, seconds=0.4)
    assert files_of(tmp_path / "b") == a  # byte-identical

    write_demo_corpus(tmp_path / "c", n_train=1, n_test=1, seconds=0.4)
    c = files_of(tmp_path / "c")
    assert all(c[name] == a[name] for name in c)  # a file doesn't depend on n_train

    write_demo_corpus(tmp_path / "d", n_train=2, n_test=1, seconds=0.4, seed=1)
    d = files_of(tmp_path / "d")
    assert set(d) == set(a) and all(d[name] != a[name] for name in a)

    # the train and test recordings differ from each other
    assert a["train/ai/ai_000.wav"] != a["test/ai/ai_000.wav"]


def test_write_demo_corpus_refuses_existing_corpus(tmp_path):
    write_demo_corpus(tmp_path, n_train=1, n_test=0, seconds=0.3)
    with pytest.raises(ParameterError, match="already holds a corpus"):
        write_demo_corpus(tmp_path, n_train=1, n_test=0, seconds=0.3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_train": 0}, r"n_train must be an int >= 1, got 0"),
        ({"n_test": -1}, r"n_test must be an int >= 0, got -1"),
        ({"seed": -3}, r"seed must be an int >= 0, got -3"),
        ({"seconds": 0}, "seconds must be a number >= 0.3"),
        ({"sr": 16000.0}, "sr must be an int >= 8000"),
    ],
)
def test_write_demo_corpus_validation(tmp_path, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        write_demo_corpus(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())  # validated before writing anything


def test_write_demo_corpus_into_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ParameterError, match="must be a folder"):
        write_demo_corpus(f, n_train=1)
