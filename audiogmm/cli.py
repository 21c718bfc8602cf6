"""The ``audiogmm`` command line: parse options, call :mod:`audiogmm.pipeline`, render results.

Results go to stdout (table, CSV or JSON); progress, warnings and errors to stderr.
Exit codes: 0 success, 1 error (unreadable model, empty class, nothing usable...), 2 usage
error (bad option, missing path, invalid parameter value).
"""

import csv
import functools
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import click

from .exceptions import AudiogmmError, ParameterError
from .recipes import AUTO_MUSIC_SECONDS, DEFAULT_PARAMS, PRESET_HELP

EPILOG_ROOT = """\b
Examples:
  audiogmm demo
  audiogmm train SONGS/ -o genres.agmm
  audiogmm predict genres.agmm new1.ogg new_folder/ --format csv
  audiogmm evaluate genres.agmm TEST/
  audiogmm info genres.agmm
"""


# -- plumbing -------------------------------------------------------------------------------
def _handle_errors(func):
    """Translate audiogmm's errors: ParameterError -> usage error (2), others -> Error (1)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ParameterError as exc:
            raise click.UsageError(str(exc), click.get_current_context()) from None
        except AudiogmmError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            for progress in list(_LIVE):
                progress.close()
            click.echo("Interrupted (Ctrl-C).", err=True)
            raise click.exceptions.Exit(130) from None
        finally:
            for progress in list(_LIVE):
                progress.close()

    return wrapper


#: Renderers alive in this process, closed on Ctrl-C so the message starts on a clean line.
_LIVE = []

#: What a stage counts, for the bar's rate (files unless named here or an EM stage).
_UNITS = {"folds": "fold", "training": "class"}


class _Progress:
    """Render ``progress(stage, done, total)`` calls on stderr; warnings go through :meth:`write`.

    On a terminal each stage is a tqdm bar with rate and ETA (several at once when classes are
    fitted in parallel), redrawn in place; warnings are printed above the bars. Elsewhere (a
    pipe, a log file, CliRunner) each stage prints one line when it ends. Nothing with ``quiet``.

    tqdm rather than click.progressbar or rich: click's bar wraps one iterable and cannot draw
    several bars or print above them, and rich is a large dependency for one bar; tqdm is small,
    widely kept, thread-safe and has ``tqdm.write`` for lines above the bars.
    """

    def __init__(self, quiet, stream=None, tty=None):
        import threading

        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.tty = _isatty(self.stream) if tty is None else tty
        self.bars = {}
        self.started = {}
        self.lock = threading.RLock()
        self._native = _NativeStderr() if quiet and stream is None else None
        _LIVE.append(self)

    def __call__(self, stage, done, total):
        if self.quiet:
            return
        with self.lock:
            if self.tty:
                self._draw(stage, done, total)
            else:
                start = self.started.setdefault(stage, time.monotonic())
                if done >= total:
                    del self.started[stage]
                    self.write(f"{stage}: {done}/{total} ({time.monotonic() - start:.1f} s)")

    def _draw(self, stage, done, total):
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            unit = "it" if stage.startswith("EM ") else _UNITS.get(stage, "file")
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit=unit, file=self.stream,
                                          dynamic_ncols=True, mininterval=0.1, leave=True)
        if bar.total != total:
            bar.total = total
        if done >= total:
            bar.n = done
            bar.close()
            del self.bars[stage]
        elif done < bar.n:  # a stage restarted (the next candidate K of -k auto)
            bar.reset(total)
            bar.update(done)
        else:
            bar.update(done - bar.n)

    def write(self, line):
        """Print ``line`` on stderr, above the bars (on a terminal)."""
        if self.quiet:
            return
        with self.lock:
            if self.bars:
                from tqdm import tqdm

                tqdm.write(line, file=self.stream)
            else:
                self.stream.write(line + "\n")
                self.stream.flush()

    def close(self):
        """Close the bars still drawn (after an error or Ctrl-C), so what follows starts a line."""
        with self.lock:
            for bar in self.bars.values():
                bar.close()
            self.bars.clear()
        if self._native is not None:
            self._native.restore()
            self._native = None
        if self in _LIVE:
            _LIVE.remove(self)


class _NativeStderr:
    """Under ``-q``, send what C libraries write to file descriptor 2 to the null device.

    libmpg123 (inside libsndfile) prints ``Note: Illegal Audio-MPEG-Header ...`` for damaged MP3
    frames straight to fd 2, and no flag reaches it through soundfile. So fd 2 itself is pointed
    at the null device, once, in the main thread before any work (a per-call redirection would race
    with the decoding threads), while ``sys.stderr`` moves to a duplicate of the real stderr:
    everything Python prints (click's error messages, tracebacks) still arrives. Worker processes
    started meanwhile inherit the silenced fd 2. Nothing is done when ``sys.stderr`` is not fd 2
    (CliRunner, pytest's capture): there is no native stream of ours to silence.
    """

    def __init__(self):
        self._saved = self._stream = self._previous = None
        try:
            if sys.stderr is None or sys.stderr.fileno() != 2:
                return
            sys.stderr.flush()
            saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
        except (AttributeError, OSError, ValueError):
            return
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        self._saved, self._previous = saved, sys.stderr
        self._stream = open(saved, "w", encoding=sys.stderr.encoding, errors=sys.stderr.errors,
                            buffering=1, closefd=False)
        sys.stderr = self._stream

    def restore(self):
        """Point fd 2 and ``sys.stderr`` back at the real stderr (idempotent)."""
        if self._saved is None:
            return
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, 2)
        os.close(self._saved)
        if sys.stderr is self._stream:
            sys.stderr = self._previous
        self._stream.close()
        self._saved = None


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _start(quiet):
    """The progress renderer of a command, with warnings shown as ``Warning: ...`` above its bars."""
    progress = _Progress(quiet)

    def show(message, category, filename, lineno, file=None, line=None):
        progress.write(f"Warning: {message}")

    warnings.showwarning = show
    warnings.simplefilter("always" if not quiet else "ignore")
    return progress


def _check_jobs_option(ctx, param, value):
    if value == 0:
        raise click.BadParameter("must be a non-zero int (-1: all cores, -2: all but one).")
    return value


def _common(func):
    """Options every command that reads audio shares: --jobs and --quiet."""
    func = click.option("-q", "--quiet", is_flag=True, help="No progress or warnings on stderr.")(func)
    func = click.option(
        "-j", "--jobs", type=int, default=1, show_default=True, callback=_check_jobs_option,
        help="Worker processes for feature extraction (-1: all cores, -2: all but one).",
    )(func)
    return func


def _filters(func):
    func = click.option(
        "--exclude", multiple=True, metavar="GLOB",
        help="Leave out recordings whose path (relative to the folder or manifest given) matches; repeatable. "
             "E.g. '*_[0-4].wav'.",
    )(func)
    func = click.option(
        "--include", multiple=True, metavar="GLOB",
        help="Use only recordings whose path (relative to the folder or manifest given) matches; repeatable.",
    )(func)
    return func


#: Every command's --format: the same three choices everywhere.
FORMATS = ("table", "csv", "json")


def _format_option(func):
    return click.option(
        "-f", "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
        help="Output on stdout: an aligned table, CSV (one header row) or JSON.",
    )(func)


def _excerpt_options(func):
    func = click.option(
        "--excerpt-seconds", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
        help="Length of each excerpt of a long recording.",
    )(func)
    func = click.option(
        "--excerpts", "n_excerpts", type=click.IntRange(min=0), default=4, show_default=True,
        help="A recording longer than N x --excerpt-seconds is scored on N excerpts, one from the middle "
             "of each of N equal parts (bounded work per track); 0: always whole recordings.",
    )(func)
    return func


_min_confidence_option = click.option(
    "--min-confidence", type=click.FloatRange(0, 1), default=None, metavar="P",
    help="Label a recording 'unknown' when its confidence (calibrated top probability) is below P: the kept "
         "ones are then expected to be right at least a fraction P of the time (see the coverage table of "
         "'audiogmm evaluate').",
)


def _load(model_path):
    from .persistence import load_model

    return load_model(model_path)


def _table(rows, headers, align=None):
    """Render rows as an aligned text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or ["<"] + [">"] * (len(headers) - 1)
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- the group ------------------------------------------------------------------------------
@click.group(epilog=EPILOG_ROOT, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="audiogmm", prog_name="audiogmm")
def main():
    """Classify audio with one Gaussian mixture model per class.

    Train on a folder with one sub-folder per label (or a path,label manifest), then label new
    recordings by highest mean log-likelihood. Run 'audiogmm demo' to see it work on a
    generated corpus, and 'audiogmm COMMAND --help' for each command.
    """


# -- train ----------------------------------------------------------------------------------
def _feature_options(func):
    opts = [
        click.option("--preset", type=click.Choice(list(PRESET_HELP)), default=None,
                     help="A recipe, features and classifier together; the options override it one by one. "
                          + "; ".join(PRESET_HELP.values()) + f". Without --preset: speech when the recordings' "
                          f"median duration is under {AUTO_MUSIC_SECONDS:g} s, else music (said on stderr)."),
        click.option("--sample-rate", type=click.IntRange(min=1000), default=None, help="Rate audio is resampled to, in Hz [16000]."),
        click.option("--n-mfcc", type=int, default=None, help="MFCC coefficients per frame [20]."),
        click.option("--n-mels", type=int, default=None, help="Mel bands [the preset's: 40 speech, 128 music]."),
        click.option("--win-ms", type=float, default=None, help="Analysis window, in ms [25]."),
        click.option("--hop-ms", type=float, default=None, help="Hop between frames, in ms [10]."),
        click.option("--deltas", type=click.IntRange(0, 2), default=None, help="0: MFCC only, 1: +delta, 2: +delta-delta [2]."),
        click.option("--cmvn", type=click.Choice(["none", "mean", "utterance", "sliding"]), default=None,
                     help="Normalisation: none, mean only, mean and variance per recording, or over a "
                          "sliding window [utterance]."),
        click.option("--cmvn-window", type=float, default=None, metavar="SECONDS",
                     help="Window of --cmvn sliding, in seconds [3]."),
        click.option("--vad/--no-vad", default=None,
                     help="Drop frames quieter than --vad-threshold-db below the recording's loud end "
                          "[off]."),
        click.option("--vad-threshold-db", type=float, default=None, metavar="DB",
                     help="VAD: keep frames within this many dB of the 99th-percentile frame energy [40]."),
        click.option("--sdc/--no-sdc", default=None,
                     help="Append shifted delta cepstra N-d-P-k [off]."),
        click.option("--sdc-n", type=int, default=None, help="SDC: static coefficients used (N) [7]."),
        click.option("--sdc-d", type=int, default=None, help="SDC: delta spread in frames (d) [1]."),
        click.option("--sdc-p", type=int, default=None, help="SDC: shift between blocks in frames (P) [3]."),
        click.option("--sdc-k", type=int, default=None, help="SDC: blocks stacked (k) [7]."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _cache_option(func):
    return click.option(
        "--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        envvar="AUDIOGMM_CACHE", show_envvar=True, metavar="STORE",
        help="Feature cache folder: features are read from it when present and written to it "
             "otherwise (keyed on each file's path, size and mtime plus the feature options).",
    )(func)


def _scheduler_option(func):
    return click.option(
        "--scheduler", default=None, metavar="ADDRESS|local:N",
        help="Run on a Dask cluster: the ADDRESS of its scheduler (tcp://HOST:PORT), or local:N to start N "
             "local worker processes (needs pip install \"audiogmm[dask]\"). Results are the same as without.",
    )(func)


def _feature_config(preset, median_seconds=None, **overrides):
    from .features import FeatureConfig
    from .recipes import get_recipe

    overrides = {k: v for k, v in overrides.items() if v is not None}
    base = get_recipe(preset, median_seconds=median_seconds).features
    return FeatureConfig.from_dict({**base.to_dict(), **overrides}) if overrides else base


TRAIN_EPILOG = """\b
Examples:
  audiogmm train SONGS/ -o genres.agmm --preset music --n-components 16
  audiogmm train speakers.csv -o spk.agmm --preset speech --jobs 2
  audiogmm train ../shared/data/speaker/MANIFEST.tsv -o spk.agmm --exclude '*_[0-4].wav'
  audiogmm train speakers.csv -o spk.agmm --method ubm -k 64 --relevance-factor 16
  audiogmm train ../shared/data/soundtrack/MANIFEST.tsv -o st.agmm --preset music --clip 30
  audiogmm train big_corpus.tsv -o lid.agmm --method ubm -k 256 --cache STORE --out-of-core
  audiogmm train SONGS/ -o genres.agmm --scheduler local:2   # EM as Dask tasks (same model)
"""


class _IntOrAuto(click.ParamType):
    """An int, or the word 'auto' (``--n-components auto``)."""

    name = "INTEGER|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "auto":
            return value
        try:
            return int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an int or 'auto'", param, ctx)


def _model_options(func):
    """Options of the training recipe, shared by ``train`` and ``evaluate`` with a protocol."""
    opts = [
        click.option("--method", type=click.Choice(["per-class", "ubm"]), default=None,
                     help="per-class: one GMM per class by EM; ubm: a universal background model with "
                          "MAP-adapted class models, scored by log-likelihood ratio [the preset's]."),
        click.option("-k", "--n-components", type=_IntOrAuto(), default=None,
                     help="Mixture components per class (per-class) or of the UBM (ubm) [the preset's; "
                          "else 32 per-class, 128 ubm]. per-class also takes 'auto': each class's "
                          "K chosen by held-out likelihood over 1, 2, 4, ..., 64 (stops when doubling gains too "
                          "little)."),
        click.option("--max-iter", type=int, default=None, help=f"Most EM iterations per mixture [{DEFAULT_PARAMS['max_iter']}]."),
        click.option("--tol", type=float, default=None,
                     help=f"Stop EM when the mean log-likelihood gains less [{DEFAULT_PARAMS['tol']:g}]."),
        click.option("--reg-covar", type=float, default=None,
                     help=f"Floor added to every variance [{DEFAULT_PARAMS['reg_covar']:g}]."),
        click.option("--n-init", type=int, default=None,
                     help=f"EM restarts per mixture; the best is kept [{DEFAULT_PARAMS['n_init']}]."),
        click.option("--priors", type=click.Choice(["uniform", "empirical"]), default=None,
                     help="Class priors: equal, or proportional to training recordings [uniform]."),
        click.option("--relevance-factor", type=float, default=None,
                     help="ubm: MAP relevance factor r, alpha = n / (n + r) [the preset's; 16]."),
        click.option("--top-c", type=click.IntRange(min=0), default=None,
                     help=f"ubm: score each frame's class models on its top-C UBM components (0: all) "
                          f"[{DEFAULT_PARAMS['top_c']}]."),
        click.option("--adapt", default=None, metavar="PARTS",
                     help="ubm: parameters MAP adapts, a comma-separated subset of means,weights,variances "
                          "[means,weights]."),
        click.option("--clip", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
                     help="Cut recordings into clips of SECONDS (a shorter tail is dropped) and train or test on "
                          "the clips, each an item; with a MODEL, evaluate it on clips of the test recordings."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Random seed (an int >= 0): same data and seed, same model."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _recipe(preset, feature_overrides, choice=None, **params):
    """The recipe of ``--preset`` with the explicit options over it (features and classifier).

    Without ``--preset``, ``choice`` (from :func:`_default_choice`) names the base recipe.
    """
    from .recipes import get_recipe

    seconds = None if choice is None else choice["median_seconds"]
    recipe = get_recipe(preset, median_seconds=seconds, **params)
    return recipe.replace(features=_feature_config(preset, seconds, **feature_overrides))


def _default_choice(preset, data, include, exclude, progress):
    """Without ``--preset``: which preset the data get (pipeline.default_choice), said on stderr."""
    from . import pipeline

    if preset is not None:
        return None
    choice = pipeline.default_choice(data, include=include, exclude=exclude)
    progress.write(f"No --preset: {choice['rule']}. Give --preset speech or --preset music to choose.")
    return choice


@main.command(epilog=TRAIN_EPILOG)
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Model file to write (replaced atomically if it exists).")
@_model_options
@_feature_options
@_filters
@_format_option
@_cache_option
@click.option("--out-of-core", is_flag=True, default=False,
              help="Train from the feature store (--cache) without loading the features into memory: for "
                   "corpora larger than RAM; the same model as without it.")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="Fit the probabilities on out-of-fold scores (3 more fits), so that a confidence of 0.8 means "
                   "about 80 % right on new recordings; --no-calibrate keeps the plain softmax.")
@click.option("--group-by", default=None, metavar="COLUMN|REGEX",
              help="Calibration folds keep recordings sharing this key together (a manifest column such as "
                   "speaker, or a regular expression on the path), so confidence reflects new speakers or "
                   "tracks [each file].")
@_scheduler_option
@_common
@_handle_errors
def train(data, output, method, n_components, max_iter, tol, reg_covar, n_init, priors, relevance_factor, top_c,
          adapt, clip, seed, preset, include, exclude, fmt, cache_dir, out_of_core, calibrate, group_by, scheduler,
          jobs, quiet, **feature_overrides):
    """Train a model from DATA: a folder of <label>/ sub-folders, or a path,label manifest."""
    from . import pipeline

    if out_of_core and cache_dir is None:
        raise click.UsageError("--out-of-core needs --cache STORE (or AUDIOGMM_CACHE): the features are read "
                               "from the feature store")
    progress = _start(quiet)
    choice = _default_choice(preset, data, include, exclude, progress)
    recipe = _recipe(preset, feature_overrides, choice, method=method, n_components=n_components,
                     max_iter=max_iter, tol=tol, reg_covar=reg_covar, n_init=n_init, priors=priors,
                     relevance_factor=relevance_factor, top_c=top_c, adapt=adapt)
    model = pipeline.train(
        data, recipe, clip=clip, include=include, exclude=exclude,
        n_jobs=jobs, random_state=seed, cache_dir=cache_dir, progress=progress, out_of_core=out_of_core, scheduler=scheduler,
        calibrate=calibrate, group_by=group_by,
    )
    if choice is not None:  # the recipe came chosen from here: say so in the model, as train() does
        model.summary["default_choice"] = choice
    model.save(output)
    note = _calibration_note(model.summary.get("calibration"), len(model.classes))
    if note:
        progress.write(f"Note: {note}")
    s = model.summary
    if fmt == "json":
        click.echo(json.dumps({"model": str(output), "classes": model.classes, "training": s}, indent=2, default=str))
    elif fmt == "csv":
        _write_csv([c.replace(" ", "_") for c in _CLASS_COLUMNS], _class_rows(model))
    else:
        click.echo(f"Trained {len(model.classes)} classes on {s['n_recordings']} recordings "
                   f"({s['n_skipped']} skipped) -> {output}")
        click.echo(_class_table(model))


#: Fewer held-out recordings per class than this and ``train`` says the calibration is rough.
FEW_HELD_OUT_PER_CLASS = 10


def _calibration_note(info, n_classes):
    """A sentence when the calibration rests on few held-out recordings, else None."""
    if not isinstance(info, dict) or info.get("kind") != "temperature":
        return None
    n = int(info.get("n_held_out") or 0)
    if n >= FEW_HELD_OUT_PER_CLASS * n_classes:
        return None
    return (f"the probabilities were calibrated on only {n} held-out recording(s) for {n_classes} classes "
            f"(fewer than {FEW_HELD_OUT_PER_CLASS} a class): confidences are rough. Check them on labelled "
            f"recordings the model has not seen ('audiogmm evaluate MODEL DATA' prints a coverage table) before "
            f"choosing --min-confidence.")


_CLASS_COLUMNS = ["class", "recordings", "frames", "components", "converged", "iterations", "mean log-lik"]


def _class_table(model):
    """Per-class training facts as a text table."""
    return _table(_class_rows(model), _CLASS_COLUMNS)


def _class_rows(model):
    """Per-class training facts; for a UBM model, the UBM's EM facts first, classes marked MAP-adapted."""
    clf = model.classifier
    ubm = getattr(clf, "ubm_", None)
    rows = []
    if ubm is not None:
        rows.append(["(UBM)", int(clf.n_recordings_.sum()), int(clf.n_frames_.sum()), ubm.weights_.shape[0],
                     "yes" if ubm.converged_ else "no", ubm.n_iter_, f"{ubm.lower_bound_:.3f}"])
    for lab, g, n_rec, n_fr in zip(model.classes, clf.gmms_, clf.n_recordings_, clf.n_frames_):
        if ubm is not None:  # no EM of its own: MAP-adapted from the UBM
            rows.append([lab, n_rec, n_fr, g.weights_.shape[0], "MAP", "-", "-"])
        else:
            rows.append([lab, n_rec, n_fr, g.weights_.shape[0], "yes" if g.converged_ else "no", g.n_iter_,
                         f"{g.lower_bound_:.3f}"])
    return rows


# -- predict --------------------------------------------------------------------------------
PREDICT_EPILOG = """\b
Examples:
  audiogmm predict genres.agmm song.mp3
  audiogmm predict genres.agmm new_folder/ --format csv > labels.csv
  audiogmm predict spk.agmm a.wav b.wav --format json
  audiogmm predict lang.agmm podcast.ogg --segment 5     # a timeline, one label per 5 s
  audiogmm predict spk.agmm ../shared/data/speaker/MANIFEST.tsv --include '*_[0-4].wav' -f csv
"""


@main.command(epilog=PREDICT_EPILOG)
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_format_option
@_min_confidence_option
@click.option("--segment", type=float, default=None, metavar="SECONDS",
              help="Print a timeline per recording instead: start, end, label, confidence and class "
                   "probabilities of every SECONDS-long stretch.")
@_excerpt_options
@_filters
@_cache_option
@_common
@_handle_errors
def predict(model_path, paths, fmt, min_confidence, segment, n_excerpts, excerpt_seconds, include, exclude,
            cache_dir, jobs, quiet):
    """Label each recording in PATHS (audio files, folders searched recursively, or manifests)."""
    from . import pipeline

    progress = _start(quiet)
    model = _load(model_path)
    if segment is not None:
        audio, n_other = pipeline.find_inputs(paths, include=include, exclude=exclude)
        timelines, _ = pipeline.predict_segments(model, audio, segment, min_confidence=min_confidence,
                                                 n_jobs=jobs, cache_dir=cache_dir, progress=progress)
        _print_timelines(timelines, n_other, model.classes, fmt, quiet, paths)
        return
    preds, n_other = pipeline.predict(model, paths, min_confidence=min_confidence,
                                      excerpts=(n_excerpts, excerpt_seconds), include=include, exclude=exclude,
                                      n_jobs=jobs, cache_dir=cache_dir, progress=progress)
    if not preds:
        raise click.ClickException(f"no audio file found in {', '.join(map(str, paths))}")
    classes = model.classes
    if fmt == "json":
        click.echo(json.dumps({"summary": _prediction_counts(preds, n_other),
                               "predictions": [_prediction_dict(p, classes) for p in preds]}, indent=2))
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["path", "label", "confidence"] + [f"p_{c}" for c in classes] + ["error"])
        for p in preds:
            probs = [f"{x:.6f}" for x in p.probabilities] if p.probabilities is not None else [""] * len(classes)
            w.writerow([p.path, p.label or "", f"{p.confidence:.6f}" if p.label else ""] + probs + [p.error or ""])
    else:
        rows = [[p.path, p.label or "-", f"{p.confidence:.3f}" if p.label else "-"] for p in preds]
        headers, align = ["path", "label", "confidence"], ["<", "<", ">"]
        if any(p.error is not None for p in preds):  # the reason in a last column, not in the numbers
            rows = [r + [_one_line(p.error) if p.error is not None else ""] for r, p in zip(rows, preds)]
            headers, align = headers + ["error"], align + ["<"]
        click.echo(_table(rows, headers, align))
    _summarise_unreadable(preds, n_other, quiet, "labelled")


def _one_line(text, width=100):
    """``text`` on one line, cut to ``width`` characters (the full reason is in the CSV/JSON)."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _prediction_counts(preds, n_other):
    """The counts of a predict run: predicted (a class), unknown (below --min-confidence), unreadable, non-audio."""
    from .pipeline import UNKNOWN

    unreadable = sum(p.error is not None for p in preds)
    unknown = sum(p.error is None and p.label == UNKNOWN for p in preds)
    return {"n_files": len(preds), "predicted": len(preds) - unreadable - unknown, "unknown": unknown,
            "unreadable": unreadable, "non_audio": n_other}


def _print_timelines(timelines, n_other, classes, fmt, quiet, paths):
    if not timelines:
        raise click.ClickException(f"no audio file found in {', '.join(map(str, paths))}")
    if fmt == "json":
        click.echo(json.dumps([{
            "path": t.path, "duration": t.duration, "error": t.error,
            "segments": [{"start": s.start, "end": s.end, "label": s.label, "confidence": s.confidence,
                          "n_frames": s.n_frames,
                          "probabilities": None if s.probabilities is None
                          else dict(zip(classes, map(float, s.probabilities)))} for s in t.segments],
        } for t in timelines], indent=2))
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["path", "start", "end", "label", "confidence"] + [f"p_{c}" for c in classes] + ["error"])
        for t in timelines:
            if t.error is not None:
                w.writerow([t.path, "", "", "", ""] + [""] * len(classes) + [t.error])
            for s in t.segments:
                probs = [f"{x:.6f}" for x in s.probabilities] if s.probabilities is not None else [""] * len(classes)
                w.writerow([t.path, f"{s.start:.3f}", f"{s.end:.3f}", s.label or "",
                            f"{s.confidence:.6f}" if s.label else ""] + probs + [""])
    else:
        blocks = []
        for t in timelines:
            if t.error is not None:
                blocks.append(f"{t.path}: skipped ({t.error})")
                continue
            rows = [[f"{s.start:.2f}", f"{s.end:.2f}", s.label or "(silence)",
                     "-" if s.confidence is None else f"{s.confidence:.3f}"]
                    + ([f"{x:.3f}" for x in s.probabilities] if s.probabilities is not None else [""] * len(classes))
                    for s in t.segments]
            blocks.append(f"{t.path} ({t.duration:.2f} s)\n"
                          + _table(rows, ["start", "end", "label", "confidence", *classes],
                                   [">", ">", "<", ">"] + [">"] * len(classes)))
        click.echo("\n\n".join(blocks))
    _summarise_unreadable(timelines, n_other, quiet, "segmented")


def _summarise_unreadable(results, n_other, quiet, done):
    """Count line on stderr when files were skipped or passed over; error if none was read.

    ``results`` are Predictions or Timelines (``error`` set for unreadable recordings).
    """
    n_bad = sum(r.error is not None for r in results)
    if not quiet and (n_bad or n_other):
        click.echo(f"{len(results) - n_bad} {done}, {n_bad} skipped as unreadable, "
                   f"{n_other} non-audio file(s) passed over", err=True)
    if n_bad == len(results):
        raise click.ClickException("no recording could be read")


def _prediction_dict(p, classes):
    d = {"path": p.path, "label": p.label, "confidence": p.confidence, "n_frames": p.n_frames, "error": p.error}
    if p.probabilities is not None:
        d["probabilities"] = dict(zip(classes, map(float, p.probabilities)))
        d["scores"] = dict(zip(classes, map(float, p.scores)))
    return d


# -- evaluate -------------------------------------------------------------------------------
EVALUATE_EPILOG = """\b
Examples:
  audiogmm evaluate genres.agmm TEST/
  audiogmm evaluate spk.agmm ../shared/data/speaker/MANIFEST.tsv --include '*_[0-4].wav'
  audiogmm evaluate genres.agmm TEST/ --format json > report.json
  audiogmm evaluate st.agmm ../shared/data/soundtrack/MANIFEST.tsv --clip 30   # each 30-s clip an item
\b
Without a model: train and test by cross-validation, no group on both sides
  audiogmm evaluate ../shared/data/language/SPEAKERS.tsv --preset speech --group-by speaker_or_contributor
  audiogmm evaluate SONGS/ --preset music --cv 5 --group-by '^[^/]+/([^/]+)/' --format json > cv.json
  audiogmm evaluate ../shared/data/speaker/MANIFEST.tsv --preset speech --test '*_[0-4].wav' --method ubm
  audiogmm evaluate ../shared/data/soundtrack/MANIFEST.tsv --preset music --clip 30 --cv 3
"""


@main.command(epilog=EVALUATE_EPILOG)
@click.argument("sources", metavar="[MODEL] DATA", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--cv", "n_splits", type=click.IntRange(min=2), default=None, metavar="K",
              help="Without MODEL: K-fold cross-validation stratified by class [5].")
@click.option("--group-by", default=None, metavar="COLUMN|REGEX",
              help="Without MODEL: recordings sharing this key never straddle train and test: a manifest "
                   "column, or a regular expression on the path (its named or first group) [each file].")
@click.option("--test", "test_globs", multiple=True, metavar="GLOB",
              help="Without MODEL: a fixed split; recordings matching are the test set, the rest train. Repeatable.")
@click.option("--test-list", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Without MODEL: a fixed split; FILE lists the test recordings, one path a line.")
@click.option("--train-list", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="With --test/--test-list: the training recordings [all others].")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PNG",
              help="Also draw the confusion matrix and DET curve into PNG (needs matplotlib).")
@_model_options
@_feature_options
@_format_option
@_filters
@_cache_option
@_common
@_handle_errors
def evaluate(sources, n_splits, group_by, test_globs, test_list, train_list, plot, method, n_components, max_iter,
             tol, reg_covar, n_init, priors, relevance_factor, top_c, adapt, clip, seed, preset, fmt, include,
             exclude, cache_dir, jobs, quiet, **feature_overrides):
    """Score MODEL on labelled DATA, or (without MODEL) a training recipe on DATA by cross-validation.

    Reports accuracy, balanced accuracy, macro-F1, per-class precision/recall/F1, the confusion
    matrix, the equal error rate of one-vs-rest trials (--format json adds the DET curve) and
    calibration: expected calibration error, log-loss, Brier score and, per --min-confidence
    threshold, the share of recordings kept and their accuracy.
    """
    from . import pipeline

    progress = _start(quiet)
    if len(sources) > 2:
        raise click.UsageError("give DATA, or MODEL and DATA")
    if plot is not None:
        _check_matplotlib()
    protocol_opts = {"--cv": n_splits, "--group-by": group_by, "--test": test_globs or None,
                     "--test-list": test_list, "--train-list": train_list}
    if len(sources) == 2:
        recipe_opts = {"--method": method, "--n-components": n_components, "--max-iter": max_iter,
                       "--tol": tol, "--reg-covar": reg_covar, "--n-init": n_init, "--priors": priors,
                       "--relevance-factor": relevance_factor, "--top-c": top_c, "--adapt": adapt,
                       "--preset": preset}
        recipe_opts.update({"--" + k.replace("_", "-"): v for k, v in feature_overrides.items()})
        given = [name for name, v in {**protocol_opts, **recipe_opts}.items() if v is not None]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only without a MODEL "
                f"(cross-validating a recipe on DATA); a trained MODEL keeps the recipe it was trained with")
        model = _load(sources[0])
        ev = pipeline.evaluate(model, sources[1], clip=clip, include=include, exclude=exclude, n_jobs=jobs,
                               cache_dir=cache_dir, progress=progress)
    else:
        data = sources[0]
        if train_list is not None and not (test_globs or test_list):
            raise click.UsageError("--train-list needs --test or --test-list")
        if n_splits is not None and (test_globs or test_list):
            raise click.UsageError("--cv and --test/--test-list are alternatives: give one")
        test = list(test_globs) + (_read_list(test_list) if test_list else [])
        choice = _default_choice(preset, data, include, exclude, progress)
        recipe = _recipe(preset, feature_overrides, choice, method=method, n_components=n_components,
                         max_iter=max_iter, tol=tol, reg_covar=reg_covar, n_init=n_init, priors=priors,
                         relevance_factor=relevance_factor, top_c=top_c, adapt=adapt)
        ev = pipeline.cross_validate(
            data, recipe, n_splits=n_splits or 5, group_by=group_by, test=test or None,
            train=_read_list(train_list) if train_list else None, clip=clip, include=include, exclude=exclude,
            n_jobs=jobs, random_state=seed, cache_dir=cache_dir, progress=progress,
        )
        if choice is not None and ev.protocol is not None:
            ev.protocol["default_choice"] = choice
    if plot is not None:
        _plot(ev, plot, quiet)
    if fmt == "csv":
        _write_csv(*_evaluation_csv(ev))
    else:
        click.echo(json.dumps(ev.to_dict(), indent=2) if fmt == "json" else _evaluation_report(ev))
    if len(sources) == 2:  # after the report, so the figures are there to read
        unknown = sorted(set(ev.y_true) - set(model.classes))
        if unknown:
            n = sum(t in unknown for t in ev.y_true)
            raise click.ClickException(
                f"{n} test item(s) have label(s) the model does not know ({', '.join(unknown)}): the figures count "
                f"them as errors; evaluate on data labelled with the model's classes ({', '.join(model.classes)})")


def _evaluation_csv(ev):
    """``(header, rows)`` of an evaluation in long form: one ``metric,label,value`` row per figure.

    Overall figures have an empty label; per-class ones name the class; ``confusion`` rows
    name ``true->predicted``. Long form, so new figures add rows, never columns.
    """
    rows = [["n_recordings", "", len(ev.y_true)], ["n_skipped", "", len(ev.skipped)],
            ["accuracy", "", ev.accuracy], ["balanced_accuracy", "", ev.balanced_accuracy],
            ["macro_f1", "", ev.macro_f1]]
    if ev.eer is not None:
        rows.append(["eer", "", ev.eer])
    for name, values in (("precision", ev.precision), ("recall", ev.recall), ("f1", ev.f1), ("support", ev.support)):
        rows += [[name, lab, v.item()] for lab, v in zip(ev.labels, values)]
    rows += [["confusion", f"{t}->{p}", int(ev.confusion[i, j])]
             for i, t in enumerate(ev.labels) for j, p in enumerate(ev.labels)]
    return ["metric", "label", "value"], rows


def _read_list(path):
    """Non-empty, non-comment lines of a list file."""
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _check_matplotlib():
    """Refuse --plot before any work when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "--plot needs matplotlib, which is not installed: pip install matplotlib "
            "(or, in a source checkout, pip install -e \".[plot]\"); or leave out --plot") from None


def _plot(ev, path, quiet):
    """Confusion matrix (and DET curve when there is one) into a PNG (matplotlib checked before the run)."""
    import numpy as np

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = 2 if ev.verification else 1
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 5), squeeze=False)
    ax = axes[0, 0]
    ax.imshow(ev.confusion, cmap="Blues")
    ax.set_xticks(range(len(ev.labels)), ev.labels, rotation=90)
    ax.set_yticks(range(len(ev.labels)), ev.labels)
    for (i, j), v in np.ndenumerate(ev.confusion):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {ev.accuracy:.3f}")
    if ev.verification:
        from scipy.stats import norm

        det = ev.verification["det"]
        fa, miss = (np.clip(np.asarray(det[k]), 1e-4, 1 - 1e-4) for k in ("false_alarm", "miss"))
        ax = axes[0, 1]
        ax.plot(norm.ppf(fa), norm.ppf(miss))
        ticks = [0.001, 0.01, 0.05, 0.2, 0.5]
        ax.set_xticks(norm.ppf(ticks), [f"{t:g}" for t in ticks])
        ax.set_yticks(norm.ppf(ticks), [f"{t:g}" for t in ticks])
        ax.set_xlabel("false alarm rate")
        ax.set_ylabel("miss rate")
        ax.set_title(f"DET (one vs rest), EER {100 * ev.eer:.2f} %")
        ax.grid(True)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def _evaluation_report(ev):
    n = len(ev.y_true)
    correct = sum(t == p for t, p in zip(ev.y_true, ev.y_pred))
    lines = [
        f"accuracy           {ev.accuracy:.4f}  ({correct}/{n} recordings, {len(ev.skipped)} skipped)",
        f"balanced accuracy  {ev.balanced_accuracy:.4f}",
        f"macro F1           {ev.macro_f1:.4f}",
    ]
    if ev.verification is not None:
        lines.append(f"EER (one vs rest)  {ev.verification['eer']:.4f}")
    if ev.protocol is not None:
        p = ev.protocol
        accs = " ".join(f"{f['accuracy']:.3f}" for f in ev.folds)
        lines.append(f"protocol           {p['kind']}, {p['n_splits']} split(s), {p['n_groups']} groups"
                     f"{' by ' + repr(p['group_by']) if p['group_by'] else ''}, method {p['method']}, "
                     f"K={p['n_components']}{', clips of %g s' % p['clip'] if p['clip'] else ''}")
        lines.append(f"split accuracy     {accs}  (mean {p['fold_accuracy_mean']:.4f}, "
                     f"std {p['fold_accuracy_std']:.4f})")
    cal = ev.calibration
    if cal is not None and cal["n"]:
        soft = cal["softmax"]
        lines.append(f"calibration        ECE {cal['ece']:.4f}, log-loss {cal['log_loss']:.4f}, Brier "
                     f"{cal['brier']:.4f}  (uncalibrated softmax: {soft['ece']:.4f}, {soft['log_loss']:.4f}, "
                     f"{soft['brier']:.4f})")
    lines.append("")
    if cal is not None and cal["n"]:
        lines.append("--min-confidence: share of recordings kept and their accuracy")
        lines.append(_table([[f"{c['threshold']:.2f}", f"{c['kept']:.3f}", c["n_kept"],
                              "-" if c["accuracy"] is None else f"{c['accuracy']:.3f}"] for c in cal["coverage"]],
                            ["threshold", "kept", "n", "accuracy"]))
        lines.append("")
    rows = [[lab, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", s]
            for lab, p, r, f, s in zip(ev.labels, ev.precision, ev.recall, ev.f1, ev.support)]
    lines.append(_table(rows, ["class", "precision", "recall", "f1", "support"]))
    lines += ["", "confusion matrix (rows: true label, columns: predicted)"]
    lines.append(_table([[lab, *row] for lab, row in zip(ev.labels, ev.confusion.tolist())], ["", *ev.labels]))
    return "\n".join(lines)


# -- features -------------------------------------------------------------------------------
FEATURES_EPILOG = """\b
Examples:
  audiogmm features SONGS/ --cache feats/ --preset music --jobs 2
  audiogmm features SONGS/ --cache /shared/feats/ --scheduler tcp://scheduler-host:8786
  audiogmm train SONGS/ -o genres.agmm --preset music --cache feats/   # reads, never decodes
  AUDIOGMM_CACHE=feats/ audiogmm evaluate genres.agmm TEST/
"""


@main.command(epilog=FEATURES_EPILOG)
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "legacy_output", type=click.Path(file_okay=False, path_type=Path), default=None,
              hidden=True, help="Deprecated: --cache.")
@_feature_options
@_filters
@_format_option
@_cache_option
@_scheduler_option
@_common
@_handle_errors
def features(data, legacy_output, preset, include, exclude, fmt, cache_dir, scheduler, jobs, quiet,
             **feature_overrides):
    """Precompute the features of DATA (folders, manifests or audio files) into a feature store.

    Use the same feature options (--preset ...) as the train/predict runs that will read it.
    """
    from . import pipeline

    progress = _start(quiet)
    if legacy_output is not None:
        if cache_dir is not None and cache_dir != legacy_output:
            raise click.UsageError("give the feature store once, as --cache STORE (-o/--output is its old name)")
        progress.write("Warning: -o/--output of 'features' is deprecated: write --cache STORE, as in every command")
        cache_dir = legacy_output
    if cache_dir is None:
        raise click.UsageError("missing option '--cache STORE': the feature store to fill (or set AUDIOGMM_CACHE)")
    choice = None
    if preset is None:
        choice = _default_choice(preset, pipeline.find_inputs(list(data), include=include, exclude=exclude)[0],
                                 (), (), progress)
    config = _feature_config(preset, None if choice is None else choice["median_seconds"], **feature_overrides)
    if scheduler is None:
        summary = pipeline.cache_features(list(data), config, cache_dir, include=include, exclude=exclude,
                                          n_jobs=jobs, progress=progress)
    else:
        with pipeline.client_for(scheduler) as client:
            summary = pipeline.cache_features(list(data), config, cache_dir, include=include, exclude=exclude,
                                              n_jobs=jobs, progress=progress, executor=client)
    counts = {k: summary[k] for k in ("n_files", "n_extracted", "n_cached", "n_skipped", "frames")}
    if fmt == "json":
        click.echo(json.dumps({**summary, "cache": str(cache_dir), "feature_config": config.to_dict()}, indent=2))
    elif fmt == "csv":
        _write_csv(["cache", *counts, "n_features"], [[str(cache_dir), *counts.values(), config.n_features]])
    else:
        click.echo(f"{summary['n_files']} recordings: {summary['n_extracted']} extracted, "
                   f"{summary['n_cached']} already cached, {summary['n_skipped']} skipped -> {cache_dir} "
                   f"({summary['frames']} frames of {config.n_features} features)")
    if summary["n_files"] and summary["n_skipped"] == summary["n_files"]:
        raise click.ClickException("no recording could be read")


def _write_csv(header, rows):
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)


