"""Tests for audiogmm.audio: decoding, mono mixing, resampling and load errors."""

import re

import numpy as np
import pytest
import soundfile as sf
from conftest import shared_data

from audiogmm import audio
from audiogmm.audio import AUDIO_EXTENSIONS, duration, is_audio_path, load
from audiogmm.exceptions import AudioLoadError, AudiogmmError, ParameterError


def sine(freq, *, seconds=1.0, sr=16000, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(y, sr):
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return np.fft.rfftfreq(y.size, 1 / sr)[np.argmax(spec)]


# -- extensions -------------------------------------------------------------------------


def test_audio_extensions_are_lowercase_suffixes():
    assert {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif",
            ".aiff", ".au", ".wma", ".webm"} <= AUDIO_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in AUDIO_EXTENSIONS)


@pytest.mark.parametrize(
    "name, expected",
    [("a.wav", True), ("dir/Song 01.FLAC", True), ("x.Mp3", True), ("clip.opus", True),
     ("notes.txt", False), ("wav", False), ("archive.wav.zip", False), ("._song.mp3", False)],
)
def test_is_audio_path(name, expected):
    assert is_audio_path(name) is expected


# -- loading ------------------------------------------------------------------------------


def test_load_native_rate_returns_samples_unchanged(write_wav):
    y = sine(440, sr=16000)
    path = write_wav("a.wav", y, sr=16000)
    out = load(path, sr=16000)
    assert out.dtype == np.float32 and out.ndim == 1
    np.testing.assert_allclose(out, sf.read(path, dtype="float32")[0])


@pytest.mark.parametrize("native_sr", [8000, 22050, 44100, 48000])
def test_load_resamples_length_and_frequency(write_wav, native_sr):
    path = write_wav("a.wav", sine(440, seconds=1.0, sr=native_sr), sr=native_sr)
    y = load(path, sr=16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size - 16000) <= 1
    assert abs(peak_hz(y, 16000) - 440) < 2
    assert 0.45 < np.max(np.abs(y[1000:-1000])) < 0.55  # amplitude kept


def test_load_mixes_stereo_to_mono(write_wav):
    left, right = sine(300, amp=0.4), sine(1200, amp=0.2)
    path = write_wav("st.flac", np.stack([left, right], axis=1))
    y = load(path, sr=16000)
    assert y.shape == left.shape
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-4)


def test_load_mixes_stereo_block_by_block(write_wav, monkeypatch):
    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 1000)  # many blocks, one partial
    left, right = sine(300, amp=0.4, seconds=0.3), sine(500, amp=0.3, seconds=0.3)
    path = write_wav("st.wav", np.stack([left, right], axis=1))
    y = load(path, sr=16000)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-4)


def test_load_stereo_resampled(write_wav):
    y2 = np.stack([sine(440, sr=44100), sine(440, sr=44100)], axis=1)
    path = write_wav("st.wav", y2, sr=44100)
    y = load(path, sr=16000)
    assert abs(y.size - 16000) <= 1 and abs(peak_hz(y, 16000) - 440) < 2


def test_load_mono_false_keeps_channels(write_wav):
    left, right = sine(300), sine(600)
    path = write_wav("st.wav", np.stack([left, right], axis=1))
    y = load(path, sr=16000, mono=False)
    assert y.shape == (2, left.size) and y.dtype == np.float32
    y1 = load(write_wav("m.wav", left), sr=16000, mono=False)
    assert y1.shape == (1, left.size)


def test_load_mp3(write_wav, tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    path = tmp_path / "a.mp3"
    sf.write(path, sine(440, seconds=1.0, sr=22050), 22050)
    y = load(path, sr=16000)
    assert y.dtype == np.float32 and abs(y.size - 16000) < 1200  # MP3 adds padding
    assert abs(peak_hz(y, 16000) - 440) < 3


def test_load_falls_back_to_audioread(write_wav, monkeypatch):
    pytest.importorskip("audioread")
    y0 = sine(440, sr=8000)
    path = write_wav("a.wav", y0, sr=8000)

    class Refuse:
        def __init__(self, path):
            raise RuntimeError("Format not recognised")

    monkeypatch.setattr(audio, "_SoundFileDecoder", Refuse)
    y = load(path, sr=8000)  # audioread's raw WAV reader needs no FFmpeg
    np.testing.assert_allclose(y, y0, atol=1e-4)


def test_load_keeps_no_raw_exception_when_everything_fails(tmp_path, monkeypatch):
    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(range(256)) * 4)
    with pytest.raises(AudioLoadError) as info:
        load(path, sr=16000)
    assert info.value.path == str(path)
    assert "soundfile" in info.value.reason and "FFmpeg" in info.value.reason


