"""The ``audiogmm`` command line: parse options, call :mod:`audiogmm.pipeline`, render results.

Results go to stdout (table, CSV or JSON); progress, warnings and errors to stderr.
Exit codes: 0 success, 1 error (unreadable model, empty class, nothing usable...), 2 usage
error (bad option, missing path, invalid parameter value).
"""

import csv
import functools
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import click

from .exceptions import AudiogmmError, ParameterError

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

    return wrapper


class _Progress:
    """Progress on stderr: redrawn in place on a terminal, one line per stage otherwise."""

    def __init__(self, quiet):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.started = {}
        self.last_draw = 0.0

    def __call__(self, stage, done, total):
        if self.quiet:
            return
        now = time.monotonic()
        start = self.started.setdefault(stage, now)
        finished = done >= total
        if self.tty and (finished or now - self.last_draw > 0.1):
            self.last_draw = now
            click.echo(f"\r{stage}: {done}/{total}", nl=False, err=True)
            if finished:
                click.echo(f" ({now - start:.1f} s)", err=True)
        elif not self.tty and finished:
            click.echo(f"{stage}: {done}/{total} ({now - start:.1f} s)", err=True)


def _show_warnings(quiet):
    """Print warnings as ``Warning: ...`` on stderr (none with --quiet)."""

    def show(message, category, filename, lineno, file=None, line=None):
        if not quiet:
            click.echo(f"Warning: {message}", err=True)

    warnings.showwarning = show
    warnings.simplefilter("always" if not quiet else "ignore")


def _common(func):
    """Options every command that reads audio shares: --jobs and --quiet."""
    func = click.option("-q", "--quiet", is_flag=True, help="No progress or warnings on stderr.")(func)
    func = click.option(
        "-j", "--jobs", type=click.IntRange(min=-1), default=1, show_default=True,
        help="Worker processes for feature extraction (-1: all cores).",
    )(func)
    return func


def _filters(func):
    func = click.option(
        "--exclude", multiple=True, metavar="GLOB",
        help="Leave out recordings whose path (relative to DATA) matches; repeatable. E.g. '*_[0-4].wav'.",
    )(func)
    func = click.option(
        "--include", multiple=True, metavar="GLOB",
        help="Use only recordings whose path (relative to DATA) matches; repeatable.",
    )(func)
    return func


def _format_option(choices=("table", "csv", "json")):
    return click.option(
        "-f", "--format", "fmt", type=click.Choice(choices), default="table", show_default=True,
        help="Output format on stdout.",
    )


