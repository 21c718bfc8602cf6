"""Decoding audio files to mono float32 samples at a chosen sample rate.

This module is the bottom stage of audiogmm: *audio file -> samples*. Everything above
it (features, training, prediction) sees only ``y``, a 1-D ``float32`` array at
``sr`` samples per second, and :class:`~audiogmm.exceptions.AudioLoadError` when a
file cannot be used.

Decoding
--------
One function (``_open``) decides how a file is decoded, for :func:`load`, :func:`stream`,
:func:`duration` and :func:`load_excerpts` alike:

1. `soundfile <https://python-soundfile.readthedocs.io>`_ (libsndfile) is tried
   first. It reads WAV, FLAC, Ogg Vorbis, Opus, AIFF, AU, CAF, W64, RF64 and, with
   libsndfile >= 1.1, MP3. It is the fast path and can seek.
2. If soundfile cannot open the file, audioread is tried (it reads forward only, with
   FFmpeg, GStreamer or Core Audio on the system for formats such as
   ``.m4a``/``.aac``/``.wma``/``.webm``; without them, plain WAV/AIFF/AU only). Its samples
   equal ``librosa.load(path, sr=None)``'s.
3. The header is checked against :data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`,
   :data:`MAX_CHANNELS` and :data:`MAX_DURATION_SECONDS` before any sample is decoded,
   and samples are always read in bounded blocks, so a damaged or hostile header cannot
   make a large allocation.
4. Multi-channel audio is mixed to mono (the mean of the channels), block by block,
   so a long stereo file never holds its float32 stereo copy in memory.
5. The signal is resampled once, with soxr (``librosa.resample(...,
   res_type="soxr_hq")``), and only when the native rate differs from ``sr``.

Every failure is reported as ``AudioLoadError(path, reason)``; no raw soundfile or
audioread exception escapes, and no file opened here stays open after a call returns or
raises. The ``reason`` says what went wrong and, where possible, what to do about it. A
file whose samples include NaN or infinity (float WAV) is refused: it would give NaN
features and scores. File names need not be UTF-8 (see :func:`display_path` for showing
them).

Memory
------
:func:`load` returns the whole recording: 4 bytes per sample at the native rate (mono mix)
plus 4 bytes per sample at ``sr`` after resampling (and, for a moment, a second native-rate
copy while the decoded blocks are joined), so a 1-hour 44.1 kHz file needs about 635 MB
while being resampled and 230 MB once at 16 kHz. :func:`stream` yields the same samples in
blocks (soxr's streaming resampler), holding a few MB whatever the length; feature
extraction uses it.
"""

from __future__ import annotations

import os
import stat
import warnings
from contextlib import closing
from pathlib import Path

import numpy as np
import soundfile as sf

from audiogmm.exceptions import AudioLoadError, ParameterError

__all__ = [
    "AUDIO_EXTENSIONS", "MIN_SAMPLE_RATE", "MAX_SAMPLE_RATE", "MAX_CHANNELS", "MAX_DURATION_SECONDS",
    "MIN_EXCERPT_SECONDS", "is_audio_path", "display_path", "load", "stream", "duration", "load_excerpts",
    "excerpt_starts",
]

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

# Bounds every file's header is checked against before a sample is decoded or a buffer is
# allocated. A header outside them is damaged or hostile (a WAV claiming 1 Hz would be
# resampled to 16,000 times its length; a FLAC claiming 4.8e9 samples would be read into
# a 19 GB array), so the file is refused with an AudioLoadError naming it and the value.
#: Lowest native sample rate accepted (Hz): below any real recording (telephony is 8 kHz).
MIN_SAMPLE_RATE = 1000
#: Highest native sample rate accepted (Hz): twice the fastest studio rate in use (384 kHz).
MAX_SAMPLE_RATE = 768_000
#: Most channels accepted: above 7th-order Ambisonics (64) and Atmos beds (128).
MAX_CHANNELS = 256
#: Longest recording accepted (seconds, 24 hours); split longer recordings.
MAX_DURATION_SECONDS = 24 * 3600.0
#: Shortest excerpt :func:`load_excerpts` accepts (seconds): one 25 ms analysis window.
MIN_EXCERPT_SECONDS = 0.025

_BLOCK_FRAMES = 1 << 18  # frames per block when mixing multi-channel audio to mono
_BLOCK_SAMPLES = 1 << 21  # at most this many samples (frames x channels) decoded per block: 8 MiB

_FALLBACK_HINT = (
    "the file may be damaged or in a format soundfile cannot read; "
    "convert it to WAV or FLAC, or install FFmpeg so audioread can decode it"
)
_NON_FINITE = "contains NaN or infinite samples; re-export it as 16-bit or 24-bit PCM"
_NO_SAMPLES = "contains no audio samples; re-export the recording"


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