# -- info -----------------------------------------------------------------------------------
@main.command(epilog="\b\nExamples:\n  audiogmm info genres.agmm\n  audiogmm info genres.agmm --format json")
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_format_option
@_handle_errors
def info(model_path, fmt):
    """Show a model's classes, components, feature configuration and training summary."""
    model = _load(model_path)
    clf = model.classifier
    if fmt == "json":
        state, _ = clf.to_arrays()  # the same facts the model file holds, not a second description
        for info in state["gmms"] + ([state["ubm"]] if "ubm" in state else []):
            if info["lower_bound"] != info["lower_bound"]:  # NaN (MAP-adapted): null in JSON
                info["lower_bound"] = None
        click.echo(json.dumps({
            **model.metadata,
            "method": clf.method,
            "classifier": {k: v for k, v in clf.get_params().items() if k != "n_jobs"},
            **state,
            "feature_config": model.feature_config.to_dict(),
            "training": model.summary,
        }, indent=2, default=str))
        return
    if fmt == "csv":  # the per-class facts; the rest is in --format json
        _write_csv([c.replace(" ", "_") for c in _CLASS_COLUMNS], _class_rows(model))
        return
    meta = model.metadata
    click.echo(f"model        {model_path}")
    click.echo(f"format       {meta.get('format')} v{meta.get('format_version')}, "
               f"written by audiogmm {meta.get('audiogmm_version')} on {meta.get('created')}")
    click.echo(f"classes      {len(model.classes)}: {', '.join(model.classes)}")
    click.echo(f"features     {clf.n_features_in_} per frame: "
               + ", ".join(f"{k}={v}" for k, v in model.feature_config.to_dict().items()))
    p = clf.get_params()
    click.echo(f"mixtures     n_components={p['n_components']}, reg_covar={p['reg_covar']}, tol={p['tol']}, "
               f"max_iter={p['max_iter']}, n_init={p['n_init']}, priors={p['priors'] or 'uniform'}")
    if "relevance_factor" in p:
        click.echo(f"method       ubm: universal background model, class means MAP-adapted "
                   f"(adapt={p['adapt']}, relevance_factor={p['relevance_factor']}, top_c={p['top_c']})")
    else:
        click.echo("method       per-class: one mixture per class trained by EM")
    s = model.summary
    if s:
        click.echo(f"training     {s.get('n_recordings')} recordings from {s.get('dataset')}, "
                   f"{s.get('n_skipped')} skipped, seed {s.get('random_state')}, "
                   f"features {s.get('feature_seconds')} s, EM {s.get('fit_seconds')} s")
        cal = s.get("calibration")
        if isinstance(cal, dict) and cal.get("kind") == "temperature":
            click.echo(f"calibration  temperature scale {cal.get('scale', float('nan')):.3g}, length exponent "
                       f"{cal.get('length_exponent', float('nan')):.2f}, fitted on {cal.get('n_held_out')} held-out "
                       f"recordings ({cal.get('n_splits')} grouped folds)")
            note = _calibration_note(cal, len(model.classes))
            if note:
                click.echo(f"             note: {note}")
        elif isinstance(cal, dict) and cal.get("kind") == "softmax":
            click.echo(f"calibration  none (softmax): {cal.get('reason', 'not fitted')}")
        choice = s.get("default_choice")
        if s.get("preset"):
            click.echo(f"preset       {s['preset']}")
        elif isinstance(choice, dict) and choice.get("rule"):
            click.echo(f"preset       none given: {choice['rule']}")
    click.echo("")
    click.echo(_class_table(model))


