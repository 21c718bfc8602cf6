"""Feature extraction: samples -> MFCC frames ``X`` of shape ``(n_frames, n_features)``.

The recipe (the defaults of :class:`FeatureConfig`, known to work on this project's
speaker, language and music data):

1. **Audio** decoded to mono and resampled to ``sample_rate`` = 16 kHz
   (:func:`audiogmm.audio.load`). Input at 8 kHz is upsampled first, so ``fmax``
   never exceeds the Nyquist frequency.
2. **MFCC**: 25 ms Hann window (400 samples, FFT size 512), 10 ms hop (160 samples),
   frames centred on ``t * hop_length`` (``center=True``, zero padding), power
   spectrum, 40 Slaney mel bands from 20 Hz to ``sample_rate / 2``, ``10 log10``
   (floor ``1e-10``) with values clipped to 80 dB below the recording's loudest mel
   bin, DCT-II (orthonormal), 20 coefficients. ``c0`` (log energy) is kept.
   This is exactly ``librosa.feature.mfcc(y=y, sr=sr, n_mfcc=..., n_fft=...,
   hop_length=..., win_length=..., n_mels=..., fmin=..., fmax=...)`` (agreement to
   about 1e-6 relative), computed directly in blocks of frames: librosa's mel
   filterbank, ``scipy.fft.rfft`` of the framed, windowed audio, ``power_to_db``
   and the DCT as one small matrix product, keeping only one block of spectra in memory.
3. **Deltas**: ``librosa.feature.delta`` of the static coefficients, width 9,
   order 1 and (``deltas=2``) order 2, appended after the statics:
   ``[mfcc, delta, delta-delta]``. Clips shorter than ``delta_width`` frames use
   ``mode="nearest"`` edge handling instead of librosa's default ``"interp"``
   (which requires at least ``delta_width`` frames). Computed here as a 9-tap
   correlation (the Savitzky-Golay derivative of degree = order is constant over the
   window, so librosa's edge fit repeats the nearest interior value); a test checks
   equality with librosa.
4. **SDC** (``sdc=True``, off by default): shifted delta cepstra N-d-P-k of the first
   N statics, appended last.
5. **VAD** (``vad=True``, off by default): frames more than ``vad_threshold_db`` below
   the recording's loud end are dropped (see :class:`FeatureConfig`).
6. **CMVN** per recording (``cmvn="utterance"``): every column is shifted to zero
   mean and scaled to unit variance over the recording's (kept) frames; or over a
   sliding window (``cmvn="sliding"``). A column whose standard deviation is below
   ``1e-3`` (a silent or constant stretch) is only centred, so silence gives zeros,
   never NaN.

No librosa at run time: the mel filterbank and window are computed here with NumPy (tests
check them equal to ``librosa.filters.mel`` and ``librosa.filters.get_window``), so a
worker process imports NumPy, SciPy's FFT, soundfile and soxr only (much lighter and faster
to start than with librosa; ``bench/features.py`` measures it).

Notes
-----
*Long recordings are processed block by block.* :func:`extract_file` decodes and
resamples the file in 10-second blocks (:func:`audiogmm.audio.stream`, soxr's streaming
resampler, which gives the same samples as the one-shot resampling), computes the
spectra 256 frames at a time as the samples arrive and keeps only the log-mel
spectrogram ``(n_frames, n_mels)``. The 80 dB floor of librosa's ``power_to_db(...,
top_db=80)`` is relative to the *whole* recording's maximum, so it is applied once all
blocks are in, followed by the DCT, deltas, SDC, VAD and CMVN on the whole-recording
matrices. The FFT blocks always start at multiples of 256 frames whatever the decoded
block sizes, so block-wise extraction equals whole-file extraction (``extract(load(path),
config)``) bit for bit; a test checks it, with every option. **CMVN over blocks**:
``"utterance"`` and ``"mean"`` use the statistics of all the recording's frames, which
are all in memory by then, so they are exact too; ``"sliding"`` is local by definition
(and computed in row blocks with float64 running sums).

*Memory.* A 1-hour recording yields 360,001 frames at the default 10 ms hop. What is held
is the log-mel matrix (40 mels: 55 MiB float32) and then ``X`` (60 features: 82 MiB),
plus a few MiB of blocks; the audio itself (230 MB at 16 kHz) is never held whole
(``python bench/features.py`` measures the peak). With ``vad=True`` the kept rows are
compacted in place, without a second copy of ``X``.

*Speed.* ``python bench/features.py`` compares end-to-end extraction with ``librosa.load``
+ ``librosa.feature.mfcc`` + ``librosa.feature.delta`` and with a bare ``scipy.fft.rfft``
of the same frames; decoding (Ogg Vorbis especially) and resampling dominate the end-to-end
time. Set BLAS to one thread (threadpoolctl) when calling :func:`extract` in a loop:
OpenBLAS's idle threads slow it down several-fold; :mod:`audiogmm.pipeline` does this for you.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.fft

from audiogmm import audio
from audiogmm.exceptions import AudioLoadError, ParameterError

__all__ = [
    "FeatureConfig", "PRESETS", "CMVN_MODES", "extract", "extract_file", "extract_excerpts", "normalize",
    "MAX_SAMPLE_RATE", "MAX_WIN_MS", "MAX_HOP_MS", "MAX_WIN_LENGTH", "MAX_N_MELS", "MAX_DELTA_WIDTH",
    "MAX_CMVN_WINDOW", "MAX_VAD_THRESHOLD_DB", "MAX_SDC_D", "MAX_SDC_P", "MAX_SDC_K",
]

#: Accepted values of :attr:`FeatureConfig.cmvn`.
CMVN_MODES = ("none", "mean", "utterance", "sliding")

_AMIN = 1e-10  # power floor before the log, as librosa.power_to_db
_TOP_DB = 80.0  # dynamic range kept below the recording's maximum, as librosa
_STD_FLOOR = 1e-3  # CMVN: columns with a smaller std are only centred
_BLOCK_FRAMES = 256  # frames per FFT block: 0.5-1 MB of float32 frames stays in cache (fastest measured)
_VAD_REF_PERCENTILE = 99.0  # VAD reference: the loud end of the frame energies, robust to a click
_CHUNK_FRAMES, _CHUNK_FRAMES_MAX = 256, 1 << 14  # log-mel storage: first and largest chunk (frames)
_CMVN_BLOCK_FRAMES = 1 << 13  # sliding CMVN: rows per block (at least one window)
_VAD_MIN_FRAMES = 10  # VAD never keeps fewer frames than this (the loudest ones)

# Upper bounds of FeatureConfig's fields, checked in __post_init__ (so a model file's
# feature config and CLI options alike are refused before any work or allocation). They
# are generous for real use and keep every buffer of extraction within tens of MB.
#: Highest ``sample_rate`` (Hz): the fastest studio rate in common use.
MAX_SAMPLE_RATE = 384_000
#: Longest ``win_ms`` and ``hop_ms`` (milliseconds).
MAX_WIN_MS = MAX_HOP_MS = 1000.0
#: Longest analysis window in samples (so the FFT size is at most this): 1 s at 16 kHz.
MAX_WIN_LENGTH = 16384
#: Most mel bands (``n_mels``; ``n_mfcc`` is at most ``n_mels``).
MAX_N_MELS = 512
#: Widest ``delta_width`` (frames; about 1 s at the default hop).
MAX_DELTA_WIDTH = 99
#: Longest sliding-CMVN window ``cmvn_window`` (seconds).
MAX_CMVN_WINDOW = 3600.0
#: Largest ``vad_threshold_db`` (a threshold this far down keeps every frame anyway).
MAX_VAD_THRESHOLD_DB = 200.0
#: Largest SDC spread and shift, ``sdc_d`` and ``sdc_p`` (frames), and block count ``sdc_k``.
MAX_SDC_D = MAX_SDC_P = 50
MAX_SDC_K = 32

#: Named configurations for :meth:`FeatureConfig.preset`. Values not listed take the
#: :class:`FeatureConfig` defaults.
PRESETS: dict[str, dict] = {
    # The reference recipe: FSDD speaker ID, digits. Equal to the defaults.
    "speech": {},
    # Spoken language ID: the speech front end. The classic shifted-delta-cepstra front end
    # (Torres-Carrasquillo et al. 2002: 7 static MFCC + SDC 7-1-3-7, VAD; available as
    # --sdc --vad --n-mfcc 7 --deltas 0) scored below it on GCompris with held-out speakers
    # (bench/accuracy.py language protocol, UBM K=128: 30.6 % against 34.6 %, baseline 31.3 %):
    # these are isolated words of about 1 s, while SDC is meant for continuous speech.
    "language": {},
    # Music (genre, soundtrack folders): the reference recipe's front end, 16 kHz, 25 ms / 10 ms,
    # 128 mel bands from 0 Hz, deltas and per-recording CMVN. Measured with bench/accuracy.py
    # (per-class K=32): soundtrack 66.0 %, genre-midi 49.0 %; the earlier music framing
    # (22.05 kHz, 1024/512 samples, 64 mels) gave 41.5 % and 51.0 %, 40 mels at 25/10 ms
    # 60.4 % and 51.0 % (baselines 71.7 % and 51.0 %; the test splits are 53 and 49 clips,
    # so one clip is about 2 points).
    "music": {"n_mels": 128, "fmin": 0.0},
}


def _show(value) -> str:
    """``repr(value)`` for a message, short whatever the value (a hostile file's 5,000-digit int)."""
    if _is_int(value) and abs(value).bit_length() > 200:
        return f"an int of about {int(abs(value).bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class FeatureConfig:
    """How recordings become feature frames. Immutable; stored in every model file.

    Parameters
    ----------
    sample_rate : int, default 16000
        Rate (Hz) every recording is resampled to before analysis; 1000 to
        :data:`MAX_SAMPLE_RATE` (384000).
    n_mfcc : int, default 20
        Static cepstral coefficients per frame (including ``c0`` when
        ``keep_c0=True``; with ``keep_c0=False``, ``c1 .. c{n_mfcc}``).
    n_mels : int, default 40
        Mel bands of the filterbank (Slaney mel scale and area normalisation, as
        librosa). Must be >= the number of cepstra computed, <= :data:`MAX_N_MELS` (512),
        and each band must hold an FFT bin.
    fmin : float, default 20.0
        Lowest frequency (Hz) of the filterbank.
    fmax : float or None, default None
        Highest frequency (Hz) of the filterbank; ``None`` means ``sample_rate / 2``.
    win_ms : float, default 25.0
        Analysis window length in milliseconds (Hann), at most :data:`MAX_WIN_MS`
        (1000) and :data:`MAX_WIN_LENGTH` (16384) samples. The FFT size is the next power
        of two (400 samples -> 512 at 16 kHz).
    hop_ms : float, default 10.0
        Step between frames in milliseconds (100 frames per second); at most
        :data:`MAX_HOP_MS` (1000).
    keep_c0 : bool, default True
        Keep ``c0``, the frame's log energy. With per-recording CMVN its absolute
        level is removed but its movement over time (speech vs pauses, note onsets)
        remains, which helps both speech and music models; set ``False`` for
        channel-robust speaker models that must ignore energy entirely.
    deltas : {0, 1, 2}, default 2
        0: statics only; 1: append delta; 2: append delta and delta-delta.
    delta_width : int, default 9
        Odd number of frames (3 to :data:`MAX_DELTA_WIDTH`, 99) of the Savitzky-Golay delta window
        (``librosa.feature.delta``'s ``width``; 9 frames = 90 ms at the default hop).
    cmvn : {"none", "mean", "utterance", "sliding"}, default "utterance"
        Normalisation of every feature column: ``"mean"`` subtracts the recording's
        mean (CMN, removes a fixed channel/microphone colouring); ``"utterance"`` also
        divides by its standard deviation; ``"sliding"`` does both over a window of
        ``cmvn_window`` seconds around each frame (for long recordings whose channel
        or content changes, and for :func:`~audiogmm.pipeline.predict_segments`).
        Applied after the VAD, to the kept frames only.
    cmvn_window : float, default 3.0
        Seconds of the sliding-CMVN window (``round(cmvn_window * sample_rate /
        hop_length)`` frames, 300 at the defaults). The window is centred on the frame
        and shifted inwards at the recording's ends so that it always holds
        ``cmvn_window`` seconds (Kaldi's ``apply-cmvn-sliding --center``; at most
        :data:`MAX_CMVN_WINDOW`, 3600); a
        recording shorter than the window gets per-recording CMVN. Used only with
        ``cmvn="sliding"``.
    vad : bool, default False
        Energy voice/activity detection: drop the frames whose energy (``10 log10``
        of the frame's total mel power) is more than ``vad_threshold_db`` below the
        recording's loud end (the 99th percentile of its frame energies, so that one
        click does not set the level). At least the 10 loudest frames (all, if fewer)
        are always kept, so a recording never loses every frame; a digitally silent
        one keeps all. Deltas and SDC are computed on the full, contiguous frame
        sequence first.
    vad_threshold_db : float, default 40.0
        How far below the loud end a frame may be and still be kept. 40 dB keeps
        weak consonants and drops pauses and room noise in ordinary recordings; a
        noisy recording (SNR < 40 dB) keeps nearly everything. At most
        :data:`MAX_VAD_THRESHOLD_DB` (200).
    sdc : bool, default False
        Append shifted delta cepstra N-d-P-k (for spoken-language ID): for
        ``i = 0 .. k-1``, ``c[t + i*P + d] - c[t + i*P - d]`` of the first ``sdc_n``
        static coefficients (frame indices clamped to the recording), ``sdc_n *
        sdc_k`` columns after ``[mfcc, delta, delta-delta]``.
    sdc_n, sdc_d, sdc_p, sdc_k : int, default 7, 1, 3, 7
        N (coefficients, <= ``n_mfcc``), d (delta spread, frames, <= :data:`MAX_SDC_D`),
        P (shift between blocks, frames, <= :data:`MAX_SDC_P`), k (blocks, <=
        :data:`MAX_SDC_K`): the classic 7-1-3-7.

    Attributes
    ----------
    n_features : int
        Columns of ``X``: ``n_mfcc * (1 + deltas)``, plus ``sdc_n * sdc_k`` with SDC.
    win_length, hop_length, n_fft : int
        Window, hop and FFT size in samples.
    cmvn_window_frames : int
        The sliding-CMVN window in frames.

    Raises
    ------
    ParameterError
        Any field is of the wrong type or out of range (the message names it).

    Examples
    --------
    >>> cfg = FeatureConfig()
    >>> cfg.n_features, cfg.win_length, cfg.hop_length, cfg.n_fft
    (60, 400, 160, 512)
    >>> FeatureConfig.preset("music").n_mels
    128
    >>> FeatureConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    sample_rate: int = 16000
    n_mfcc: int = 20
    n_mels: int = 40
    fmin: float = 20.0
    fmax: Optional[float] = None
    win_ms: float = 25.0
    hop_ms: float = 10.0
    keep_c0: bool = True
    deltas: int = 2
    delta_width: int = 9
    cmvn: str = "utterance"
    cmvn_window: float = 3.0
    vad: bool = False
    vad_threshold_db: float = 40.0
    sdc: bool = False
    sdc_n: int = 7
    sdc_d: int = 1
    sdc_p: int = 3
    sdc_k: int = 7

    def __post_init__(self):
        def set_(name, value):
            object.__setattr__(self, name, value)

        def too_large(name, value, maximum):
            if value > maximum:
                raise ParameterError(
                    f"{name} must be <= {maximum} (the documented range of FeatureConfig.{name}), got {_show(value)}")

        def int_field(name, minimum, maximum=None):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise ParameterError(f"{name} must be an int >= {minimum}, got {_show(value)}")
            if maximum is not None:
                too_large(name, value, maximum)
            set_(name, int(value))

        def float_field(name, minimum, *, strict, maximum=None):
            value = getattr(self, name)
            ok = _is_real(value) and math.isfinite(value)
            ok = ok and (value > minimum if strict else value >= minimum)
            if not ok:
                op = ">" if strict else ">="
                raise ParameterError(f"{name} must be a finite number {op} {minimum}, got {_show(value)}")
            if maximum is not None:
                too_large(name, value, maximum)
            set_(name, float(value))

        int_field("sample_rate", 1000, MAX_SAMPLE_RATE)
        int_field("n_mfcc", 1)
        int_field("n_mels", 1, MAX_N_MELS)
        float_field("fmin", 0, strict=False)
        nyquist = self.sample_rate / 2
        if self.fmax is not None:
            if not (_is_real(self.fmax) and math.isfinite(self.fmax)
                    and self.fmin < self.fmax <= nyquist):
                raise ParameterError(
                    f"fmax must be None or a number with fmin ({self.fmin}) < fmax <= "
                    f"sample_rate / 2 ({nyquist}), got {_show(self.fmax)}"
                )
            set_("fmax", float(self.fmax))
        elif self.fmin >= nyquist:
            raise ParameterError(
                f"fmin must be < sample_rate / 2 ({nyquist}), got {_show(self.fmin)}"
            )
        float_field("win_ms", 0, strict=True, maximum=MAX_WIN_MS)
        float_field("hop_ms", 0, strict=True, maximum=MAX_HOP_MS)
        if self.win_length > MAX_WIN_LENGTH:
            raise ParameterError(
                f"win_ms must give a window of <= {MAX_WIN_LENGTH} samples at sample_rate={self.sample_rate} "
                f"(<= {1000.0 * MAX_WIN_LENGTH / self.sample_rate:g} ms), got {_show(self.win_ms)} ms "
                f"({self.win_length} samples)"
            )
        if self.win_length < 16:
            raise ParameterError(
                f"win_ms must give a window of >= 16 samples at sample_rate={self.sample_rate}, "
                f"got {_show(self.win_ms)} ms ({self.win_length} samples)"
            )
        if self.hop_length < 1:
            raise ParameterError(
                f"hop_ms must give a hop of >= 1 sample at sample_rate={self.sample_rate}, "
                f"got {_show(self.hop_ms)} ms"
            )
        if not isinstance(self.keep_c0, (bool, np.bool_)):
            raise ParameterError(f"keep_c0 must be a bool, got {_show(self.keep_c0)}")
        set_("keep_c0", bool(self.keep_c0))
        if not _is_int(self.deltas) or self.deltas not in (0, 1, 2):
            raise ParameterError(f"deltas must be 0, 1 or 2, got {_show(self.deltas)}")
        set_("deltas", int(self.deltas))
        if not _is_int(self.delta_width) or self.delta_width < 3 or self.delta_width % 2 == 0:
            raise ParameterError(
                f"delta_width must be an odd int >= 3, got {_show(self.delta_width)}"
            )
        too_large("delta_width", self.delta_width, MAX_DELTA_WIDTH)
        set_("delta_width", int(self.delta_width))
        if not isinstance(self.cmvn, str) or self.cmvn not in CMVN_MODES:
            raise ParameterError(
                f"cmvn must be one of {', '.join(map(repr, CMVN_MODES))}, got {_show(self.cmvn)}"
            )
        float_field("cmvn_window", 0, strict=True, maximum=MAX_CMVN_WINDOW)
        if not isinstance(self.vad, (bool, np.bool_)):
            raise ParameterError(f"vad must be a bool, got {_show(self.vad)}")
        set_("vad", bool(self.vad))
        float_field("vad_threshold_db", 0, strict=True, maximum=MAX_VAD_THRESHOLD_DB)
        if not isinstance(self.sdc, (bool, np.bool_)):
            raise ParameterError(f"sdc must be a bool, got {_show(self.sdc)}")
        set_("sdc", bool(self.sdc))
        int_field("sdc_n", 1, MAX_N_MELS)
        int_field("sdc_d", 1, MAX_SDC_D)
        int_field("sdc_p", 1, MAX_SDC_P)
        int_field("sdc_k", 1, MAX_SDC_K)
        if self.sdc and self.sdc_n > self.n_mfcc:
            raise ParameterError(
                f"sdc_n must be <= n_mfcc ({self.n_mfcc}): shifted deltas are taken of the first "
                f"sdc_n static coefficients, got {self.sdc_n}; lower sdc_n or raise n_mfcc"
            )
        n_cep = self._n_cepstra
        if n_cep > self.n_mels:
            extra = "" if self.keep_c0 else " - 1 (keep_c0=False computes one more and drops c0)"
            raise ParameterError(
                f"n_mfcc must be <= n_mels{extra} ({self.n_mels}), got {self.n_mfcc}"
            )
        basis = _mel_basis(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax)
        if not np.all(basis.max(axis=1) > 0):
            raise ParameterError(
                f"n_mels={self.n_mels} is too many for a {self.n_fft}-point FFT at "
                f"sample_rate={self.sample_rate} (some mel bands hold no FFT bin); "
                f"use fewer n_mels, a longer win_ms, or a higher fmin"
            )

    # -- derived sizes ---------------------------------------------------------------
    @property
    def win_length(self) -> int:
        """Analysis window length in samples: ``round(sample_rate * win_ms / 1000)``."""
        return int(round(self.sample_rate * self.win_ms / 1000.0))

    @property
    def hop_length(self) -> int:
        """Hop between frames in samples: ``round(sample_rate * hop_ms / 1000)``."""
        return int(round(self.sample_rate * self.hop_ms / 1000.0))

    @property
    def n_fft(self) -> int:
        """FFT size: the smallest power of two >= :attr:`win_length`."""
        return 1 << max(0, (self.win_length - 1).bit_length())

    @property
    def n_features(self) -> int:
        """Columns of the feature matrix: ``n_mfcc * (1 + deltas)``, plus ``sdc_n * sdc_k`` with SDC."""
        return self.n_mfcc * (1 + self.deltas) + (self.sdc_n * self.sdc_k if self.sdc else 0)

    @property
    def cmvn_window_frames(self) -> int:
        """Frames of the sliding CMVN window: ``round(cmvn_window * sample_rate / hop_length)``, >= 2."""
        return max(2, int(round(self.cmvn_window * self.sample_rate / self.hop_length)))

    @property
    def _n_cepstra(self) -> int:
        return self.n_mfcc + (0 if self.keep_c0 else 1)

    @property
    def _fmax(self) -> float:
        return self.sample_rate / 2.0 if self.fmax is None else self.fmax

    # -- (de)serialisation -----------------------------------------------------------
    def to_dict(self) -> dict:
        """All fields as a JSON-safe dict (ints, floats, bools, str, None).

        Examples
        --------
        >>> FeatureConfig().to_dict()["cmvn"]
        'utterance'
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d) -> "FeatureConfig":
        """Rebuild a config from :meth:`to_dict` output (e.g. a model file).

        Keys that are absent take their defaults, so files written before a field
        existed still load.

        Raises
        ------
        ParameterError
            ``d`` is not a mapping, has unknown keys, or holds invalid values.
        """
        if not isinstance(d, dict) and not hasattr(d, "keys"):
            raise ParameterError(f"a FeatureConfig must be built from a dict, got {type(d).__name__}")
        d = dict(d)
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ParameterError(
                f"unknown FeatureConfig field(s): {', '.join(unknown)}; "
                f"known fields: {', '.join(known)}"
            )
        return cls(**d)

    @classmethod
    def preset(cls, name, **overrides) -> "FeatureConfig":
        """A named configuration, optionally with some fields changed.

        ``"speech"``
            The defaults: 16 kHz, 25 ms / 10 ms, 40 mels, 20 MFCC with c0,
            delta + delta-delta (width 9), per-recording CMVN, no VAD, no SDC.
        ``"language"``
            The same as ``"speech"`` today (the shifted-delta-cepstra front end scored
            lower on this project's isolated-word language data).
        ``"music"``
            ``n_mels=128, fmin=0.0``, otherwise the defaults: 16 kHz, 25 ms / 10 ms,
            20 MFCC with c0, delta + delta-delta, per-recording CMVN.
            See :data:`PRESETS` for the reasons.

        Raises
        ------
        ParameterError
            Unknown preset name or override field, or an invalid value.

        Examples
        --------
        >>> FeatureConfig.preset("speech", n_mfcc=13).n_features
        39
        """
        if name not in PRESETS:
            raise ParameterError(
                f"unknown feature preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}"
            )
        values = dict(PRESETS[name])
        values.update(overrides)
        return cls.from_dict(values)


