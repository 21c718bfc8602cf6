"""Hostile audio files: each is refused with an AudioLoadError naming it, or decoded; never a
traceback, a huge allocation or NaN features.

The files are built here, in tmp_path: damaged headers (sample rate, channel count, a FLAC
claiming 4.8e9 samples), non-finite float samples, undecodable bytes, file names that are
not UTF-8. The pipeline skips a file that raises AudioLoadError and names it, so each case
asserts the error, the path it carries and a reason naming the offending value.
"""

import os
import struct

import numpy as np
import pytest
import soundfile as sf

from audiogmm import audio
from audiogmm.exceptions import AudioLoadError
from audiogmm.features import FeatureConfig, extract_excerpts, extract_file


def _tone(seconds=1.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _wav_bytes(tmp_path, sr=16000, channels=1):
    path = tmp_path / "good.wav"
    y = _tone(sr=sr)
    sf.write(path, np.stack([y] * channels, axis=1) if channels > 1 else y, sr, subtype="PCM_16")
    return bytearray(path.read_bytes())


def _patched_wav(tmp_path, name, *, rate=None, channels=None):
    """A PCM WAV whose fmt chunk claims another sample rate and/or channel count."""
    b = _wav_bytes(tmp_path)
    if rate is not None:
        b[24:28] = struct.pack("<I", rate)
        b[28:32] = struct.pack("<I", max(1, rate * 2))  # byte rate, consistent with it
    if channels is not None:
        b[22:24] = struct.pack("<H", channels)
    path = tmp_path / name
    path.write_bytes(bytes(b))
    return path


def _patched_flac(tmp_path, name, *, total=None, rate=None):
    """A FLAC whose STREAMINFO claims ``total`` samples and/or sample rate ``rate``."""
    good = tmp_path / "good.flac"
    sf.write(good, _tone(), 16000)
    b = bytearray(good.read_bytes())
    v = int.from_bytes(b[18:26], "big")  # rate (20 bits), channels-1 (3), bps-1 (5), total (36)
    if total is not None:
        v = (v & ~((1 << 36) - 1)) | total
    if rate is not None:
        v = (v & ((1 << 44) - 1)) | (rate << 44)
    b[18:26] = v.to_bytes(8, "big")
    path = tmp_path / name
    path.write_bytes(bytes(b))
    return path


ENTRY_POINTS = {
    "load": lambda p: audio.load(p, sr=16000),
    "stream": lambda p: list(audio.stream(p, sr=16000)),
    "duration": audio.duration,
    "excerpts": lambda p: audio.load_excerpts(p, sr=16000, n_excerpts=4, seconds=1.0),
    "extract_file": lambda p: extract_file(p, FeatureConfig()),
    "extract_excerpts": lambda p: extract_excerpts(p, FeatureConfig(), n_excerpts=4, seconds=1.0),
}


def _assert_refused(path, call, match):
    with pytest.raises(AudioLoadError, match=match) as info:
        ENTRY_POINTS[call](path)
    assert info.value.path == str(path) and str(path) in str(info.value)


# -- headers out of bounds: refused before any allocation --------------------------------


@pytest.mark.parametrize("call", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("rate", [1, 2, 999, 10_000_000])
def test_wav_with_absurd_sample_rate(tmp_path, call, rate):
    """A WAV header claiming 1 Hz used to end in std::bad_alloc (16,000x upsampling)."""
    path = _patched_wav(tmp_path, f"rate{rate}.wav", rate=rate)
    _assert_refused(path, call, f"sample rate {rate} Hz is outside the supported 1000-768000 Hz")


@pytest.mark.parametrize("call", sorted(ENTRY_POINTS))
def test_flac_claiming_4_8e9_samples(tmp_path, call):
    """83 hours at 16 kHz in a 30 KB file: refused from the header, nothing read."""
    path = _patched_flac(tmp_path, "huge.flac", total=4_800_000_000)
    _assert_refused(path, call, r"claims 4800000000 frames \(83\.3 hours at 16000 Hz\), more than the supported 24 hours")


@pytest.mark.parametrize("call", ["load", "duration"])
def test_flac_with_one_hertz_rate(tmp_path, call):
    path = _patched_flac(tmp_path, "onehz.flac", rate=1)
    _assert_refused(path, call, "sample rate 1 Hz is outside")


@pytest.mark.parametrize("channels", [0, 300, 1024, 60000])
def test_wav_with_absurd_channel_count(tmp_path, channels):
    """Counts libsndfile refuses itself (0, > 1024) and counts it accepts but we bound (300)."""
    path = _patched_wav(tmp_path, f"ch{channels}.wav", channels=channels)
    with pytest.raises(AudioLoadError) as info:
        audio.load(path, sr=16000)
    assert info.value.path == str(path)
    if 1 <= channels <= 1024:
        assert f"{channels} channels is outside the supported 1-256" in info.value.reason


def test_bounds_are_documented_constants():
    assert (audio.MIN_SAMPLE_RATE, audio.MAX_SAMPLE_RATE) == (1000, 768_000)
    assert audio.MAX_CHANNELS == 256 and audio.MAX_DURATION_SECONDS == 86400.0
    assert FeatureConfig().sample_rate >= audio.MIN_SAMPLE_RATE


def test_many_channels_within_bounds_are_read_in_small_blocks(tmp_path, monkeypatch):
    """64 channels: accepted, mixed to mono, each read at most _BLOCK_SAMPLES samples."""
    y = np.stack([_tone() * (k + 1) / 64 for k in range(64)], axis=1)
    path = tmp_path / "ambisonic.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    monkeypatch.setattr(audio, "_BLOCK_SAMPLES", 64 * 1000)
    reads = []
    real = audio._SoundFileDecoder.read
    monkeypatch.setattr(audio._SoundFileDecoder, "read", lambda self, n: reads.append(n) or real(self, n))
    out = audio.load(path, sr=16000)
    np.testing.assert_allclose(out, y.mean(axis=1), atol=1e-7)
    assert max(reads) == 1000


# -- non-finite samples -------------------------------------------------------------------


@pytest.mark.parametrize("call", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_wav_with_non_finite_samples(tmp_path, call, bad):
    y = np.concatenate([_tone(seconds=3.0)] * 2)
    y[y.size // 2 + 7] = bad  # inside every excerpt layout used above
    y[int(0.55 * 16000)] = bad
    y[int(2.55 * 16000)] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(path, y, 16000, subtype="DOUBLE")
    if call == "duration":  # the header is fine: the duration is known without decoding
        assert audio.duration(path) == pytest.approx(6.0)
    else:
        _assert_refused(path, call, "contains NaN or infinite samples")


# -- undecodable bytes -----------------------------------------------------------------------


@pytest.mark.parametrize("name,data", [
    ("text.mp3", b"this is not audio\n" * 50),
    ("random.wav", bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8))),
    ("riff_only.wav", b"RIFF\x24\x00\x00\x00WAVE"),
    ("zeros.flac", bytes(5000)),
    ("html.ogg", b"<html><body>404 Not Found</body></html>"),
])
def test_undecodable_bytes_are_named_with_both_decoders_reasons(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AudioLoadError) as info:
        extract_file(path, FeatureConfig())
    reason = info.value.reason
    assert info.value.path == str(path)
    assert "soundfile:" in reason and "audioread:" in reason and "possibly a pipe" not in reason


# -- file names that are not UTF-8 ---------------------------------------------------------


@pytest.mark.skipif(os.name != "posix" or os.fsencode("\udcff") != b"\xff",
                    reason="needs a POSIX file system with surrogateescape names")
def test_non_utf8_file_name_is_decoded_like_any_other(tmp_path):
    name = os.fsdecode(b"caf\xe9-\xff.wav")
    path = tmp_path / name
    sf.write(os.fsencode(path), _tone(), 16000)  # soundfile encodes str paths strictly
    good = tmp_path / "plain.wav"
    sf.write(good, _tone(), 16000)
    np.testing.assert_array_equal(extract_file(path, FeatureConfig()), extract_file(good, FeatureConfig()))
    assert audio.duration(path) == pytest.approx(1.0)
    shown = audio.display_path(path)
    shown.encode("utf-8")  # printable and JSON-safe: no lone surrogates left
    assert shown.endswith("caf\\xe9-\\xff.wav")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_named_like_audio_is_refused_without_blocking(tmp_path):
    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    _assert_refused(path, "extract_file", "is not a regular file")


def test_path_with_nul_character(tmp_path):
    path = str(tmp_path / "a\x00b.wav")
    with pytest.raises(AudioLoadError, match="holds a NUL character") as info:
        extract_file(path, FeatureConfig())
    assert info.value.path == path