def display_path(path) -> str:
    """A path as text that can always be printed or written to JSON.

    On Linux a file name is bytes and need not be UTF-8; Python keeps the bytes that are
    not as lone surrogates (``os.fsdecode``), which cannot be encoded for a terminal or a
    file. Those bytes are shown as ``\\xNN`` escapes; every other character is unchanged.
    Use the result in messages only: open files by the path itself.

    Parameters
    ----------
    path : str, bytes or path-like

    Returns
    -------
    str

    Examples
    --------
    >>> import os
    >>> display_path(os.fsdecode(b"caf\\xe9.wav"))
    'caf\\\\xe9.wav'
    >>> display_path("musique/été.flac")
    'musique/été.flac'
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
    except ValueError:  # os.stat refuses a path holding a NUL character
        raise AudioLoadError(path, "the path holds a NUL character, which no file name can") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioLoadError(path, "is a directory, not an audio file; pass a file")
    if not stat.S_ISREG(st.st_mode):
        # a FIFO or a device would block or never end; only regular files are decoded
        raise AudioLoadError(path, "is not a regular file (a pipe, device or socket); pass a file")
    if st.st_size == 0:
        raise AudioLoadError(path, "file is empty (0 bytes); re-copy or re-export it")
    if not os.access(p, os.R_OK):
        raise AudioLoadError(path, "permission denied; check the file's permissions")
    return p


def _reason(exc):
    """An exception's message, or its type's name when the message is empty."""
    return str(exc).strip() or type(exc).__name__


def _soundfile_reason(exc):
    """What libsndfile said, without its ``Error opening 'path':`` prefix.

    For a file it has no decoder for, libsndfile 1.1+ ends in its MPEG probe and reports
    "File does not exist or is not a regular file (possibly a pipe?)" even though
    :func:`_check_file` has just seen an existing regular file: that is replaced by what
    it means.
    """
    text = str(getattr(exc, "error_string", "") or "").strip() or _reason(exc)
    if text.startswith("File does not exist or is not a regular file"):
        return "not a format soundfile can read"
    return text.rstrip(".")


def _detach(exc):
    """``exc`` and the exceptions it chains, without their tracebacks.

    A decoder that raises from its constructor may leave a file it opened referenced only
    by that constructor's frame (audioread's raw reader does when ``wave`` raises
    ``EOFError``); dropping the tracebacks lets the file be finalised now, inside the
    caller's warning filter, instead of whenever the error we raise is collected.
    """
    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.with_traceback(None)
        e = e.__cause__ or e.__context__
    return exc


def _mono(block):
    """(n, channels) float32 -> (n,) float32: the first channel, or the channels' mean."""
    return block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)


class _SoundFileDecoder:
    """A recording opened by soundfile (libsndfile): header facts, seek, block reads."""

    seekable = True

    def __init__(self, path: Path):
        # A bytes path: libsndfile opens any Linux file name, UTF-8 or not (soundfile encodes
        # a str path strictly and fails on the surrogates os.fsdecode keeps for other bytes).
        self._f = sf.SoundFile(os.fsencode(path))
        self.samplerate, self.channels, self.frames = self._f.samplerate, self._f.channels, self._f.frames
        self.seconds = self.frames / self.samplerate if self.samplerate > 0 else None

    def seek(self, frame):
        self._f.seek(frame)

    def read(self, n):
        """Up to ``n`` frames as (n, channels) float32 (fewer at the end)."""
        return self._f.read(n, dtype="float32", always_2d=True)

    def close(self):
        self._f.close()