# ---------------------------------------------------------------------------------
# Cached constant matrices (small; keyed on the parameters that define them).


def _hz_to_mel(f):
    """Slaney's mel scale (librosa's ``hz_to_mel(htk=False)``): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = np.log(6.4) / 27.0
    mels = f / f_sp
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, mels)


def _mel_to_hz(m):
    """Inverse of :func:`_hz_to_mel` (librosa's ``mel_to_hz(htk=False)``)."""
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=32)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax) -> np.ndarray:
    """librosa's mel filterbank, (n_mels, 1 + n_fft // 2) float32, read-only.

    The same arithmetic as ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels,
    fmin=fmin, fmax=fmax)`` (Slaney scale, ``norm="slaney"``; a test checks equality), in
    NumPy so that extraction never imports librosa (lighter, faster-starting workers).
    """
    fmax = sr / 2.0 if fmax is None else fmax
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=32)
def _window(n_fft: int, win_length: int) -> np.ndarray:
    """Periodic Hann window of ``win_length`` centred in ``n_fft`` (as librosa.stft)."""
    n = np.arange(win_length)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    lpad = (n_fft - win_length) // 2
    w = np.pad(w, (lpad, n_fft - win_length - lpad)).astype(np.float32)
    w.flags.writeable = False
    return w