@pytest.mark.parametrize("sr", [0, -1, 16000.0, "16000", True, None])
def test_load_rejects_bad_sr(write_wav, sr):
    path = write_wav("a.wav", sine(440))
    with pytest.raises(ParameterError, match="sr must be an int >= 1"):
        load(path, sr=sr)


# -- load errors -------------------------------------------------------------------------


def assert_load_error(path, match):
    with pytest.raises(AudioLoadError, match=match) as info:
        load(path, sr=16000)
    err = info.value
    assert isinstance(err, AudiogmmError)
    assert err.path == str(path) and str(path) in str(err)
    return err


def test_missing_file(tmp_path):
    assert_load_error(tmp_path / "nope.wav", "not found")


def test_directory(tmp_path):
    d = tmp_path / "folder.wav"
    d.mkdir()
    assert_load_error(d, "is a directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert_load_error(path, re.escape("empty (0 bytes)"))


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    err = assert_load_error(path, "cannot decode")
    assert err.__cause__ is not None  # the original exception is chained, not lost


def test_truncated_header(tmp_path, write_wav):
    good = write_wav("good.wav", sine(440))
    path = tmp_path / "trunc.wav"
    path.write_bytes(good.read_bytes()[:30])
    assert_load_error(path, "cannot decode")


def test_zero_samples(tmp_path):
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    assert_load_error(path, "no audio samples")


def test_non_finite_samples(tmp_path):
    path = tmp_path / "nan.wav"
    y = sine(440)
    y[100] = np.nan
    sf.write(path, y, 16000, subtype="FLOAT")
    assert_load_error(path, "NaN or infinite")


# -- duration ----------------------------------------------------------------------------


def test_duration_from_header(write_wav):
    path = write_wav("a.wav", sine(440, seconds=1.25, sr=8000), sr=8000)
    assert duration(path) == pytest.approx(1.25)


def test_duration_errors(tmp_path):
    with pytest.raises(AudioLoadError, match="not found"):
        duration(tmp_path / "nope.wav")
    path = tmp_path / "bad.flac"
    path.write_bytes(b"not audio at all" * 100)
    with pytest.raises(AudioLoadError, match="cannot read the duration") as info:
        duration(path)
    assert info.value.path == str(path)


# -- real data (skips when ../shared/data is absent) -------------------------------------


def test_real_speaker_and_language_files():
    wav = next(iter(sorted(shared_data("speaker").glob("*/*.wav"))))
    ogg = next(iter(sorted(shared_data("language").glob("*/*.ogg"))))
    for path in (wav, ogg):
        y = load(path, sr=16000)
        assert y.dtype == np.float32 and y.ndim == 1 and np.isfinite(y).all()
        assert abs(y.size / 16000 - duration(path)) < 0.01


# -- one decoder path --------------------------------------------------------------------


def _refuse_soundfile(monkeypatch):
    class Refuse:
        def __init__(self, path):
            raise RuntimeError("Format not recognised")

    monkeypatch.setattr(audio, "_SoundFileDecoder", Refuse)


def test_audioread_path_equals_librosa_load(tmp_path, monkeypatch, rng):
    """The fallback (now audioread directly) gives librosa.load's samples bit for bit."""
    librosa = pytest.importorskip("librosa")
    y0 = (rng.standard_normal((8000 * 3, 2)) * 0.2).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, y0, 8000, subtype="PCM_16")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, sr_ref = librosa.load(str(path), sr=None, mono=True, dtype=np.float32)
        ref_stereo, _ = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
        ref_part, _ = librosa.load(str(path), sr=None, mono=True, offset=1.25, duration=0.5, dtype=np.float32)
    _refuse_soundfile(monkeypatch)
    assert sr_ref == 8000
    np.testing.assert_array_equal(load(path, sr=8000), ref)
    np.testing.assert_array_equal(load(path, sr=8000, mono=False), ref_stereo)
    np.testing.assert_array_equal(np.concatenate(list(audio.stream(path, sr=8000))), ref)
    assert duration(path) == pytest.approx(3.0)
    (part,) = audio.load_excerpts(path, sr=8000, n_excerpts=1, seconds=0.5)
    np.testing.assert_array_equal(part, ref_part)