class _AudioreadDecoder:
    """A recording opened by audioread (FFmpeg, GStreamer, Core Audio or the raw WAV reader).

    audioread only reads forward, in 16-bit buffers; samples are scaled by 2**-15 exactly
    as librosa's ``buf_to_float`` does, so results equal ``librosa.load(..., sr=None)``.
    """

    seekable = False

    def __init__(self, path: Path):
        import audioread

        self._f = audioread.audio_open(str(path))
        try:
            self.samplerate, self.channels = int(self._f.samplerate), int(self._f.channels)
            try:
                d = float(self._f.duration)
            except Exception:  # noqa: BLE001 - some backends do not know the length
                d = None
            if d is not None and not (d >= 0 and np.isfinite(d)):
                d = None
            self.seconds = d
            self.frames = None if d is None or self.samplerate <= 0 else int(d * self.samplerate)
            self._buffers = iter(self._f)
        except BaseException:
            self._f.close()
            raise
        self._pos = 0
        self._pending = np.zeros((0, max(self.channels, 1)), dtype=np.float32)

    def seek(self, frame):
        if frame < self._pos:  # excerpts are read in increasing order: never reached
            raise ValueError("audioread cannot seek backwards")
        while self._pos < frame:
            skip = self.read(min(frame - self._pos, _BLOCK_FRAMES))
            if skip.shape[0] == 0:
                break

    def read(self, n):
        parts, have = [], 0
        while have < n:
            if self._pending.shape[0] == 0:
                try:
                    buf = next(self._buffers)
                except StopIteration:
                    break
                y = np.frombuffer(buf, "<i2").astype(np.float32) * (1.0 / 32768.0)
                self._pending = y[: y.size - y.size % self.channels].reshape(-1, self.channels)
                continue
            take = self._pending[: n - have]
            self._pending = self._pending[take.shape[0]:]
            parts.append(take)
            have += take.shape[0]
        self._pos += have
        if not parts:
            return np.zeros((0, self.channels), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self):
        self._f.close()


def _both_failed(path, what, sf_reason, ar_reason):
    """The AudioLoadError for a file neither soundfile nor audioread could read."""
    return AudioLoadError(
        path, f"cannot {what} (soundfile: {sf_reason}; audioread: {ar_reason}); {_FALLBACK_HINT}")


def _check_header(dec, path):
    """Refuse a header outside the module's bounds (before anything is decoded)."""
    sr, ch, n = dec.samplerate, dec.channels, dec.frames
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioLoadError(
            path, f"sample rate {sr} Hz is outside the supported {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz; "
            "the header is damaged or the file is not audio: re-export it")
    if not 1 <= ch <= MAX_CHANNELS:
        raise AudioLoadError(
            path, f"{ch} channels is outside the supported 1-{MAX_CHANNELS}; "
            "the header is damaged or the file is not audio: re-export it")
    if n is not None and n / sr > MAX_DURATION_SECONDS:
        raise AudioLoadError(
            path, f"the header claims {n} frames ({n / sr / 3600:.1f} hours at {sr} Hz), more than the "
            f"supported {MAX_DURATION_SECONDS / 3600:g} hours; the header is damaged, or split the recording")


def _attempt(decoder_class, p):
    """``(decoder, None)``, or ``(None, the exception without its traceback)``."""
    try:
        return decoder_class(p), None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - libsndfile and audioread's backends raise many types
        return None, _detach(exc)


def _open(path, what="decode audio"):
    """The one place that decides how a file is decoded: soundfile, else audioread.

    Returns an open decoder whose header passed :func:`_check_header`; the caller closes
    it (``with contextlib.closing(...)``). Raises AudioLoadError naming ``path``.
    """
    p = _check_file(path)
    dec, sf_exc = _attempt(_SoundFileDecoder, p)
    if dec is None:
        with warnings.catch_warnings():
            # audioread's backends warn about their own deprecations and may abandon a file
            # they opened when they fail; that file is finalised inside this block (see
            # _detach), so its ResourceWarning is theirs, not ours, and is not shown.
            warnings.simplefilter("ignore")
            dec, ar_exc = _attempt(_AudioreadDecoder, p)
        if dec is None:
            raise _both_failed(path, what, _soundfile_reason(sf_exc), _reason(ar_exc)) from ar_exc
    try:
        _check_header(dec, path)
    except BaseException:
        dec.close()
        raise
    return dec


def _read_error(path, exc):
    return AudioLoadError(path, f"cannot decode audio ({_reason(exc)}); {_FALLBACK_HINT}")


def _read(dec, path, n):
    """``dec.read(n)``, a damaged stream reported as AudioLoadError naming ``path``."""
    try:
        return dec.read(n)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged stream part-way through
        raise _read_error(path, exc) from exc