@functools.lru_cache(maxsize=16)
def _delta_weights(width: int, order: int) -> np.ndarray:
    """Correlation weights of ``librosa.feature.delta(width=width, order=order)``.

    librosa applies ``scipy.signal.savgol_filter(deriv=order, polyorder=order)``: a
    least-squares polynomial of degree ``order`` over ``width`` frames, differentiated
    ``order`` times. That derivative is the same constant over the whole window, so the
    weights are ``order! * pinv(vander)[order]``, and ``mode="interp"``'s edge fit equals
    the first (last) interior value. (width,) float32.
    """
    h = width // 2
    vander = np.vander(np.arange(-h, h + 1, dtype=np.float64), order + 1, increasing=True)
    w = np.linalg.pinv(vander)[order] * math.factorial(order)
    w = w.astype(np.float32)
    w.flags.writeable = False
    return w


@functools.lru_cache(maxsize=32)
def _dct_matrix(n_mels: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II rows 0..n_out-1, transposed: (n_mels, n_out) float32."""
    m = np.arange(n_mels)
    k = np.arange(n_out)[:, np.newaxis]
    d = np.cos(np.pi * k * (2 * m + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    d[0] /= np.sqrt(2.0)
    d = np.ascontiguousarray(d.T, dtype=np.float32)
    d.flags.writeable = False
    return d


# ---------------------------------------------------------------------------------
# The maths, in (n_frames, ...) layout throughout.


class _LogMel:
    """Consumes consecutive sample blocks; keeps the log-mel spectrogram, block by block.

    Frames as ``librosa.stft(center=True, pad_mode="constant")``: frame ``t`` covers samples
    ``t * hop - n_fft // 2`` ... ``+ n_fft``, zeros outside the signal, and there are
    ``1 + n_samples // hop`` of them. Only the samples of frames not yet computed are kept
    (less than ``n_fft + hop`` plus the latest block), so the audio is never held whole. The
    spectra are computed :data:`_BLOCK_FRAMES` frames at a time; what is kept is the
    ``10 log10`` mel power (``(n_frames, n_mels)`` float32, not yet clipped: the 80 dB floor
    needs the whole recording's maximum) and, for the VAD, each frame's energy in dB.
    """

    def __init__(self, config: FeatureConfig):
        self.config = config
        self.n_fft, self.hop = config.n_fft, config.hop_length
        self.pad = self.n_fft // 2
        self.window = _window(self.n_fft, config.win_length)
        self.basis_t = _mel_basis(config.sample_rate, self.n_fft, config.n_mels, config.fmin, config.fmax).T
        self.buf = np.zeros(self.pad, dtype=np.float32)  # samples from absolute index buf_start
        self.buf_start = -self.pad
        self.n_samples = 0
        self.n_done = 0  # frames computed
        self.chunks = []  # log-mel chunks, (rows, n_mels) float32; the last one filled up to `fill`
        self.fill = 0
        self.energy = [] if config.vad else None
        self.vmax = -np.inf

    def push(self, y: np.ndarray) -> None:
        if y.size:
            self.buf = np.concatenate((self.buf, y)) if self.buf.size else y
            self.n_samples += y.size
            self._frames(last=False)

    def _frames(self, last: bool) -> None:
        n_fft, hop = self.n_fft, self.hop
        end = self.buf_start + self.buf.size  # absolute index after the last sample held
        n_avail = (end - n_fft + self.pad) // hop + 1  # frames whose samples are all here
        # Whole blocks only until the end: the blocks (hence every float32 rounding) are then
        # the same however the samples arrive, so block-wise == whole-file bit for bit.
        n_avail -= n_avail % _BLOCK_FRAMES
        if last:
            n_avail = 1 + self.n_samples // hop
        while self.n_done < n_avail:
            f0 = self.n_done
            f1 = min(f0 + _BLOCK_FRAMES, n_avail)
            a = f0 * hop - self.pad - self.buf_start
            b = (f1 - 1) * hop - self.pad + n_fft - self.buf_start
            seg = self.buf[a:b]
            if seg.size < b - a:  # only at the end: zeros after the signal
                seg = np.concatenate((seg, np.zeros(b - a - seg.size, np.float32)))
            frames = np.lib.stride_tricks.sliding_window_view(seg, n_fft)[::hop]
            spec = scipy.fft.rfft(frames * self.window, axis=-1)
            power = np.square(spec.real)
            power += np.square(spec.imag)
            mel = self._rows(f1 - f0)
            np.matmul(power, self.basis_t, out=mel)
            if self.energy is not None:
                e = mel.sum(axis=1)
                np.maximum(e, _AMIN, out=e)
                self.energy.append(10.0 * np.log10(e))
            np.maximum(mel, _AMIN, out=mel)
            np.log10(mel, out=mel)
            mel *= 10.0
            self.vmax = max(self.vmax, float(mel.max()))
            self.n_done = f1
        keep_from = self.n_done * hop - self.pad - self.buf_start
        if keep_from > 0:
            self.buf = self.buf[keep_from:].copy() if keep_from < self.buf.size else np.zeros(0, np.float32)
            self.buf_start += keep_from

    def _rows(self, n: int) -> np.ndarray:
        """The next ``n`` rows of log-mel storage (chunks of 256 doubling to 16384 rows).

        Blocks of ``_BLOCK_FRAMES`` frames start at multiples of it, so one never straddles
        two chunks; a few large chunks instead of thousands of small arrays keep the
        allocator from fragmenting on long recordings.
        """
        if not self.chunks or self.fill + n > self.chunks[-1].shape[0]:
            size = _CHUNK_FRAMES if not self.chunks else 2 * self.chunks[-1].shape[0]
            size = max(n, min(size, _CHUNK_FRAMES_MAX))
            if self.chunks:
                self.chunks[-1] = self.chunks[-1][:self.fill]
            self.chunks.append(np.empty((size, self.config.n_mels), dtype=np.float32))
            self.fill = 0
        out = self.chunks[-1][self.fill:self.fill + n]
        self.fill += n
        return out

    def finish(self):
        """Compute the last frames (zeros after the signal). Returns the number of frames."""
        self._frames(last=True)
        self.buf = None
        if self.chunks:
            self.chunks[-1] = self.chunks[-1][:self.fill]
        return self.n_done


def _delta_into(static: np.ndarray, out: np.ndarray, width: int, order: int) -> None:
    """``out[:] = librosa.feature.delta(static, width=width, order=order, axis=0)``.

    ``mode="interp"`` when there are at least ``width`` frames (the first and last
    ``width // 2`` outputs repeat the nearest interior one, which is what the edge
    polynomial fit gives here), else ``mode="nearest"`` (edge frames repeated). Works on
    column views, in row blocks so that temporaries stay small for long recordings.
    """
    n = static.shape[0]
    h = width // 2
    w = _delta_weights(width, order)
    if n < width:
        idx = np.clip(np.arange(n)[:, None] + np.arange(-h, h + 1)[None, :], 0, n - 1)
        out[...] = np.einsum("tjc,j->tc", static[idx], w)
        return
    step = 1 << 14
    for a in range(h, n - h, step):
        b = min(a + step, n - h)
        acc = w[0] * static[a - h:b - h]
        for j in range(1, width):
            acc += w[j] * static[a - h + j:b - h + j]
        out[a:b] = acc
    out[:h] = out[h]
    out[n - h:] = out[n - h - 1]


def _sdc_into(static: np.ndarray, out: np.ndarray, config: FeatureConfig) -> None:
    """Shifted delta cepstra N-d-P-k of the first ``sdc_n`` static columns into ``out``.

    ``out[t, i*N:(i+1)*N] = c[t + i*P + d] - c[t + i*P - d]`` for ``i = 0 .. k-1``,
    frame indices clamped to ``[0, n_frames - 1]`` (edge frames repeated).
    """
    n_frames = static.shape[0]
    N, d, P, k = config.sdc_n, config.sdc_d, config.sdc_p, config.sdc_k
    c = static[:, :N]
    t = np.arange(n_frames)
    for i in range(k):
        plus = np.minimum(t + (i * P + d), n_frames - 1)
        minus = np.clip(t + (i * P - d), 0, n_frames - 1)
        np.subtract(c[plus], c[minus], out=out[:, i * N:(i + 1) * N])


def _vad_mask(energy_db: np.ndarray, threshold_db: float) -> np.ndarray:
    """Frames within ``threshold_db`` of the loud reference; never none (see the module docs)."""
    ref = float(np.percentile(energy_db, _VAD_REF_PERCENTILE))
    keep = energy_db >= ref - threshold_db
    n_min = min(energy_db.size, _VAD_MIN_FRAMES)
    if keep.sum() < n_min:
        keep[np.argsort(energy_db, kind="stable")[energy_db.size - n_min:]] = True
    return keep


def _compact_rows(X: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``X[keep]`` without a second full copy of ``X``: rows moved forward in blocks.

    The kept rows are returned as a view of ``X`` when they are most of it, else copied so
    the rest of ``X`` can be freed. (``ndarray.resize(refcheck=False)`` would free the tail
    in place, but leaves any other view of ``X`` pointing at freed memory.)
    """
    k = 0
    step = 1 << 14
    for a in range(0, X.shape[0], step):
        rows = X[a:a + step][keep[a:a + step]]  # a copy of at most one block
        X[k:k + rows.shape[0]] = rows
        k += rows.shape[0]
    return X[:k] if 4 * k >= 3 * X.shape[0] else X[:k].copy()


def _cmvn(X: np.ndarray, mode: str, window: int = 0) -> np.ndarray:
    """Mean (and variance) normalisation of every column, in place."""
    if mode == "none" or X.shape[0] == 0:
        return X
    if mode == "sliding":
        if X.shape[0] > window:
            return _sliding_cmvn(X, window)
        mode = "utterance"  # the window holds the whole recording
    mean = X.mean(axis=0, dtype=np.float64)
    X -= mean.astype(np.float32)
    if mode == "utterance":
        sumsq = np.zeros(X.shape[1])
        for i in range(0, X.shape[0], 1 << 14):  # float64 squares in blocks, not a full copy
            sumsq += np.square(X[i:i + (1 << 14)], dtype=np.float64).sum(axis=0)
        std = np.sqrt(sumsq / X.shape[0])
        scale = np.where(std > _STD_FLOOR, std, 1.0)
        X *= (1.0 / scale).astype(np.float32)
    return X


def _sliding_cmvn(X: np.ndarray, window: int) -> np.ndarray:
    """Mean and variance over a ``window``-frame window around each frame, in place.

    Frame ``t`` uses frames ``a .. a + window - 1`` with ``a = t - window // 2`` clamped to
    ``[0, n_frames - window]``: centred, shifted inwards at the edges so that every frame
    sees a full window (as Kaldi's ``apply-cmvn-sliding --center``). Done in row blocks
    with float64 running sums; a block is written back only once no later block reads it.
    """
    n, D = X.shape
    half = window // 2
    step = max(_CMVN_BLOCK_FRAMES, window)
    pending = None
    for r0 in range(0, n, step):
        r1 = min(r0 + step, n)
        starts = np.clip(np.arange(r0, r1) - half, 0, n - window)
        lo, hi = int(starts[0]), int(starts[-1]) + window
        block = X[lo:hi].astype(np.float64)
        s1 = np.zeros((hi - lo + 1, D))
        np.cumsum(block, axis=0, out=s1[1:])
        np.square(block, out=block)
        s2 = np.zeros((hi - lo + 1, D))
        np.cumsum(block, axis=0, out=s2[1:])
        a = starts - lo
        mean = (s1[a + window] - s1[a]) / window
        var = (s2[a + window] - s2[a]) / window - np.square(mean)
        std = np.sqrt(np.maximum(var, 0.0))
        scale = np.where(std > _STD_FLOOR, std, 1.0)
        out = ((X[r0:r1] - mean) / scale).astype(np.float32)
        if pending is not None:
            X[pending[0]:pending[0] + pending[1].shape[0]] = pending[1]
        pending = (r0, out)
    if pending is not None:
        X[pending[0]:pending[0] + pending[1].shape[0]] = pending[1]
    return X


def _features(logmel: _LogMel, config: FeatureConfig, return_frames: bool):
    """Assemble ``X`` (and the kept frame indices) from a finished :class:`_LogMel`."""
    n_frames = logmel.n_done
    n_mfcc = config.n_mfcc
    X = np.empty((n_frames, config.n_features), dtype=np.float32)
    dct = _dct_matrix(config.n_mels, config._n_cepstra)
    if not config.keep_c0:
        dct = dct[:, 1:]
    floor = logmel.vmax - _TOP_DB
    row = 0
    chunks = logmel.chunks
    logmel.chunks = []
    while chunks:  # clip at the whole recording's floor, DCT, free the chunk
        b = chunks.pop(0)
        np.maximum(b, floor, out=b)
        np.matmul(b, dct, out=X[row:row + b.shape[0], :n_mfcc])
        row += b.shape[0]
        del b
    static = X[:, :n_mfcc]
    for order in range(1, config.deltas + 1):
        _delta_into(static, X[:, order * n_mfcc:(order + 1) * n_mfcc], config.delta_width, order)
    if config.sdc:
        _sdc_into(static, X[:, (1 + config.deltas) * n_mfcc:], config)
    del static
    frames = None
    if config.vad:
        keep = _vad_mask(np.concatenate(logmel.energy), config.vad_threshold_db)
        logmel.energy = None
        if not keep.all():
            X = _compact_rows(X, keep)
        if return_frames:
            frames = np.flatnonzero(keep)
    if return_frames and frames is None:
        frames = np.arange(n_frames)
    _cmvn(X, config.cmvn, config.cmvn_window_frames)
    if not np.isfinite(X).all():  # only reachable with absurd amplitudes (> ~1e15)
        raise ParameterError("y gave non-finite features; its amplitude is far outside [-1, 1]")
    return (X, frames) if return_frames else X


def _check_config(config):
    if not isinstance(config, FeatureConfig):
        raise ParameterError(f"config must be a FeatureConfig, got {type(config).__name__}")


def extract(y, config, *, return_frames=False):
    """Feature frames of one recording.

    Parameters
    ----------
    y : array_like, shape (n_samples,)
        Mono samples at ``config.sample_rate`` (as :func:`audiogmm.audio.load`
        returns them). Converted to float32.
    config : FeatureConfig
    return_frames : bool, default False
        Also return the index of each kept frame (frame ``t`` is centred on sample
        ``t * config.hop_length``); without VAD it is ``arange(n_frames)``.

    Returns
    -------
    X : np.ndarray, float32, shape (n_frames, config.n_features)
        ``n_frames = 1 + n_samples // config.hop_length`` (fewer with ``vad=True``).
        Columns are ``[mfcc, delta, delta-delta, sdc]`` (as configured); always finite.
    frames : np.ndarray of int, shape (n_frames,)
        Only with ``return_frames=True``.

    Raises
    ------
    ParameterError
        ``config`` is not a FeatureConfig, or ``y`` is not 1-D, is empty, is not
        real-valued or holds NaN/inf.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> extract(y, FeatureConfig()).shape
    (101, 60)
    >>> extract(y, FeatureConfig(n_mfcc=7, deltas=0, sdc=True)).shape[1]  # 7 MFCC + 7 x 7 SDC
    56
    """
    _check_config(config)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ParameterError(
            f"y must be 1-D mono samples, got shape {y.shape}; load with mono=True"
        )
    if y.size == 0:
        raise ParameterError("y must hold at least one sample, got 0")
    if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
        raise ParameterError(f"y must be real-valued samples, got dtype {y.dtype}")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.isfinite(y).all():
        raise ParameterError("y must be finite, but it holds NaN or infinite samples")
    lm = _LogMel(config)
    lm.push(y)
    lm.finish()
    return _features(lm, config, return_frames)


def extract_file(path, config, *, return_frames=False):
    """Decode a recording block by block (:func:`audiogmm.audio.stream`) and extract.

    The audio is never held whole: the result equals ``extract(audio.load(path,
    sr=config.sample_rate), config)`` (the same samples, the same frames; see the
    module notes) with memory bounded by the feature matrix.

    Parameters
    ----------
    path : str or path-like
    config : FeatureConfig
    return_frames : bool, default False
        Also return the kept frames' indices, as :func:`extract`.

    Returns
    -------
    X : np.ndarray, float32, shape (n_frames, config.n_features)
    frames : np.ndarray of int, shape (n_frames,)
        Only with ``return_frames=True``.

    Raises
    ------
    AudioLoadError
        The file cannot be decoded (see :func:`audiogmm.audio.load`) or yields no
        frames.
    ParameterError
        ``config`` is not a FeatureConfig.

    Examples
    --------
    >>> X = extract_file("speech.wav", FeatureConfig.preset("speech"))  # doctest: +SKIP
    """
    _check_config(config)
    lm = _LogMel(config)
    for y in audio.stream(path, sr=config.sample_rate):
        lm.push(y)
    lm.finish()
    try:
        out = _features(lm, config, return_frames)
    except ParameterError as exc:
        raise AudioLoadError(path, str(exc)) from None
    X = out[0] if return_frames else out
    if X.shape[0] == 0:
        raise AudioLoadError(path, "the recording yields no feature frames; it is too short")
    return out


def normalize(X, config):
    """Apply ``config.cmvn`` to feature frames, in place, and return them.

    For frames extracted with ``cmvn="none"`` and cut afterwards (clips of a long
    recording, :func:`audiogmm.evaluation.cut_clips`): each clip is then normalised on
    its own, as if it had been extracted alone.

    Parameters
    ----------
    X : np.ndarray, float32, shape (n_frames, n_features)
    config : FeatureConfig

    Returns
    -------
    X : np.ndarray
        The same array.
    """
    _check_config(config)
    return _cmvn(X, config.cmvn, config.cmvn_window_frames)


def extract_excerpts(path, config, *, n_excerpts, seconds):
    """Features of excerpts spread over a long recording, or of the whole of a short one.

    A recording longer than ``n_excerpts * seconds`` is cut into ``n_excerpts`` equal parts
    and an excerpt of ``seconds`` is taken from the middle of each
    (:func:`audiogmm.audio.load_excerpts`); each excerpt is turned into features on its own
    (so per-recording CMVN normalises each excerpt as if it were a clip) and the frames are
    stacked. A shorter recording gives exactly :func:`extract_file`'s result.

    Parameters
    ----------
    path : str or path-like
    config : FeatureConfig
    n_excerpts : int >= 1
    seconds : float
        At least one analysis window (``config.win_ms`` / 1000) and at least
        :data:`audiogmm.audio.MIN_EXCERPT_SECONDS`: a shorter excerpt holds no full frame.

    Returns
    -------
    X : np.ndarray, float32, shape (n_frames, config.n_features)

    Raises
    ------
    AudioLoadError
        The file cannot be decoded or yields no frames.
    ParameterError
        ``seconds`` is shorter than one analysis window (checked before the file is read).
    """
    _check_config(config)
    if _is_real(seconds) and seconds < config.win_ms / 1000.0:
        raise ParameterError(
            f"excerpt seconds must be >= one analysis window (win_ms={config.win_ms:g} ms), got {seconds!r}; "
            "use longer excerpts, or none to score whole recordings")
    excerpts = audio.load_excerpts(path, sr=config.sample_rate, n_excerpts=n_excerpts, seconds=seconds)
    if excerpts is None:
        return extract_file(path, config)
    parts = []
    for y in excerpts:
        try:
            parts.append(extract(y, config))
        except ParameterError as exc:
            raise AudioLoadError(path, str(exc)) from None
    X = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if X.shape[0] == 0:
        raise AudioLoadError(path, "the recording yields no feature frames; it is too short")
    return X
