"""Decoding audio files to mono float32 samples at a chosen sample rate.

This module is the bottom stage of audiogmm: *audio file -> samples*. Everything above
it (features, training, prediction) sees only ``y``, a 1-D ``float32`` array at
``sr`` samples per second, and :class:`~audiogmm.exceptions.AudioLoadError` when a
file cannot be used.

Decoding
--------
1. `soundfile <https://python-soundfile.readthedocs.io>`_ (libsndfile) is tried
   first. It reads WAV, FLAC, Ogg Vorbis, Opus, AIFF, AU, CAF, W64, RF64 and, with
   libsndfile >= 1.1, MP3. It is the fast path (about 13,000 audio-seconds per
   CPU-second to decode on the reference machine).
2. If soundfile cannot open the file, librosa's audioread fallback is tried
   (``librosa.load``), which needs FFmpeg, GStreamer or Core Audio on the system for
   formats such as ``.m4a``/``.aac``/``.wma``/``.webm``.
3. Multi-channel audio is mixed to mono (the mean of the channels), block by block,
   so a long stereo file never holds its float32 stereo copy in memory.
4. The signal is resampled once, with soxr (``librosa.resample(...,
   res_type="soxr_hq")``), and only when the native rate differs from ``sr``.

Every failure is reported as ``AudioLoadError(path, reason)``; no raw soundfile or
audioread exception escapes. The ``reason`` says what went wrong and, where possible,
what to do about it.

Memory
------
:func:`load` returns the whole recording: 4 bytes per sample at the native rate (mono mix)
plus 4 bytes per sample at ``sr`` after resampling, so a 1-hour 44.1 kHz file needs about
635 MB while being resampled and 230 MB once at 16 kHz. :func:`stream` yields the same
samples in blocks (soxr's streaming resampler), holding a few MB whatever the length;
feature extraction uses it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from audiogmm.exceptions import AudioLoadError, ParameterError

__all__ = ["AUDIO_EXTENSIONS", "is_audio_path", "load", "stream", "duration", "load_excerpts", "excerpt_starts"]

#: Lower-case file-name suffixes (with the dot) that :func:`is_audio_path` accepts.
#: The first group decodes with soundfile; the second needs audioread + FFmpeg.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        # libsndfile (soundfile)
        ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",
        ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64",
        # audioread / FFmpeg
        ".m4a", ".mp4", ".aac", ".wma", ".webm", ".mka", ".mp2", ".ac3", ".amr",
    }
)

_BLOCK_FRAMES = 1 << 18  # frames per block when mixing multi-channel audio to mono

_FALLBACK_HINT = (
    "the file may be damaged or in a format soundfile cannot read; "
    "convert it to WAV or FLAC, or install FFmpeg so audioread can decode it"
)


def is_audio_path(path) -> bool:
    """Tell whether a path names an audio file, judging by its suffix alone.

    The file is not opened. macOS "AppleDouble" side files (names starting with
    ``._``, e.g. ``._song.mp3`` copied from a Mac volume) are not audio and return
    ``False``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    bool
        ``True`` if the lower-cased suffix is in :data:`AUDIO_EXTENSIONS`.

    Examples
    --------
    >>> is_audio_path("songs/Track 01.FLAC")
    True
    >>> is_audio_path("notes.txt"), is_audio_path("._track.mp3")
    (False, False)
    """
    p = Path(path)
    return p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith("._")


def _check_sr(sr):
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr < 1:
        raise ParameterError(f"sr must be an int >= 1 (samples per second), got {sr!r}")
    return int(sr)


def _check_file(path) -> Path:
    """Raise AudioLoadError unless ``path`` is an existing, non-empty, regular file."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AudioLoadError(path, "file not found; check the path") from None
    except PermissionError:
        raise AudioLoadError(path, "permission denied; check the file's permissions") from None
    except OSError as exc:
        raise AudioLoadError(path, f"cannot access the file ({exc.strerror or exc})") from None
    if p.is_dir():
        raise AudioLoadError(path, "is a directory, not an audio file; pass a file")
    if st.st_size == 0:
        raise AudioLoadError(path, "file is empty (0 bytes); re-copy or re-export it")
    if not os.access(p, os.R_OK):
        raise AudioLoadError(path, "permission denied; check the file's permissions")
    return p