# -- demo -----------------------------------------------------------------------------------
DEMO_EPILOG = """\b
Examples:
  audiogmm demo
  audiogmm demo --n-components 1          # a single Gaussian per class does worse
  audiogmm demo --dir demo_corpus --jobs 2  # keep the generated corpus and model
"""


@main.command(epilog=DEMO_EPILOG)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the corpus and model here and keep them (default: a temporary folder, removed after).")
@click.option("-k", "--n-components", type=int, default=8, show_default=True, help="Mixture components per class.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the corpus and of training (an int >= 0).")
@_format_option
@_common
@_handle_errors
def demo(directory, n_components, seed, fmt, jobs, quiet):
    """Generate a small synthetic corpus, train on it, evaluate, and print the report.

    Needs no download: the recordings are synthesised with NumPy (see audiogmm.demo).
    """
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="audiogmm-demo-") as tmp:
            _run_demo(Path(tmp), n_components, seed, fmt, jobs, quiet, keep=False)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        _run_demo(directory, n_components, seed, fmt, jobs, quiet, keep=True)


def _run_demo(directory, n_components, seed, fmt, jobs, quiet, keep):
    from . import pipeline
    from .demo import write_demo_corpus

    progress = _start(quiet)
    corpus = directory / f"corpus-seed{seed}"
    train_dir, test_dir = corpus / "train", corpus / "test"
    if train_dir.is_dir() and test_dir.is_dir():  # generated before with this seed: byte-identical
        if not quiet:
            click.echo(f"reusing the demo corpus in {corpus}", err=True)
    else:
        if not quiet:
            click.echo(f"generating the demo corpus in {corpus} ...", err=True)
        train_dir, test_dir = write_demo_corpus(corpus, seed=seed)
    model = pipeline.train(train_dir, n_components=n_components, n_jobs=jobs, random_state=seed, progress=progress)
    model_path = directory / "demo.agmm"
    model.save(model_path)
    ev = pipeline.evaluate(model, test_dir, n_jobs=jobs, progress=progress)
    if fmt == "json":
        click.echo(json.dumps({"n_components": n_components, "seed": seed, "train": model.summary,
                               "evaluation": ev.to_dict()}, indent=2))
        return
    if fmt == "csv":
        _write_csv(*_evaluation_csv(ev))
        return
    s = model.summary
    click.echo(f"audiogmm demo: {len(model.classes)} classes ({', '.join(model.classes)}), "
               f"{s['n_recordings']} training and {len(ev.y_true)} test recordings, "
               f"{n_components} component(s) per class, seed {seed}")
    if keep:
        click.echo(f"corpus in {corpus}, model in {model_path}")
    click.echo("")
    click.echo(_evaluation_report(ev))


