"""Tests for audiogmm.features: FeatureConfig, the direct MFCC, deltas, CMVN and edge cases."""

import json
import warnings

import librosa
import numpy as np
import pytest
from conftest import shared_data, synth_tone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiogmm import audio, features
from audiogmm.exceptions import AudioLoadError, ParameterError
from audiogmm.features import PRESETS, FeatureConfig, extract, extract_excerpts, extract_file


def librosa_mfcc(y, cfg):
    """The reference: librosa.feature.mfcc on the same parameters, as (n_frames, n)."""
    n = cfg.n_mfcc + (0 if cfg.keep_c0 else 1)
    m = librosa.feature.mfcc(
        y=y, sr=cfg.sample_rate, n_mfcc=n, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, n_mels=cfg.n_mels, fmin=cfg.fmin,
        fmax=cfg.sample_rate / 2 if cfg.fmax is None else cfg.fmax,
    )
    return m.T if cfg.keep_c0 else m.T[:, 1:]


def assert_close_rel(actual, expected, tol=1e-4):
    """Max |difference| relative to the reference's largest magnitude."""
    assert actual.shape == expected.shape
    rel = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert rel <= tol, rel


@pytest.fixture
def speechlike():
    """2 s of a harmonic tone, noise and silence, so MFCCs vary over time."""
    sr = 16000
    y = np.concatenate([
        synth_tone("low", seconds=0.7, sr=sr, seed=1),
        np.zeros(sr // 5, dtype=np.float32),
        synth_tone("noise", seconds=0.5, sr=sr, seed=2),
        synth_tone("high", seconds=0.6, sr=sr, seed=3),
    ])
    return y


# -- config ---------------------------------------------------------------------------------


def test_defaults_and_derived_sizes():
    cfg = FeatureConfig()
    assert (cfg.sample_rate, cfg.n_mfcc, cfg.n_mels, cfg.fmin, cfg.fmax) == (16000, 20, 40, 20.0, None)
    assert (cfg.win_ms, cfg.hop_ms, cfg.keep_c0, cfg.deltas, cfg.delta_width, cfg.cmvn) == (
        25.0, 10.0, True, 2, 9, "utterance")
    assert (cfg.win_length, cfg.hop_length, cfg.n_fft, cfg.n_features) == (400, 160, 512, 60)
    music = FeatureConfig.preset("music", sample_rate=22050, win_ms=46.44, hop_ms=23.22)
    assert (music.win_length, music.hop_length, music.n_fft) == (1024, 512, 1024)


def test_presets_documented_values():
    assert FeatureConfig.preset("speech") == FeatureConfig()
    assert FeatureConfig.preset("language") == FeatureConfig()
    lang = FeatureConfig.preset("language", n_mfcc=7, deltas=0, sdc=True, vad=True)  # the classic SDC front end
    assert (lang.n_mfcc, lang.deltas, lang.sdc, lang.vad, lang.cmvn) == (7, 0, True, True, "utterance")
    assert (lang.sdc_n, lang.sdc_d, lang.sdc_p, lang.sdc_k, lang.n_features) == (7, 1, 3, 7, 56)
    assert FeatureConfig.preset("language", n_mfcc=7, deltas=0, sdc=True, sdc_k=3).n_features == 7 + 21
    music = FeatureConfig.preset("music")
    assert (music.sample_rate, music.win_ms, music.hop_ms) == (16000, 25.0, 10.0)
    assert music.n_mels == 128 and music.fmin == 0.0 and music.n_features == 60
    assert FeatureConfig.preset("speech", n_mfcc=13, deltas=0).n_features == 13
    with pytest.raises(ParameterError, match="unknown feature preset 'podcast'"):
        FeatureConfig.preset("podcast")
    with pytest.raises(ParameterError, match="unknown FeatureConfig field"):
        FeatureConfig.preset("speech", n_mfccs=13)
    with pytest.raises(ParameterError, match="n_mfcc must be an int >= 1, got 0"):
        FeatureConfig.preset("music", n_mfcc=0)


@pytest.mark.parametrize("name", ["default", *sorted(PRESETS)])
def test_dict_round_trip(name):
    cfg = FeatureConfig() if name == "default" else FeatureConfig.preset(name)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert FeatureConfig.from_dict(d) == cfg
    assert FeatureConfig.from_dict(d).to_dict() == cfg.to_dict()


def test_round_trip_normalises_types():
    cfg = FeatureConfig(sample_rate=np.int64(8000), fmin=0, fmax=np.float32(3000), win_ms=32)
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert type(d["sample_rate"]) is int and type(d["fmin"]) is float and type(d["fmax"]) is float


def test_from_dict_errors():
    with pytest.raises(ParameterError, match="unknown FeatureConfig field.*colour"):
        FeatureConfig.from_dict({**FeatureConfig().to_dict(), "colour": "blue"})
    with pytest.raises(ParameterError, match="cmvn must be one of"):
        FeatureConfig.from_dict({"cmvn": "global"})
    with pytest.raises(ParameterError, match="must be built from a dict"):
        FeatureConfig.from_dict([("n_mfcc", 13)])
    assert FeatureConfig.from_dict({"n_mfcc": 13}) == FeatureConfig(n_mfcc=13)  # missing -> default


def test_config_is_frozen_and_hashable():
    cfg = FeatureConfig()
    with pytest.raises(AttributeError):
        cfg.n_mfcc = 13
    assert len({cfg, FeatureConfig()}) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sample_rate": 500}, r"sample_rate must be an int >= 1000, got 500"),
        ({"sample_rate": 16000.0}, r"sample_rate must be an int >= 1000, got 16000.0"),
        ({"n_mfcc": 0}, r"n_mfcc must be an int >= 1, got 0"),
        ({"n_mfcc": True}, r"n_mfcc must be an int >= 1, got True"),
        ({"n_mels": 0}, r"n_mels must be an int >= 1, got 0"),
        ({"n_mfcc": 41}, r"n_mfcc must be <= n_mels \(40\), got 41"),
        ({"n_mfcc": 40, "keep_c0": False}, r"n_mfcc must be <= n_mels - 1"),
        ({"fmin": -1}, r"fmin must be a finite number >= 0, got -1"),
        ({"fmin": float("nan")}, r"fmin must be a finite number >= 0"),
        ({"fmin": 9000}, r"fmin must be < sample_rate / 2 \(8000.0\), got 9000"),
        ({"fmax": 9000}, r"fmax must be None or a number with fmin \(20.0\) < fmax <= sample_rate / 2 \(8000.0\), got 9000"),
        ({"fmax": 10.0}, r"fmax must be None or a number"),
        ({"fmax": "8000"}, r"fmax must be None or a number"),
        ({"win_ms": 0}, r"win_ms must be a finite number > 0, got 0"),
        ({"win_ms": 0.5}, r"win_ms must give a window of >= 16 samples"),
        ({"hop_ms": -10}, r"hop_ms must be a finite number > 0, got -10"),
        ({"hop_ms": 0.01}, r"hop_ms must give a hop of >= 1 sample"),
        ({"keep_c0": 1}, r"keep_c0 must be a bool, got 1"),
        ({"deltas": 3}, r"deltas must be 0, 1 or 2, got 3"),
        ({"deltas": 1.0}, r"deltas must be 0, 1 or 2, got 1.0"),
        ({"delta_width": 4}, r"delta_width must be an odd int >= 3, got 4"),
        ({"delta_width": 1}, r"delta_width must be an odd int >= 3, got 1"),
        ({"cmvn": "CMVN"}, r"cmvn must be one of 'none', 'mean', 'utterance', 'sliding', got 'CMVN'"),
        ({"n_mels": 128, "win_ms": 16}, r"n_mels=128 is too many for a 256-point FFT"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        FeatureConfig(**kwargs)


# -- the direct MFCC against librosa ---------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        FeatureConfig(),
        FeatureConfig.preset("music"),
        FeatureConfig(n_mfcc=13, keep_c0=False, fmin=100.0, fmax=7000.0),
        FeatureConfig(sample_rate=8000, win_ms=32, hop_ms=8, n_mels=24, n_mfcc=12),
    ],
    ids=["default", "music", "no-c0-band", "8k"],
)
@pytest.mark.parametrize("seconds", [0.004, 0.05, 1.0, 3.1])
def test_lean_mfcc_matches_librosa(cfg, seconds, speechlike):
    y = np.resize(speechlike, int(seconds * cfg.sample_rate))
    y[: y.size // 4] *= 1e-4  # a quiet stretch, so the 80 dB floor is exercised
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # librosa: "n_fft is too large for input"
        ref = librosa_mfcc(y, cfg)
    static = extract(y, FeatureConfig.from_dict({**cfg.to_dict(), "deltas": 0, "cmvn": "none"}))
    assert_close_rel(static, ref)


def test_block_boundaries_do_not_matter(monkeypatch, speechlike):
    cfg = FeatureConfig(deltas=0, cmvn="none")
    whole = extract(speechlike, cfg)
    monkeypatch.setattr(features, "_BLOCK_FRAMES", 7)
    assert_close_rel(extract(speechlike, cfg), whole, tol=1e-6)  # float32 rounding only


# -- shapes, deltas, CMVN -------------------------------------------------------------------


@pytest.mark.parametrize("deltas", [0, 1, 2])
@pytest.mark.parametrize("keep_c0", [True, False])
def test_shapes(deltas, keep_c0, speechlike):
    cfg = FeatureConfig(deltas=deltas, keep_c0=keep_c0, n_mfcc=13)
    X = extract(speechlike, cfg)
    assert X.dtype == np.float32 and X.flags.c_contiguous
    assert X.shape == (1 + speechlike.size // 160, 13 * (1 + deltas)) == (X.shape[0], cfg.n_features)


def test_keep_c0_false_drops_c0(speechlike):
    with_c0 = extract(speechlike, FeatureConfig(n_mfcc=14, deltas=0, cmvn="none"))
    without = extract(speechlike, FeatureConfig(n_mfcc=13, keep_c0=False, deltas=0, cmvn="none"))
    np.testing.assert_allclose(without, with_c0[:, 1:], rtol=1e-5, atol=1e-4)


def test_deltas_equal_librosa_delta(speechlike):
    cfg = FeatureConfig(cmvn="none")
    X = extract(speechlike, cfg)
    mfcc = X[:, :20].T
    np.testing.assert_allclose(X[:, 20:40].T, librosa.feature.delta(mfcc, width=9), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(X[:, 40:].T, librosa.feature.delta(mfcc, width=9, order=2), rtol=1e-5, atol=1e-4)
    X5 = extract(speechlike, FeatureConfig(cmvn="none", deltas=1, delta_width=5))
    np.testing.assert_allclose(X5[:, 20:].T, librosa.feature.delta(mfcc, width=5), rtol=1e-5, atol=1e-4)


def test_utterance_cmvn_zero_mean_unit_variance(speechlike):
    X = extract(speechlike, FeatureConfig()).astype(np.float64)
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(X.std(axis=0), 1, atol=1e-4)


def test_mean_cmvn_only_centres(speechlike):
    raw = extract(speechlike, FeatureConfig(cmvn="none")).astype(np.float64)
    X = extract(speechlike, FeatureConfig(cmvn="mean")).astype(np.float64)
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(X, raw - raw.mean(axis=0), atol=1e-3)


def test_gain_invariance_with_cmvn(speechlike):
    """A louder copy differs only in c0's offset, which CMN removes."""
    a = extract(speechlike, FeatureConfig(cmvn="mean"))
    b = extract(3.0 * speechlike, FeatureConfig(cmvn="mean"))
    np.testing.assert_allclose(a, b, atol=1e-2)


# -- edge cases ----------------------------------------------------------------------------


@pytest.mark.parametrize("n_samples", [1, 100, 400, 800, 1300])
@pytest.mark.parametrize("cmvn", ["none", "mean", "utterance"])
def test_very_short_clips_are_finite(n_samples, cmvn, rng):
    y = 0.1 * rng.standard_normal(n_samples).astype(np.float32)
    X = extract(y, FeatureConfig(cmvn=cmvn))
    assert X.shape == (1 + n_samples // 160, 60)
    assert np.isfinite(X).all()


def test_short_clip_uses_nearest_delta_edges(rng):
    y = 0.1 * rng.standard_normal(800).astype(np.float32)  # 6 frames < delta_width 9
    X = extract(y, FeatureConfig(cmvn="none"))
    mfcc = X[:, :20].T
    np.testing.assert_allclose(
        X[:, 20:40].T, librosa.feature.delta(mfcc, width=9, mode="nearest"), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("cmvn", ["none", "mean", "utterance"])
def test_silence_is_finite(cmvn):
    X = extract(np.zeros(16000, dtype=np.float32), FeatureConfig(cmvn=cmvn))
    assert np.isfinite(X).all()
    if cmvn != "none":
        # Every frame of digital silence has the same log-mel row, but the DCT is one float32
        # GEMM and BLAS rounds rows differently by their place in its blocking (OpenBLAS's
        # Haswell kernel: c0 alternates between two values 4 ulp apart every few rows), so
        # centring leaves that rounding, not zero. Bound it as a float32 dot product of n_mels
        # terms may err (Higham's gamma_n * sum |a_i b_i|, twice: two rows differ by up to two
        # such errors); it is far below the unit variance a real signal is scaled to.
        cfg = FeatureConfig(cmvn=cmvn)
        n = cfg.n_mels
        gamma = n * 2.0 ** -24 / (1 - n * 2.0 ** -24)
        c0 = float(np.abs(extract(np.zeros(16000, np.float32), FeatureConfig(cmvn="none"))[:, 0]).max())
        bound = 2 * gamma * c0  # c0 = |sum of n terms of one sign|, the largest coefficient
        assert bound < 1e-2
        np.testing.assert_allclose(X, 0, atol=bound)


def test_silence_then_sound_floor(speechlike):
    """Digital silence is floored 80 dB below the peak, not at log(1e-10)."""
    y = np.concatenate([np.zeros(8000, np.float32), speechlike])
    X = extract(y, FeatureConfig(cmvn="none", deltas=0))
    assert np.isfinite(X).all() and X[:, 0].min() > X[:, 0].max() - 80 * np.sqrt(40) - 1e-3


def test_integer_input_is_accepted():
    y = (np.sin(np.arange(4000) * 0.2) * 10000).astype(np.int16)
    assert extract(y, FeatureConfig()).shape == (26, 60)


@given(
    n=st.integers(min_value=1, max_value=4000),
    amp=st.floats(min_value=0.0, max_value=100.0),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_finite_signal_gives_finite_features(n, amp, seed):
    y = (amp * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)
    X = extract(y, FeatureConfig())
    assert X.shape == (1 + n // 160, 60) and np.isfinite(X).all()


@pytest.mark.parametrize(
    "y, match",
    [
        (np.zeros((2, 100), np.float32), r"y must be 1-D mono samples, got shape \(2, 100\)"),
        (np.zeros(0, np.float32), "y must hold at least one sample"),
        (np.array([0.0, np.nan, 0.1], np.float32), "y must be finite"),
        (np.array([1 + 1j, 0j]), "y must be real-valued"),
        (np.array(["a", "b"]), "y must be real-valued"),
    ],
)
def test_extract_rejects_bad_input(y, match):
    with pytest.raises(ParameterError, match=match):
        extract(y, FeatureConfig())


def test_extract_rejects_non_config(speechlike):
    with pytest.raises(ParameterError, match="config must be a FeatureConfig, got dict"):
        extract(speechlike, {"n_mfcc": 20})
    with pytest.raises(ParameterError, match="config must be a FeatureConfig"):
        extract_file("x.wav", None)


# -- files -----------------------------------------------------------------------------------


def test_extract_file_resamples_and_matches_extract(write_wav):
    y8k = synth_tone("low", seconds=1.0, sr=8000, seed=4)
    path = write_wav("a.wav", y8k, sr=8000)
    cfg = FeatureConfig()
    X = extract_file(path, cfg)
    assert X.shape == (101, 60) and np.isfinite(X).all()
    from audiogmm.audio import load

    np.testing.assert_array_equal(X, extract(load(path, sr=16000), cfg))


def test_extract_file_load_error(tmp_path):
    with pytest.raises(AudioLoadError, match="not found"):
        extract_file(tmp_path / "missing.wav", FeatureConfig())


@pytest.mark.parametrize("dataset, pattern", [("speaker", "*/*.wav"), ("language", "*/*.ogg")])
def test_real_files(dataset, pattern):
    root = shared_data(dataset)
    paths = sorted(root.glob(pattern))[::400][:4]
    assert paths
    cfg = FeatureConfig()
    for path in paths:
        X = extract_file(path, cfg)
        from audiogmm.audio import duration

        assert X.shape[1] == 60 and np.isfinite(X).all()
        assert abs(X.shape[0] - 1 - duration(path) * 100) <= 2
        np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-4)


# -- the rest of the front end: constants, sliding CMVN, SDC, VAD, block-wise files ---------


@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax", [
    (16000, 512, 40, 20.0, None), (22050, 1024, 64, 20.0, None), (8000, 256, 24, 20.0, None),
    (16000, 512, 40, 100.0, 7000.0), (44100, 2048, 128, 0.0, None),
])
def test_mel_basis_and_window_equal_librosa(sr, n_fft, n_mels, fmin, fmax):
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    np.testing.assert_array_equal(features._mel_basis(sr, n_fft, n_mels, fmin, fmax), ref)
    win = librosa.util.pad_center(librosa.filters.get_window("hann", n_fft * 3 // 4, fftbins=True), size=n_fft)
    np.testing.assert_allclose(features._window(n_fft, n_fft * 3 // 4), win, rtol=0, atol=1e-7)


def test_old_model_dict_loads_with_defaults():
    old = {k: v for k, v in FeatureConfig().to_dict().items()
           if k not in ("cmvn_window", "vad", "vad_threshold_db", "sdc", "sdc_n", "sdc_d", "sdc_p", "sdc_k")}
    cfg = FeatureConfig.from_dict(old)
    assert cfg == FeatureConfig() and not cfg.vad and not cfg.sdc and cfg.n_features == 60


@pytest.mark.parametrize("kwargs, match", [
    ({"cmvn_window": 0}, r"cmvn_window must be a finite number > 0, got 0"),
    ({"vad": "yes"}, r"vad must be a bool, got 'yes'"),
    ({"vad_threshold_db": -3}, r"vad_threshold_db must be a finite number > 0, got -3"),
    ({"sdc": 1}, r"sdc must be a bool, got 1"),
    ({"sdc_p": 0}, r"sdc_p must be an int >= 1, got 0"),
    ({"sdc": True, "n_mfcc": 5}, r"sdc_n must be <= n_mfcc \(5\).*got 7"),
])
def test_new_field_validation(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        FeatureConfig(**kwargs)


def naive_sliding_cmvn(X, window):
    """Reference: a loop over frames, Kaldi-style window shifted inwards at the edges."""
    n = X.shape[0]
    out = np.empty_like(X, dtype=np.float64)
    for t in range(n):
        a = min(max(t - window // 2, 0), max(n - window, 0))
        w = X[a:a + window].astype(np.float64)
        std = w.std(axis=0)
        out[t] = (X[t] - w.mean(axis=0)) / np.where(std > 1e-3, std, 1.0)
    return out


@pytest.mark.parametrize("block", [8192, 7])  # 7: many row blocks, deferred write-back
@pytest.mark.parametrize("n, window", [(1000, 101), (500, 300), (257, 256), (40, 300), (333, 10)])
def test_sliding_cmvn_matches_loop(rng, n, window, block, monkeypatch):
    monkeypatch.setattr(features, "_CMVN_BLOCK_FRAMES", block)
    X = (rng.standard_normal((n, 6)) * [1, 2, 3, 0, 5, 6] + np.linspace(0, 50, n)[:, None]).astype(np.float32)
    ref = naive_sliding_cmvn(X, window)
    got = features._cmvn(X.copy(), "sliding", window)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    centre = got[n // 2 - 2:n // 2 + 3]  # frames whose window is centred: mean ~0 there
    assert np.isfinite(centre).all()


def test_sliding_cmvn_in_extract(speechlike):
    cfg = FeatureConfig(cmvn="sliding", cmvn_window=0.5)
    assert cfg.cmvn_window_frames == 50
    raw = extract(speechlike, FeatureConfig(cmvn="none"))
    np.testing.assert_allclose(extract(speechlike, cfg), naive_sliding_cmvn(raw, 50), rtol=1e-3, atol=2e-3)
    # a window longer than the recording is per-recording CMVN
    np.testing.assert_allclose(extract(speechlike, FeatureConfig(cmvn="sliding", cmvn_window=60.0)),
                               extract(speechlike, FeatureConfig()), rtol=1e-5, atol=1e-5)


def test_sdc_hand_built_example():
    # 6 frames, 2 cepstra; N-d-P-k = 2-1-2-2: blocks c[t+1]-c[t-1] and c[t+3]-c[t+1], clamped.
    c = np.array([[0, 0], [1, 10], [4, 20], [9, 30], [16, 40], [25, 50]], dtype=np.float32)
    cfg = FeatureConfig(n_mfcc=2, n_mels=4, deltas=0, sdc=True, sdc_n=2, sdc_d=1, sdc_p=2, sdc_k=2, cmvn="none")
    out = np.empty((6, 4), np.float32)
    features._sdc_into(c, out, cfg)
    expected = np.array([
        # t: [c(t+1)-c(t-1)]        [c(t+3)-c(t+1)]
        [1 - 0, 10 - 0, 9 - 1, 30 - 10],      # t=0: c1-c0 (t-1 clamped to 0), c3-c1
        [4 - 0, 20 - 0, 16 - 4, 40 - 20],     # t=1: c2-c0, c4-c2
        [9 - 1, 30 - 10, 25 - 9, 50 - 30],    # t=2: c3-c1, c5-c3
        [16 - 4, 40 - 20, 25 - 16, 50 - 40],  # t=3: c4-c2, c5(clamped 6)-c4
        [25 - 9, 50 - 30, 25 - 25, 50 - 50],  # t=4: c5-c3, c5-c5
        [25 - 16, 50 - 40, 0, 0],             # t=5: c5(clamped)-c4, c5-c5
    ], dtype=np.float32)
    np.testing.assert_array_equal(out, expected)


def test_sdc_columns_in_extract(speechlike):
    cfg = FeatureConfig(n_mfcc=7, deltas=1, sdc=True, cmvn="none")
    X = extract(speechlike, cfg)
    assert X.shape[1] == cfg.n_features == 7 + 7 + 49
    c = X[:, :7]
    n = c.shape[0]
    for i, t in [(0, 50), (3, 10), (6, n - 2)]:  # block i of frame t, by hand
        lo, hi = min(max(t + 3 * i - 1, 0), n - 1), min(t + 3 * i + 1, n - 1)
        np.testing.assert_allclose(X[t, 14 + 7 * i:21 + 7 * i], c[hi] - c[lo], rtol=1e-6, atol=1e-5)


def voiced_silence_voiced(sr=16000):
    loud = synth_tone("low", seconds=0.6, sr=sr, seed=5)
    quiet = (1e-5 * np.random.default_rng(1).standard_normal(int(0.5 * sr))).astype(np.float32)
    return np.concatenate([loud, quiet, loud])


def test_vad_drops_silence_keeps_voice():
    y = voiced_silence_voiced()
    cfg = FeatureConfig(vad=True)
    X, frames = extract(y, cfg, return_frames=True)
    n_all = 1 + y.size // 160
    t = frames * 160 / 16000  # frame centres, seconds
    assert X.shape[0] == frames.size < n_all
    silent = (t > 0.62) & (t < 1.08)  # well inside the quiet stretch
    assert not np.any(silent)  # nothing of the silence survives
    voiced = np.r_[np.arange(0, 58), np.arange(112, 170)]  # frames well inside the tones
    assert np.isin(voiced, frames).all()
    # the kept frames are the same rows as without VAD (before CMVN)
    Xall = extract(y, FeatureConfig(cmvn="none"))
    np.testing.assert_array_equal(extract(y, FeatureConfig(vad=True, cmvn="none")), Xall[frames])
    assert not FeatureConfig().vad and extract(y, FeatureConfig()).shape[0] == n_all


def test_vad_threshold_and_never_empty(rng):
    y = voiced_silence_voiced()
    # a threshold above the silence's level (about 90 dB down) keeps everything
    assert extract(y, FeatureConfig(vad=True, vad_threshold_db=200)).shape[0] == 1 + y.size // 160
    silence = np.zeros(8000, np.float32)
    assert extract(silence, FeatureConfig(vad=True)).shape[0] == 51  # all equal: all kept
    click = np.zeros(16000, np.float32)
    click[8000] = 1.0
    X, frames = extract(click, FeatureConfig(vad=True, vad_threshold_db=1), return_frames=True)
    assert X.shape[0] >= features._VAD_MIN_FRAMES and np.isfinite(X).all()
    assert {49, 50, 51} <= set(frames.tolist())  # the frames whose window holds the click


@pytest.mark.parametrize("cfg", [
    FeatureConfig(), FeatureConfig.preset("language"), FeatureConfig.preset("music"),
    FeatureConfig(cmvn="sliding", cmvn_window=1.0, deltas=1),
], ids=["default", "language", "music", "sliding"])
def test_blockwise_file_equals_whole_file(write_wav, monkeypatch, cfg):
    # 7 s of stereo at 44.1 kHz, resampled; decoded in 1-s blocks -> 7+ blocks, FFT blocks of 64 frames
    sr = 44100
    left = np.concatenate([synth_tone(k, seconds=1.0, sr=sr, seed=i) for i, k in
                           enumerate(["low", "noise", "high", "low", "high", "noise", "low"])])
    y = np.stack([left, np.roll(left, 100) * 0.5], axis=1)
    y[sr:sr + sr // 2] *= 1e-4  # a quiet stretch for the VAD and the 80 dB floor
    path = write_wav("long.wav", y, sr=sr)
    from audiogmm import audio

    monkeypatch.setattr(features, "_BLOCK_FRAMES", 64)
    stream = audio.stream
    monkeypatch.setattr(audio, "stream", lambda p, *, sr: stream(p, sr=sr, block_seconds=1.0))
    X, frames = extract_file(path, cfg, return_frames=True)
    Xw, frames_w = extract(audio.load(path, sr=cfg.sample_rate), cfg, return_frames=True)
    np.testing.assert_array_equal(X, Xw)
    np.testing.assert_array_equal(frames, frames_w)


# -- bounds (hostile model files and CLI options fail fast) ---------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sample_rate": 10**9}, r"sample_rate must be <= 384000 \(the documented range of FeatureConfig.sample_rate\), got 1000000000"),
        ({"sample_rate": 384001}, r"sample_rate must be <= 384000"),
        ({"win_ms": 1e7}, r"win_ms must be <= 1000.0 .*, got 10000000.0"),
        ({"win_ms": 1e5}, r"win_ms must be <= 1000.0"),
        ({"hop_ms": 1001}, r"hop_ms must be <= 1000.0"),
        ({"sample_rate": 48000, "win_ms": 1000}, r"win_ms must give a window of <= 16384 samples at sample_rate=48000 \(<= 341.333 ms\)"),
        ({"n_mels": 10**6}, r"n_mels must be <= 512 .*, got 1000000"),
        ({"n_mels": 513}, r"n_mels must be <= 512"),
        ({"n_mfcc": 10**6}, r"n_mfcc must be <= n_mels \(40\), got 1000000"),
        ({"delta_width": 101}, r"delta_width must be <= 99"),
        ({"cmvn_window": 1e9}, r"cmvn_window must be <= 3600.0"),
        ({"vad_threshold_db": 1e6}, r"vad_threshold_db must be <= 200.0"),
        ({"vad_threshold_db": float("inf")}, r"vad_threshold_db must be a finite number > 0"),
        ({"sdc": True, "sdc_n": 10**9}, r"sdc_n must be <= 512"),
        ({"sdc_k": 10**6}, r"sdc_k must be <= 32"),
        ({"sdc_d": 51}, r"sdc_d must be <= 50"),
        ({"sdc_p": 10**4}, r"sdc_p must be <= 50"),
        ({"sample_rate": 10**5000}, r"sample_rate must be <= 384000 .*, got an int of about 5001 digits"),
        ({"n_mfcc": -10**5000}, r"n_mfcc must be an int >= 1, got an int of about 5001 digits"),
        ({"fmin": "x" * 1000}, r"fmin must be a finite number >= 0, got 'xxxx.*\.\.\.$"),
    ],
)
def test_config_upper_bounds(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        FeatureConfig(**kwargs)
    with pytest.raises(ParameterError, match=match):  # a model file's config meets the same checks
        FeatureConfig.from_dict({**FeatureConfig().to_dict(), **kwargs})


def test_config_bounds_admit_their_limits():
    assert FeatureConfig(sample_rate=384000, win_ms=40).n_fft == 16384
    assert FeatureConfig(win_ms=1000, hop_ms=1000, n_mels=512, n_mfcc=512).win_length == 16000
    cfg = FeatureConfig(delta_width=99, cmvn_window=3600, vad_threshold_db=200, sdc=True, sdc_d=50, sdc_p=50,
                        sdc_k=32)
    assert cfg.n_features == 60 + 7 * 32


def test_excerpts_shorter_than_one_window_are_refused(tmp_path):
    """`--excerpt-seconds 1e-09` used to end in 'contains no audio samples'."""
    import soundfile as sf

    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(16000 * 3, np.float32), 16000)
    with pytest.raises(ParameterError, match=r"excerpt seconds must be >= one analysis window \(win_ms=25 ms\), got 1e-09"):
        extract_excerpts(path, FeatureConfig(), n_excerpts=4, seconds=1e-9)
    with pytest.raises(ParameterError, match=r"excerpt seconds must be >= 0.025"):
        audio.load_excerpts(path, sr=16000, n_excerpts=4, seconds=0.01)
    assert extract_excerpts(path, FeatureConfig(), n_excerpts=4, seconds=0.025).shape == (4 * 3, 60)