def _read_soundfile(path: Path, mono: bool):
    """Decode with soundfile. Returns (y, sr) with y (n,) or (channels, n) float32."""
    with sf.SoundFile(str(path)) as f:
        sr_native = f.samplerate
        if f.channels == 1:
            y = f.read(dtype="float32")
            return (y if mono else y[np.newaxis, :]), sr_native
        if not mono:
            return np.ascontiguousarray(f.read(dtype="float32", always_2d=True).T), sr_native
        blocks = []
        while True:
            block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            blocks.append(block.mean(axis=1, dtype=np.float32))
    y = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    return y, sr_native


def _read_fallback(path: Path, mono: bool):
    """Decode with librosa's audioread fallback. Returns (y, sr)."""
    import librosa

    with warnings.catch_warnings():
        # librosa warns that soundfile failed and that audioread is deprecated.
        warnings.simplefilter("ignore")
        y, sr_native = librosa.load(str(path), sr=None, mono=mono, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if not mono and y.ndim == 1:
        y = y[np.newaxis, :]
    return y, int(sr_native)


def _reason(exc):
    """An exception's message, or its type's name when the message is empty."""
    return str(exc).strip() or type(exc).__name__


def _both_failed(path, what, sf_reason, ar_exc):
    """The AudioLoadError for a file neither soundfile nor audioread could read."""
    return AudioLoadError(
        path, f"cannot {what} (soundfile: {sf_reason}; audioread: {_reason(ar_exc)}); {_FALLBACK_HINT}")


def _decode(path: Path, mono: bool):
    try:
        return _read_soundfile(path, mono)
    except MemoryError:
        raise
    except Exception as sf_exc:  # noqa: BLE001 - libsndfile raises several types
        sf_reason = _reason(sf_exc)
    try:
        return _read_fallback(path, mono)
    except MemoryError:
        raise
    except Exception as ar_exc:  # noqa: BLE001 - audioread backends raise anything
        raise _both_failed(path, "decode audio", sf_reason, ar_exc) from ar_exc


def _resample(y, orig_sr: int, target_sr: int):
    import librosa

    y = librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


def load(path, *, sr, mono=True) -> np.ndarray:
    """Decode an audio file to float32 samples at ``sr``.

    Parameters
    ----------
    path : str or path-like
        The recording.
    sr : int
        Target sample rate in Hz. The audio is resampled once with soxr (high
        quality) when the file's native rate differs; otherwise it is returned as
        decoded.
    mono : bool, default True
        Mix all channels to one (their mean). With ``False`` the result is
        ``(n_channels, n_samples)``, librosa's layout.

    Returns
    -------
    y : np.ndarray, float32, shape (n_samples,) or (n_channels, n_samples)
        Samples, nominally in [-1, 1].

    Raises
    ------
    AudioLoadError
        The file is missing, is a directory, is empty, cannot be decoded by soundfile
        nor audioread, holds zero samples, or holds NaN/infinite samples.
    ParameterError
        ``sr`` is not a positive int.

    Examples
    --------
    >>> y = load("speech.flac", sr=16000)  # doctest: +SKIP
    >>> y.dtype, y.ndim  # doctest: +SKIP
    (dtype('float32'), 1)
    """
    sr = _check_sr(sr)
    if not isinstance(mono, (bool, np.bool_)):
        raise ParameterError(f"mono must be a bool, got {mono!r}")
    p = _check_file(path)
    y, sr_native = _decode(p, bool(mono))
    if y.shape[-1] == 0:
        raise AudioLoadError(path, "contains no audio samples; re-export the recording")
    if not np.isfinite(y).all():
        raise AudioLoadError(
            path, "contains NaN or infinite samples; re-export it as 16-bit or 24-bit PCM"
        )
    if sr_native != sr:
        y = _resample(y, int(sr_native), sr)
        if y.shape[-1] == 0:
            raise AudioLoadError(
                path, f"too short to resample from {sr_native} Hz to {sr} Hz (no samples left)"
            )
    return y


_STREAM_HOLD = 64  # output samples held back until the end, so the total can be fixed exactly


def _resampled_length(n_in: int, orig_sr: int, target_sr: int) -> int:
    """``ceil(n_in * target_sr / orig_sr)``: the length ``librosa.resample`` returns."""
    return -(-n_in * target_sr // orig_sr)


def _native_blocks(path: Path, block_frames: int):
    """Yield ``(sr_native, mono float32 block)`` pairs; the decoder stays open meanwhile."""
    try:
        f = sf.SoundFile(str(path))
    except MemoryError:
        raise
    except Exception as sf_exc:  # noqa: BLE001 - not for libsndfile: one whole decode
        sf_reason = _reason(sf_exc)
        try:
            y, sr_native = _read_fallback(path, True)
        except MemoryError:
            raise
        except Exception as ar_exc:  # noqa: BLE001
            raise _both_failed(path, "decode audio", sf_reason, ar_exc) from ar_exc
        yield sr_native, y
        return
    with f:
        sr_native = f.samplerate
        while True:
            try:
                block = f.read(block_frames, dtype="float32", always_2d=True)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - a damaged stream part-way through
                raise AudioLoadError(
                    path, f"cannot decode audio ({str(exc).strip() or type(exc).__name__}); "
                    f"{_FALLBACK_HINT}"
                ) from exc
            if block.shape[0] == 0:
                return
            y = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
            yield sr_native, np.ascontiguousarray(y)


def stream(path, *, sr, block_seconds=10.0):
    """Decode an audio file block by block: mono float32 samples at ``sr``.

    The concatenation of the blocks equals ``load(path, sr=sr)`` exactly: soxr's streaming
    resampler (``soxr.ResampleStream``, quality ``"HQ"``) gives the same samples as its
    one-shot ``soxr.resample`` that ``librosa.resample(res_type="soxr_hq")`` calls, and the
    total is padded or trimmed to ``ceil(n * sr / sr_native)`` as librosa does. Memory is a
    few blocks whatever the file's length. Files soundfile cannot open (audioread fallback)
    are decoded whole and yielded as one block.

    Parameters
    ----------
    path : str or path-like
    sr : int
        Target sample rate in Hz.
    block_seconds : float, default 10.0
        Native-rate audio decoded per step.

    Yields
    ------
    y : np.ndarray, float32, shape (n,)
        Consecutive pieces of the recording (some may be empty).

    Raises
    ------
    AudioLoadError
        As :func:`load`: missing, empty, undecodable, no samples, NaN/infinite samples.
    ParameterError
        ``sr`` is not a positive int, or ``block_seconds`` is not positive.

    Examples
    --------
    >>> n = sum(b.size for b in stream("talk.flac", sr=16000))  # doctest: +SKIP
    """
    sr = _check_sr(sr)
    if isinstance(block_seconds, bool) or not isinstance(block_seconds, (int, float)) or not block_seconds > 0:
        raise ParameterError(f"block_seconds must be a number > 0, got {block_seconds!r}")
    p = _check_file(path)
    return _stream(p, path, sr, float(block_seconds))


def _stream(p, path, sr, block_seconds):
    import soxr

    n_in = n_out = 0
    resampler = held = None
    for sr_native, y in _native_blocks(p, max(1024, int(block_seconds * 48000))):
        if not np.isfinite(y).all():
            raise AudioLoadError(
                path, "contains NaN or infinite samples; re-export it as 16-bit or 24-bit PCM"
            )
        n_in += y.size
        if sr_native == sr:
            yield y
            continue
        if resampler is None:
            resampler = soxr.ResampleStream(sr_native, sr, 1, dtype="float32", quality="HQ")
            held = np.zeros(0, dtype=np.float32)
        out = np.concatenate((held, resampler.resample_chunk(y, last=False)))
        cut = max(0, out.size - _STREAM_HOLD)
        held = out[cut:]
        if cut:
            n_out += cut
            yield out[:cut]
    if n_in == 0:
        raise AudioLoadError(path, "contains no audio samples; re-export the recording")
    if resampler is None:
        return
    tail = np.concatenate((held, resampler.resample_chunk(np.zeros(0, np.float32), last=True)))
    total = _resampled_length(n_in, sr_native, sr)
    if total == 0:
        raise AudioLoadError(
            path, f"too short to resample from {sr_native} Hz to {sr} Hz (no samples left)"
        )
    want = total - n_out
    if want < 0:  # cannot happen: soxr's delay is far longer than _STREAM_HOLD
        raise AudioLoadError(path, "resampler produced more samples than expected")
    if tail.size >= want:
        yield np.ascontiguousarray(tail[:want])
    else:
        yield np.concatenate((tail, np.zeros(want - tail.size, np.float32)))


def duration(path) -> float:
    """The length of a recording in seconds, read from the header when possible.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    float
        Duration in seconds. For formats soundfile cannot open, audioread's
        estimate is used (it may decode the file).

    Raises
    ------
    AudioLoadError
        The file is missing, a directory, empty, or of an unreadable format.

    Examples
    --------
    >>> duration("speech.wav")  # doctest: +SKIP
    1.5
    """
    p = _check_file(path)
    try:
        info = sf.info(str(p))
        if info.samplerate > 0:
            return float(info.frames) / float(info.samplerate)
        sf_reason = f"invalid sample rate {info.samplerate}"
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        sf_reason = _reason(exc)
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(librosa.get_duration(path=str(p)))
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _both_failed(path, "read the duration", sf_reason, exc) from exc


def excerpt_starts(total_seconds, n_excerpts, seconds):
    """Start times (s) of ``n_excerpts`` excerpts of ``seconds``, one centred in each equal part.

    Returns an empty list when the recording is not longer than ``n_excerpts * seconds``
    (it is then used whole).
    """
    if n_excerpts < 1 or total_seconds <= n_excerpts * seconds:
        return []
    part = total_seconds / n_excerpts
    return [max(0.0, (k + 0.5) * part - seconds / 2) for k in range(n_excerpts)]


def load_excerpts(path, *, sr, n_excerpts, seconds):
    """Decode ``n_excerpts`` excerpts of ``seconds`` spread evenly over a long recording.

    Only the excerpts are decoded (soundfile seeks to each), so a 10-minute track costs the
    same as ``n_excerpts * seconds`` of audio. The recording is divided into ``n_excerpts``
    equal parts and one excerpt is taken from the middle of each. Formats soundfile cannot
    seek in are decoded through librosa's fallback, which reads up to each excerpt.

    Parameters
    ----------
    path : str or path-like
    sr : int
        Target sample rate (each excerpt is resampled on its own when needed).
    n_excerpts : int >= 1
    seconds : float > 0

    Returns
    -------
    excerpts : list of np.ndarray (float32, 1-D), or None
        None when the recording is not longer than ``n_excerpts * seconds``: use it whole.

    Raises
    ------
    AudioLoadError
        As :func:`load`.
    ParameterError
        Bad ``sr``, ``n_excerpts`` or ``seconds``.
    """
    sr = _check_sr(sr)
    if isinstance(n_excerpts, bool) or not isinstance(n_excerpts, (int, np.integer)) or n_excerpts < 1:
        raise ParameterError(f"n_excerpts must be an int >= 1, got {n_excerpts!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ParameterError(f"seconds must be a number > 0, got {seconds!r}")
    p = _check_file(path)
    starts = excerpt_starts(duration(p), int(n_excerpts), float(seconds))
    if not starts:
        return None
    try:
        f = sf.SoundFile(str(p))
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - not for libsndfile: decode each excerpt through librosa
        f = None
    out = []
    for start in starts:
        if f is not None:
            try:
                f.seek(int(start * f.samplerate))
                block = f.read(int(seconds * f.samplerate), dtype="float32", always_2d=True)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - a damaged stream part-way through
                f.close()
                raise AudioLoadError(
                    path, f"cannot decode audio ({str(exc).strip() or type(exc).__name__}); {_FALLBACK_HINT}"
                ) from exc
            y = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
            sr_native = f.samplerate
        else:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    y, sr_native = librosa.load(str(p), sr=None, mono=True, offset=start, duration=seconds,
                                                dtype=np.float32)
                except MemoryError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    raise AudioLoadError(path, f"cannot decode audio ({exc}); {_FALLBACK_HINT}") from exc
        if y.size == 0:
            continue
        if not np.isfinite(y).all():
            raise AudioLoadError(path, "contains NaN or infinite samples; re-export it as 16-bit or 24-bit PCM")
        out.append(np.ascontiguousarray(y) if sr_native == sr else _resample(np.ascontiguousarray(y), int(sr_native), sr))
    if f is not None:
        f.close()
    if not out:
        raise AudioLoadError(path, "contains no audio samples; re-export the recording")
    return out