# -- sort -----------------------------------------------------------------------------------
SORT_EPILOG = """\b
Examples:
  audiogmm sort genres.agmm ~/Music/unsorted --into ~/Music/by-genre --dry-run
  audiogmm sort genres.agmm ~/Music/unsorted --into ~/Music/by-genre --min-confidence 0.6
  audiogmm sort genres.agmm ~/Music/unsorted --into /mnt/usb/by-genre --mode move
  audiogmm sort genres.agmm ~/Music/unsorted --into ~/Music/by-genre --exclude 'podcasts/*'
  audiogmm sort genres.agmm ~/Music/new-tracks.csv --into ~/Music/by-genre --mode move
"""


@main.command(epilog=SORT_EPILOG)
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("source", metavar="SOURCE", type=click.Path(exists=True, path_type=Path))
@click.option("--into", "into", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Destination: each track goes to INTO/<label>/ (uncertain ones to INTO/unknown/).")
@click.option("--mode", type=click.Choice(["copy", "link", "move"]), default="copy", show_default=True,
              help="Copy files, symlink to them, or move them (verified before any source is removed).")
@click.option("--dry-run", is_flag=True, help="Print what would be done; touch nothing.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV report listing every source file once [INTO/audiogmm-sort-report.csv].")
@_format_option
@_min_confidence_option
@_excerpt_options
@_filters
@_cache_option
@_common
@_handle_errors
def sort(model_path, source, into, mode, dry_run, report, fmt, min_confidence, n_excerpts, excerpt_seconds,
         include, exclude, cache_dir, jobs, quiet):
    """Sort the audio in SOURCE into INTO/<label>/ folders; never loses or overwrites a file.

    SOURCE is a music folder (searched recursively) or a manifest listing the tracks to sort
    (.csv/.tsv/.txt with path and label columns, as for train; the labels are unused). Name
    collisions get a numbered suffix, copies are verified before a move deletes a source, an
    interrupted run leaves no half-written file and a re-run resumes. Non-audio files, unreadable
    tracks and tracks left out by --include/--exclude stay where they are and are listed in the
    report (for a folder: every file under it, once; for a manifest: every listed file, once).
    """
    from . import pipeline

    progress = _start(quiet)
    model = _load(model_path)
    entries, report_path = pipeline.sort_library(
        model, source, into, mode=mode, dry_run=dry_run, min_confidence=min_confidence, report=report,
        excerpts=(n_excerpts, excerpt_seconds), include=include, exclude=exclude, n_jobs=jobs,
        cache_dir=cache_dir, progress=progress,
    )
    if fmt == "json":
        click.echo(json.dumps([e.__dict__ for e in entries], indent=2))
    elif fmt == "csv":
        from .sorting import REPORT_FIELDS, display_path

        _write_csv(REPORT_FIELDS, ([display_path(c) if i in (0, 4) else c for i, c in enumerate(e.row())]
                                   for e in entries))
    else:
        from .sorting import display_path

        rows = [[display_path(e.source), e.decision, "" if e.confidence is None else f"{e.confidence:.2f}",
                 e.action, display_path(e.destination)] for e in entries]
        click.echo(_table(rows, ["source", "decision", "confidence", "action", "destination"],
                          ["<", "<", ">", "<", "<"]))
    counts = {}
    for e in entries:
        counts[e.action] = counts.get(e.action, 0) + 1
    if not quiet:
        summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
        where = "dry run: nothing was changed" if dry_run else f"report: {report_path}"
        click.echo(f"{len(entries)} files: {summary} ({where})", err=True)
    if counts.get("failed"):
        raise click.ClickException(f"{counts['failed']} file(s) could not be placed; see the report")