def test_every_caller_uses_the_one_decoder_choice(write_wav, monkeypatch):
    """load, stream, duration and load_excerpts all go through audio._open."""
    path = write_wav("a.wav", sine(440, seconds=2.0))
    calls = []
    real = audio._open

    def spy(p, what="decode audio"):
        calls.append(what)
        return real(p, what)

    monkeypatch.setattr(audio, "_open", spy)
    load(path, sr=16000)
    list(audio.stream(path, sr=16000))
    duration(path)
    audio.load_excerpts(path, sr=16000, n_excerpts=2, seconds=0.5)
    assert calls == ["decode audio", "decode audio", "read the duration", "decode audio"]


def _open_soundfiles():
    import gc

    gc.collect()
    return [o for o in gc.get_objects() if type(o) is sf.SoundFile and not o.closed]


def test_load_excerpts_closes_the_file_when_a_check_raises(tmp_path, rng):
    """Regression: a NaN excerpt used to leave its SoundFile open (audio.py:461)."""
    y = (rng.standard_normal(16000 * 8) * 0.1).astype(np.float32)
    y[16000 * 5 + 100] = np.nan  # inside the second of two 1 s excerpts
    path = tmp_path / "nan_late.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    before = len(_open_soundfiles())
    with pytest.raises(AudioLoadError, match="NaN or infinite") as info:
        audio.load_excerpts(path, sr=16000, n_excerpts=2, seconds=2.0)
    # checked while the error (and so its traceback's frames) is alive: the old code's open
    # SoundFile was referenced from there, and closed only when garbage-collected
    assert info.value.path == str(path) and len(_open_soundfiles()) == before


@pytest.mark.parametrize("call", ["load", "stream", "excerpts"])
def test_no_file_stays_open_after_an_error(tmp_path, rng, call):
    y = (rng.standard_normal(16000 * 8) * 0.1).astype(np.float32)
    y[16000 * 4] = np.inf
    path = tmp_path / "inf.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    before = len(_open_soundfiles())
    with pytest.raises(AudioLoadError, match="NaN or infinite") as info:
        if call == "load":
            load(path, sr=16000)
        elif call == "stream":
            list(audio.stream(path, sr=16000, block_seconds=1.0))
        else:
            audio.load_excerpts(path, sr=16000, n_excerpts=1, seconds=8.0 - 1e-3)
    assert info.value.path == str(path) and len(_open_soundfiles()) == before


def test_truncated_wav_shows_no_resource_warning(tmp_path, write_wav):
    """audioread's raw reader abandons its open file when wave raises EOFError: not shown."""
    import gc
    import warnings

    good = write_wav("good.wav", sine(440))
    path = tmp_path / "trunc.wav"
    path.write_bytes(good.read_bytes()[:30])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(AudioLoadError, match="cannot decode"):
            load(path, sr=16000)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_unknown_format_reason_is_not_possibly_a_pipe(tmp_path):
    """libsndfile says 'File does not exist ... (possibly a pipe?)' for a file it cannot read."""
    path = tmp_path / "notes.mp3"
    path.write_bytes(b"hello, this is text and not audio\n" * 10)
    with pytest.raises(AudioLoadError) as info:
        duration(path)
    reason = info.value.reason
    assert "does not exist" not in reason and "pipe" not in reason
    assert "soundfile: not a format soundfile can read" in reason
    assert "audioread:" in reason and str(path) not in reason  # the path is said once, by the error