def _block_frames(dec, frames):
    """Frames per read: ``frames``, fewer for many channels so a block stays <= 8 MiB."""
    return max(1, min(frames, _BLOCK_SAMPLES // dec.channels))


def _blocks(dec, path, frames, mono, limit=None):
    """Yield consecutive blocks of a decoder: (n,) mono or (n, channels) float32.

    At most ``limit`` frames in all when given (nothing beyond them is decoded).
    """
    n = _block_frames(dec, frames)
    while limit is None or limit > 0:
        block = _read(dec, path, n if limit is None else min(n, limit))
        if block.shape[0] == 0:
            return
        if limit is not None:
            limit -= block.shape[0]
        if not np.isfinite(block).all():
            raise AudioLoadError(path, _NON_FINITE)
        yield np.ascontiguousarray(_mono(block)) if mono else block


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
        nor audioread, has a header outside the module's bounds (sample rate, channels,
        duration), holds zero samples, or holds NaN/infinite samples.
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
    with closing(_open(path)) as dec:
        sr_native = dec.samplerate
        # Read in blocks whatever the header claims, so a lying header allocates nothing.
        blocks = list(_blocks(dec, path, _BLOCK_FRAMES, bool(mono)))
    if not blocks:
        raise AudioLoadError(path, _NO_SAMPLES)
    y = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    del blocks
    if not mono:
        y = np.ascontiguousarray(y.T)
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


def stream(path, *, sr, block_seconds=10.0):
    """Decode an audio file block by block: mono float32 samples at ``sr``.

    The concatenation of the blocks equals ``load(path, sr=sr)`` exactly: soxr's streaming
    resampler (``soxr.ResampleStream``, quality ``"HQ"``) gives the same samples as its
    one-shot ``soxr.resample`` that ``librosa.resample(res_type="soxr_hq")`` calls, and the
    total is padded or trimmed to ``ceil(n * sr / sr_native)`` as librosa does. Memory is a
    few blocks whatever the file's length, with soundfile and audioread alike.

    Parameters
    ----------
    path : str or path-like
    sr : int
        Target sample rate in Hz.
    block_seconds : float, default 10.0
        Native-rate audio decoded per step (fewer frames for files with many channels).

    Yields
    ------
    y : np.ndarray, float32, shape (n,)
        Consecutive pieces of the recording (some may be empty).

    Raises
    ------
    AudioLoadError
        As :func:`load`: missing, empty, undecodable, out-of-bounds header, no samples,
        NaN/infinite samples.
    ParameterError
        ``sr`` is not a positive int, or ``block_seconds`` is not positive.

    Examples
    --------
    >>> n = sum(b.size for b in stream("talk.flac", sr=16000))  # doctest: +SKIP
    """
    sr = _check_sr(sr)
    if isinstance(block_seconds, bool) or not isinstance(block_seconds, (int, float)) or not block_seconds > 0:
        raise ParameterError(f"block_seconds must be a number > 0, got {block_seconds!r}")
    _check_file(path)  # the common errors at the call; decoding starts with the iteration
    return _stream(path, sr, float(block_seconds))


def _stream(path, sr, block_seconds):
    import soxr

    n_in = n_out = 0
    resampler = held = None
    with closing(_open(path)) as dec:
        sr_native = dec.samplerate
        for y in _blocks(dec, path, max(1024, int(min(block_seconds, 3600.0) * 48000)), True):
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
        raise AudioLoadError(path, _NO_SAMPLES)
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
        The file is missing, a directory, empty, of an unreadable format, or has a
        header outside the module's bounds.

    Examples
    --------
    >>> duration("speech.wav")  # doctest: +SKIP
    1.5
    """
    with closing(_open(path, "read the duration")) as dec:
        if dec.seconds is None:
            raise AudioLoadError(path, f"cannot read the duration (the decoder does not report it); {_FALLBACK_HINT}")
        return float(dec.seconds)


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
    open are read forward through audioread, up to each excerpt in turn.

    Parameters
    ----------
    path : str or path-like
    sr : int
        Target sample rate (each excerpt is resampled on its own when needed).
    n_excerpts : int >= 1
    seconds : float >= MIN_EXCERPT_SECONDS
        Length of each excerpt; at least :data:`MIN_EXCERPT_SECONDS` (one 25 ms analysis
        window), since a shorter one cannot give a single full feature frame.

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
    if seconds < MIN_EXCERPT_SECONDS:
        raise ParameterError(
            f"excerpt seconds must be >= {MIN_EXCERPT_SECONDS} (one 25 ms analysis window), got {seconds!r}; "
            "use longer excerpts, or none to score whole recordings")
    with closing(_open(path)) as dec:
        if dec.seconds is None:
            raise AudioLoadError(path, f"cannot read the duration (the decoder does not report it); {_FALLBACK_HINT}")
        starts = excerpt_starts(dec.seconds, int(n_excerpts), float(seconds))
        if not starts:
            return None
        sr_native = dec.samplerate
        out = []
        for start in starts:
            try:
                dec.seek(int(start * sr_native))
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - a header that claims more than the file holds
                raise _read_error(path, exc) from exc
            parts = list(_blocks(dec, path, _BLOCK_FRAMES, True, limit=int(seconds * sr_native)))
            if not parts:
                continue
            y = parts[0] if len(parts) == 1 else np.concatenate(parts)
            out.append(y if sr_native == sr else _resample(y, int(sr_native), sr))
    if not out:
        raise AudioLoadError(path, _NO_SAMPLES)
    return out