_min_confidence_option = click.option(
    "--min-confidence", type=click.FloatRange(0, 1), default=None, metavar="P",
    help="Label a recording 'unknown' when its top probability is below P.",
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
        click.option("--preset", type=click.Choice(["speech", "music", "language"]), default=None,
                     help="Feature preset (see README); the options below override it one by one."),
        click.option("--sample-rate", type=click.IntRange(min=1000), default=None, help="Rate audio is resampled to, in Hz [16000]."),
        click.option("--n-mfcc", type=int, default=None, help="MFCC coefficients per frame [20]."),
        click.option("--n-mels", type=int, default=None, help="Mel bands [40]."),
        click.option("--win-ms", type=float, default=None, help="Analysis window, in ms [25]."),
        click.option("--hop-ms", type=float, default=None, help="Hop between frames, in ms [10]."),
        click.option("--deltas", type=click.IntRange(0, 2), default=None, help="0: MFCC only, 1: +delta, 2: +delta-delta [2]."),
        click.option("--cmvn", type=click.Choice(["none", "mean", "utterance"]), default=None,
                     help="Per-recording normalisation: none, mean only, or mean and variance [utterance]."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _feature_config(preset, **overrides):
    from .features import FeatureConfig

    overrides = {k: v for k, v in overrides.items() if v is not None}
    return FeatureConfig.preset(preset, **overrides) if preset else FeatureConfig(**overrides)


TRAIN_EPILOG = """\b
Examples:
  audiogmm train SONGS/ -o genres.agmm --preset music --n-components 16
  audiogmm train speakers.csv -o spk.agmm --preset speech --jobs 2
  audiogmm train ../shared/data/speaker/MANIFEST.tsv -o spk.agmm --exclude '*_[0-4].wav'
"""


@main.command(epilog=TRAIN_EPILOG)
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Model file to write (replaced atomically if it exists).")
@click.option("-k", "--n-components", type=int, default=8, show_default=True, help="Mixture components per class.")
@click.option("--max-iter", type=int, default=100, show_default=True, help="Most EM iterations per class.")
@click.option("--tol", type=float, default=1e-3, show_default=True, help="Stop EM when the mean log-likelihood gains less.")
@click.option("--reg-covar", type=float, default=1e-3, show_default=True, help="Floor added to every variance.")
@click.option("--n-init", type=int, default=1, show_default=True, help="EM restarts per class; the best is kept.")
@click.option("--priors", type=click.Choice(["uniform", "empirical"]), default="uniform", show_default=True,
              help="Class priors: equal, or proportional to training recordings.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: same data and seed, same model.")
@_feature_options
@_filters
@_common
@_handle_errors
def train(data, output, n_components, max_iter, tol, reg_covar, n_init, priors, seed, preset, include, exclude,
          jobs, quiet, **feature_overrides):
    """Train a model from DATA: a folder of <label>/ sub-folders, or a path,label manifest."""
    from . import pipeline

    _show_warnings(quiet)
    config = _feature_config(preset, **feature_overrides)
    model = pipeline.train(
        data, feature_config=config, n_components=n_components, max_iter=max_iter, tol=tol,
        reg_covar=reg_covar, n_init=n_init, priors=priors, include=include, exclude=exclude,
        n_jobs=jobs, random_state=seed, progress=_Progress(quiet),
    )
    model.summary["preset"] = preset
    model.save(output)
    s = model.summary
    click.echo(
        f"Trained {len(model.classes)} classes on {s['n_recordings']} recordings "
        f"({s['n_skipped']} skipped) -> {output}"
    )
    click.echo(_class_table(model))


def _class_table(model):
    clf = model.classifier
    rows = []
    for lab, g, n_rec, n_fr in zip(model.classes, clf.gmms_, clf.n_recordings_, clf.n_frames_):
        rows.append([lab, n_rec, n_fr, g.weights_.shape[0], "yes" if g.converged_ else "no", g.n_iter_,
                     f"{g.lower_bound_:.3f}"])
    return _table(rows, ["class", "recordings", "frames", "components", "converged", "iterations", "mean log-lik"])


# -- predict --------------------------------------------------------------------------------
PREDICT_EPILOG = """\b
Examples:
  audiogmm predict genres.agmm song.mp3
  audiogmm predict genres.agmm new_folder/ --format csv > labels.csv
  audiogmm predict spk.agmm a.wav b.wav --format json
"""


@main.command(epilog=PREDICT_EPILOG)
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_format_option()
@_min_confidence_option
@_common
@_handle_errors
def predict(model_path, paths, fmt, min_confidence, jobs, quiet):
    """Label each recording in PATHS (files, or folders searched recursively)."""
    from . import pipeline

    _show_warnings(quiet)
    model = _load(model_path)
    preds, n_other = pipeline.predict(model, paths, min_confidence=min_confidence, n_jobs=jobs,
                                      progress=_Progress(quiet))
    if not preds:
        raise click.ClickException(f"no audio file found in {', '.join(map(str, paths))}")
    classes = model.classes
    if fmt == "json":
        click.echo(json.dumps([_prediction_dict(p, classes) for p in preds], indent=2))
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["path", "label", "confidence"] + [f"p_{c}" for c in classes] + ["error"])
        for p in preds:
            probs = [f"{x:.6f}" for x in p.probabilities] if p.probabilities is not None else [""] * len(classes)
            w.writerow([p.path, p.label or "", f"{p.confidence:.6f}" if p.label else ""] + probs + [p.error or ""])
    else:
        rows = [[p.path, p.label or "(skipped)", f"{p.confidence:.3f}" if p.label else p.error] for p in preds]
        click.echo(_table(rows, ["path", "label", "probability"], ["<", "<", "<"]))
    n_bad = sum(p.error is not None for p in preds)
    if not quiet and (n_bad or n_other):
        click.echo(f"{len(preds) - n_bad} labelled, {n_bad} skipped as unreadable, "
                   f"{n_other} non-audio file(s) passed over", err=True)
    if n_bad == len(preds):
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
"""


@main.command(epilog=EVALUATE_EPILOG)
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@_format_option(("table", "json"))
@_filters
@_common
@_handle_errors
def evaluate(model_path, data, fmt, include, exclude, jobs, quiet):
    """Score MODEL on labelled DATA: accuracy, per-class precision/recall/F1, confusion matrix."""
    from . import pipeline

    _show_warnings(quiet)
    model = _load(model_path)
    ev = pipeline.evaluate(model, data, include=include, exclude=exclude, n_jobs=jobs, progress=_Progress(quiet))
    click.echo(json.dumps(ev.to_dict(), indent=2) if fmt == "json" else _evaluation_report(ev))


def _evaluation_report(ev):
    n = len(ev.y_true)
    correct = sum(t == p for t, p in zip(ev.y_true, ev.y_pred))
    lines = [
        f"accuracy           {ev.accuracy:.4f}  ({correct}/{n} recordings, {len(ev.skipped)} skipped)",
        f"balanced accuracy  {ev.balanced_accuracy:.4f}",
        f"macro F1           {ev.macro_f1:.4f}",
        "",
    ]
    rows = [[lab, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", s]
            for lab, p, r, f, s in zip(ev.labels, ev.precision, ev.recall, ev.f1, ev.support)]
    lines.append(_table(rows, ["class", "precision", "recall", "f1", "support"]))
    lines += ["", "confusion matrix (rows: true label, columns: predicted)"]
    lines.append(_table([[lab, *row] for lab, row in zip(ev.labels, ev.confusion.tolist())], ["", *ev.labels]))
    return "\n".join(lines)


# -- info -----------------------------------------------------------------------------------
@main.command(epilog="\b\nExamples:\n  audiogmm info genres.agmm\n  audiogmm info genres.agmm --format json")
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_format_option(("table", "json"))
@_handle_errors
def info(model_path, fmt):
    """Show a model's classes, components, feature configuration and training summary."""
    model = _load(model_path)
    clf = model.classifier
    if fmt == "json":
        click.echo(json.dumps({
            **model.metadata,
            "classes": model.classes,
            "classifier": {k: v for k, v in clf.get_params().items() if k != "n_jobs"},
            "class_prior": clf.class_prior_.tolist(),
            "gmms": [{"n_components": int(g.weights_.shape[0]), "converged": bool(g.converged_),
                      "n_iter": int(g.n_iter_), "lower_bound": float(g.lower_bound_)} for g in clf.gmms_],
            "feature_config": model.feature_config.to_dict(),
            "n_features": int(clf.n_features_in_),
            "training": model.summary,
        }, indent=2, default=str))
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
    s = model.summary
    if s:
        click.echo(f"training     {s.get('n_recordings')} recordings from {s.get('dataset')}, "
                   f"{s.get('n_skipped')} skipped, seed {s.get('random_state')}, "
                   f"features {s.get('feature_seconds')} s, EM {s.get('fit_seconds')} s")
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
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the corpus and of training.")
@_format_option(("table", "json"))
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

    _show_warnings(quiet)
    progress = _Progress(quiet)
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
"""


@main.command(epilog=SORT_EPILOG)
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("music_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--into", "into", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Destination: each track goes to INTO/<label>/ (uncertain ones to INTO/unknown/).")
@click.option("--mode", type=click.Choice(["copy", "link", "move"]), default="copy", show_default=True,
              help="Copy files, symlink to them, or move them (verified before any source is removed).")
@click.option("--dry-run", is_flag=True, help="Print what would be done; touch nothing.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV report listing every source file once [INTO/audiogmm-sort-report.csv].")
@_format_option()
@_min_confidence_option
@_common
@_handle_errors
def sort(model_path, music_dir, into, mode, dry_run, report, fmt, min_confidence, jobs, quiet):
    """Sort the audio under MUSIC_DIR into INTO/<label>/ folders; never loses or overwrites a file.

    Name collisions get a numbered suffix, copies are verified before a move deletes a source,
    an interrupted run leaves no half-written file and a re-run resumes. Non-audio files and
    unreadable tracks stay where they are and are listed in the report.
    """
    from . import pipeline

    _show_warnings(quiet)
    model = _load(model_path)
    entries, report_path = pipeline.sort_library(
        model, music_dir, into, mode=mode, dry_run=dry_run, min_confidence=min_confidence, report=report,
        n_jobs=jobs, progress=_Progress(quiet),
    )
    if fmt == "json":
        click.echo(json.dumps([e.__dict__ for e in entries], indent=2))
    elif fmt == "csv":
        from .sorting import REPORT_FIELDS

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(REPORT_FIELDS)
        w.writerows(e.row() for e in entries)
    else:
        rows = [[e.source, e.decision, "" if e.confidence is None else f"{e.confidence:.2f}", e.action,
                 e.destination] for e in entries]
        click.echo(_table(rows, ["source", "decision", "p", "action", "destination"], ["<", "<", ">", "<", "<"]))
    counts = {}
    for e in entries:
        counts[e.action] = counts.get(e.action, 0) + 1
    if not quiet:
        summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
        where = "dry run: nothing was changed" if dry_run else f"report: {report_path}"
        click.echo(f"{len(entries)} files: {summary} ({where})", err=True)
    if counts.get("failed"):
        raise click.ClickException(f"{counts['failed']} file(s) could not be placed; see the report")
