"""What a user meets at the command line: progress, Ctrl-C, consistent options and messages."""

import contextlib
import warnings
import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from audiogmm.classifier import GMMClassifier
from audiogmm.exceptions import ConvergenceWarning
from audiogmm.cli import _Progress, main
from audiogmm.ubm import UBMClassifier


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def trained(tone_corpus, tmp_path):
    """A 2-component per-class model of the tone corpus, trained through the API."""
    from audiogmm import pipeline

    path = tmp_path / "tones.agmm"
    pipeline.train(tone_corpus / "train", preset="music", n_components=2).save(path)
    return path


class _FakeTerminal(io.StringIO):
    def isatty(self):
        return True


# -- 1. progress -------------------------------------------------------------------------------
def test_renderer_on_a_terminal_draws_bars_with_rate_and_writes_above_them():
    out = _FakeTerminal()
    progress = _Progress(False, stream=out)
    assert progress.tty
    progress("features", 0, 4)
    progress("features", 2, 4)
    progress.write("Warning: something")
    progress("features", 4, 4)
    text = out.getvalue()
    assert "features" in text and "4/4" in text and "file/s" in text
    assert "\r" in text  # redrawn in place
    # the warning is on a line of its own, not glued to the bar
    assert any(line == "Warning: something" for line in text.replace("\r", "\n").split("\n"))
    assert not progress.bars  # a finished stage closes its bar


def test_renderer_restarted_and_shortened_stages():
    out = _FakeTerminal()
    progress = _Progress(False, stream=out)
    progress("EM low", 5, 100)
    progress("EM low", 1, 100)  # the next candidate K starts again
    assert progress.bars["EM low"].n == 1
    progress("EM low", 7, 7)  # converged after 7 iterations: the stage ends there
    assert not progress.bars
    assert "7/7" in out.getvalue() and "it/s" in out.getvalue()


def test_renderer_off_a_terminal_prints_one_line_per_stage_and_nothing_when_quiet():
    out = io.StringIO()
    progress = _Progress(False, stream=out)
    assert not progress.tty
    for done in range(4):
        progress("features", done, 3)
    progress.write("Warning: x")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("features: 3/3 (") and lines[1] == "Warning: x"
    out = _FakeTerminal()
    quiet = _Progress(True, stream=out)
    quiet("features", 0, 3)
    quiet("features", 3, 3)
    quiet.write("Warning: x")
    assert out.getvalue() == ""


def _recordings(rng):
    X = [rng.normal(m, 1.0, (200, 3)) for m in (0, 0, 4, 4)]
    return X, ["a", "a", "b", "b"]


@pytest.mark.parametrize("make, auto", [(lambda: GMMClassifier(n_components=2, random_state=0), False),
                                         (lambda: GMMClassifier(n_components="auto", random_state=0), True),
                                         (lambda: UBMClassifier(n_components=2, random_state=0), False)])
def test_classifiers_report_em_iterations_and_classes_without_changing_the_model(make, auto, rng):
    X, y = _recordings(rng)
    calls = []
    # -k auto may warn (re-seeded candidates, or the grid's end): expected, and not what this test is about
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with_progress = make().fit(X, y, progress=lambda *a: calls.append(a))
        plain = make().fit(X, y)
    for g1, g2 in zip(with_progress.gmms_, plain.gmms_):
        np.testing.assert_array_equal(g1.means_, g2.means_)
        assert g1.verbose == 0  # a fitted model keeps no callback
    assert calls[-1] == ("training", 2, 2)
    em = [c for c in calls if c[0].startswith("EM ")]
    assert em and all(0 <= done <= total for _, done, total in em)
    ends = [c for c in em if c[1] == c[2]]
    assert len(ends) == (1 if isinstance(with_progress, UBMClassifier) else 2)


def test_train_and_cross_validation_show_stages_off_a_terminal(runner, tone_corpus, tmp_path):
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(tmp_path / "m.agmm"), "-k", "2",
                                  "--method", "per-class"])
    assert result.exit_code == 0, result.output
    err = result.stderr.splitlines()
    assert any(line.startswith("features: 12/12 (") for line in err)
    for label in ("high", "low", "noise"):
        assert any(line.startswith(f"EM {label}: ") for line in err)
    assert any(line.startswith("training: 3/3 (") for line in err)
    assert "\r" not in result.stderr

    result = runner.invoke(main, ["evaluate", str(tone_corpus / "train"), "-k", "2", "--cv", "2"])
    assert result.exit_code == 0, result.output
    assert any(line.startswith("folds: 2/2 (") for line in result.stderr.splitlines())

    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(tmp_path / "q.agmm"), "-k", "2",
                                  "-q"])
    assert result.exit_code == 0 and result.stderr == ""


# -- 2. Ctrl-C ---------------------------------------------------------------------------------
def test_ctrl_c_exits_130_with_one_line(runner, tone_corpus, tmp_path, monkeypatch):
    from audiogmm import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train", interrupted)
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(tmp_path / "m.agmm"),
                                  "--preset", "music"])
    assert result.exit_code == 130
    assert result.stderr.strip() == "Interrupted (Ctrl-C)."
    assert "Traceback" not in result.output


# -- 3. predict output: the reason apart from the numbers, a JSON summary, one word "confidence" ------
def test_unreadable_file_reason_is_in_its_own_column_and_counted(runner, trained, tone_corpus):
    low = tone_corpus / "test" / "low"
    (low / "broken.wav").write_bytes(b"RIFF\x00\x00not really audio")
    (low / "cover.jpg").write_bytes(b"\xff\xd8")
    result = runner.invoke(main, ["predict", str(trained), str(low)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["path", "label", "confidence", "error"]
    broken = next(line for line in lines if "broken.wav" in line).split()
    assert broken[1:3] == ["-", "-"] and len(broken) > 3  # the reason after the numbers
    good = next(line for line in lines if "low_0.wav" in line).split()
    assert good[1] == "low" and 0 < float(good[2]) <= 1 and len(good) == 3
    assert "2 labelled, 1 skipped as unreadable, 1 non-audio" in result.stderr

    result = runner.invoke(main, ["predict", str(trained), str(low), "-f", "json", "--min-confidence", "1"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["summary"] == {"n_files": 3, "predicted": 0, "unknown": 2, "unreadable": 1, "non_audio": 1}
    assert [p["label"] for p in out["predictions"]] == [None, "unknown", "unknown"]


def test_confidence_is_the_one_name(runner, trained, tone_corpus, tmp_path, write_wav):
    from conftest import synth_tone

    result = runner.invoke(main, ["predict", str(trained), str(tone_corpus / "test"), "-f", "csv"])
    assert "confidence" in result.stdout.splitlines()[0].split(",")
    path = write_wav("long/mix.wav", np.concatenate([synth_tone("low", seconds=1.0), synth_tone("high", seconds=1.0)]))
    result = runner.invoke(main, ["predict", str(trained), str(path), "--segment", "1"])
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[1].split()
    assert header[:4] == ["start", "end", "label", "confidence"]
    music = tmp_path / "music"
    music.mkdir()
    (music / "a.wav").write_bytes((tone_corpus / "test" / "low" / "low_0.wav").read_bytes())
    result = runner.invoke(main, ["sort", str(trained), str(music), "--into", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["source", "decision", "confidence", "action", "destination"]
    for command in ([], ["predict"], ["sort"]):
        text = runner.invoke(main, [*command, "--help"]).output
        assert "probability is below" not in text and " p " not in text


# -- 4. one option name, one set of formats, manifests and filters everywhere ---------------------
def test_features_takes_cache_and_warns_on_the_old_output_option(runner, tone_corpus, tmp_path):
    data = str(tone_corpus / "train")
    result = runner.invoke(main, ["features", data, "--cache", str(tmp_path / "s1"), "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0]["n_files"] == "12" and rows[0]["n_extracted"] == "12"
    result = runner.invoke(main, ["features", data, "-o", str(tmp_path / "s2")])
    assert result.exit_code == 0, result.output
    assert "-o/--output of 'features' is deprecated" in result.stderr and (tmp_path / "s2").is_dir()
    assert "--output" not in runner.invoke(main, ["features", "--help"]).output
    result = runner.invoke(main, ["features", data], env={"AUDIOGMM_CACHE": None})
    assert result.exit_code == 2 and "--cache STORE" in result.stderr


def test_every_command_offers_the_same_formats(runner, trained, tone_corpus):
    for command in ("train", "predict", "evaluate", "features", "info", "demo", "sort"):
        text = runner.invoke(main, [command, "--help"]).output
        assert "[table|csv|json]" in text, command
    result = runner.invoke(main, ["info", str(trained), "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["class"] for r in rows] == ["high", "low", "noise"] and rows[0]["components"] == "2"
    result = runner.invoke(main, ["evaluate", str(trained), str(tone_corpus / "test"), "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    figures = {(r["metric"], r["label"]): float(r["value"]) for r in rows}
    assert figures[("n_recordings", "")] == 6 and 0 <= figures[("accuracy", "")] <= 1
    assert sum(v for (m, _), v in figures.items() if m == "confusion") == 6


def test_predict_accepts_manifests_and_filters(runner, trained, tone_corpus):
    test_dir = tone_corpus / "test"
    result = runner.invoke(main, ["predict", str(trained), str(test_dir), "--include", "low/*", "-f", "json"])
    assert result.exit_code == 0, result.output
    paths = [p["path"] for p in json.loads(result.stdout)["predictions"]]
    assert len(paths) == 2 and all("/low/" in p for p in paths)
    manifest = tone_corpus / "test.csv"
    manifest.write_text("path,label\n" + "".join(f"test/{k}/{k}_{i}.wav,{k}\n" for k in ("low", "high")
                                                 for i in range(2)))
    result = runner.invoke(main, ["predict", str(trained), str(manifest), "--exclude", "*_1.wav", "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(r["label"] for r in rows) == ["high", "low"]
    result = runner.invoke(main, ["predict", str(trained), str(test_dir), "--include", "nothing*"])
    assert result.exit_code == 2 and "--include/--exclude" in result.stderr
    # a listed file that is missing is reported in its row (as training skips it), not fatal
    manifest.write_text("path,label\ntest/low/low_0.wav,low\ntest/low/gone.wav,low\n")
    result = runner.invoke(main, ["predict", str(trained), str(manifest), "-f", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["summary"]["unreadable"] == 1 and out["summary"]["predicted"] == 1
    gone = [p for p in out["predictions"] if p["path"].endswith("gone.wav")]
    assert len(gone) == 1 and "file not found" in gone[0]["error"]



def test_sort_accepts_manifests_and_filters(runner, trained, tone_corpus, tmp_path):
    text = runner.invoke(main, ["sort", "--help"]).output
    assert "MODEL SOURCE" in text and "--include GLOB" in text and "--exclude GLOB" in text
    assert "manifest" in text and ".csv --into" in text and "--exclude '" in text  # described, with examples
    manifest = tone_corpus / "test.csv"
    manifest.write_text("path,label\n" + "".join(f"test/{k}/{k}_{i}.wav,{k}\n" for k in ("low", "high")
                                                 for i in range(2)))
    result = runner.invoke(main, ["sort", str(trained), str(manifest), "--into", str(tmp_path / "out"),
                                  "--include", "*/low/*", "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted((r["source"].rsplit("/", 1)[1], r["decision"], r["action"]) for r in rows) == [
        ("high_0.wav", "excluded", "left"), ("high_1.wav", "excluded", "left"),
        ("low_0.wav", "low", "copied"), ("low_1.wav", "low", "copied")]
    assert "4 files: 2 copied, 2 left" in result.stderr

# -- 5. a model evaluated on clips of long recordings ------------------------------------------
def test_evaluate_a_model_on_clips(runner, trained, tone_corpus, tmp_path, write_wav):
    import soundfile as sf

    from audiogmm import pipeline
    from audiogmm.evaluation import clip_config, cut_clips
    from audiogmm.features import extract_file
    from audiogmm.persistence import load_model

    test = tone_corpus / "test"
    for kind in ("low", "high"):  # two test recordings end to end, plus a 0.2-s tail (dropped)
        y = np.concatenate([sf.read(test / kind / f"{kind}_{i}.wav", dtype="float32")[0] for i in (0, 1, 0)])
        write_wav(f"long/{kind}/{kind}.wav", y[:16000 + 3200])
    write_wav("long/low/short.wav", sf.read(test / "low" / "low_1.wav", dtype="float32")[0][:4000])  # one clip
    ev = pipeline.evaluate(load_model(trained), tmp_path / "long", clip=0.5)
    assert len(ev.y_true) == 5 and ev.y_true.count("low") == 3
    assert sorted(p.path.rsplit("/", 1)[1] for p in ev.predictions) == [
        "high.wav#0", "high.wav#1", "low.wav#0", "low.wav#1", "short.wav#0"]
    assert not ev.skipped and len(ev.y_pred) == 5
    # each clip scored as the model's features of that clip (extracted as in training, then cut)
    model = load_model(trained)
    config = model.feature_config
    X = extract_file(tmp_path / "long" / "high" / "high.wav", clip_config(config, 0.5))
    clips = cut_clips(X, config, 0.5)
    assert len(clips) == 2
    np.testing.assert_allclose([p.scores for p in ev.predictions[:2]], model.classifier.score_recordings(clips))
    result = runner.invoke(main, ["evaluate", str(trained), str(tmp_path / "long"), "--clip", "0.5", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_recordings"] == 5
    result = runner.invoke(main, ["evaluate", str(trained), str(tmp_path / "long"), "--clip", "0.5", "-k", "4"])
    assert result.exit_code == 2 and "--n-components applies only without a MODEL" in result.stderr


# -- 6. loose files and a single class -----------------------------------------------------------
def test_one_class_dataset_is_an_error_before_any_extraction(runner, tone_corpus, tmp_path, monkeypatch):
    from audiogmm import pipeline

    only = tone_corpus / "train"
    for kind in ("high", "noise"):
        for f in (only / kind).iterdir():
            f.unlink()
        (only / kind).rmdir()
    monkeypatch.setattr(pipeline, "extract_clips", lambda *a, **k: pytest.fail("features were extracted"))
    result = runner.invoke(main, ["train", str(only), "-o", str(tmp_path / "m.agmm")])
    assert result.exit_code == 1
    assert "one class ('low', 4 recording(s))" in result.stderr and "at least two" in result.stderr
    assert not (tmp_path / "m.agmm").exists()


@pytest.mark.skipif(not hasattr(__import__("audiogmm.exceptions").exceptions, "DatasetWarning"),
                    reason="dataset.discover does not warn about loose files yet (DatasetWarning)")
def test_loose_files_beside_class_folders_are_named_in_a_warning(runner, tone_corpus, tmp_path):
    data = tone_corpus / "train"
    (data / "stray.wav").write_bytes((data / "low" / "low_0.wav").read_bytes())
    result = runner.invoke(main, ["train", str(data), "-o", str(tmp_path / "m.agmm"), "-k", "2"])
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.stderr.splitlines() if line.startswith("Warning:") and "not used" in line)
    assert "directly in" in warning


# -- 7. --plot without matplotlib: refused before any work ---------------------------------------
@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_plot_without_matplotlib_is_refused_first(runner, trained, tone_corpus, monkeypatch, quiet):
    import sys

    from audiogmm import pipeline

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setattr(pipeline, "evaluate", lambda *a, **k: pytest.fail("the run started"))
    result = runner.invoke(main, ["evaluate", str(trained), str(tone_corpus / "test"), "--plot", "x.png", *quiet])
    assert result.exit_code == 1
    assert "pip install matplotlib" in result.stderr and 'pip install -e ".[plot]"' in result.stderr


# -- 8. test labels the model does not know ------------------------------------------------------
def test_evaluate_on_foreign_or_partly_foreign_labels(runner, trained, tone_corpus, tmp_path):
    test_dir = tone_corpus / "test"
    foreign = tmp_path / "foreign"
    for i, kind in enumerate(("cat", "dog")):
        (foreign / kind).mkdir(parents=True)
        (foreign / kind / "a.wav").write_bytes((test_dir / "low" / f"low_{i}.wav").read_bytes())
    result = runner.invoke(main, ["evaluate", str(trained), str(foreign)])
    assert result.exit_code == 1 and "accuracy" not in result.stdout
    assert "test labels (cat, dog) are none of the model's classes (high, low, noise)" in result.stderr

    (test_dir / "cat").mkdir()
    (test_dir / "cat" / "a.wav").write_bytes((test_dir / "low" / "low_0.wav").read_bytes())
    result = runner.invoke(main, ["evaluate", str(trained), str(test_dir)])
    assert result.exit_code == 1
    assert "accuracy" in result.stdout  # the report first
    assert "Warning: 1 test recording(s) have label(s) the model does not know (cat" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: 1 test item(s) have label(s)")


# -- 10. the CLI's words in its messages ---------------------------------------------------------
def test_negative_seed_is_refused_by_its_option_name(runner, tone_corpus, tmp_path):
    for command in (["train", str(tone_corpus / "train"), "-o", str(tmp_path / "m.agmm")],
                    ["evaluate", str(tone_corpus / "train")], ["demo"]):
        result = runner.invoke(main, [*command, "--seed", "-1"])
        assert result.exit_code == 2
        assert "--seed" in result.stderr and "random_state" not in result.stderr


# -- 9. packaging --------------------------------------------------------------------------------
def test_packaging_metadata_and_one_version_source(runner):
    import tomllib
    from importlib import metadata
    from pathlib import Path

    import audiogmm

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]  # SPDX, not the table form
    assert (root / "LICENSE").read_text().startswith("MIT License")
    assert any(c.startswith("Programming Language :: Python :: 3.1") for c in project["classifiers"])
    assert any(d.startswith("tqdm") for d in project["dependencies"])
    assert '__version__ = "0.' not in (root / "audiogmm" / "__init__.py").read_text()  # no second literal
    assert audiogmm.__version__ == metadata.version("audiogmm")
    assert runner.invoke(main, ["--version"]).output.strip().endswith(audiogmm.__version__)
    # what the README refers to is in the sdist (MANIFEST.in), and exists
    manifest = (root / "MANIFEST.in").read_text()
    for path in ("data/make_demo_corpus.py", "data/README.md", ".ci/run"):
        assert path in manifest and (root / path).is_file()
    for folder in ("tests", "bench"):
        assert f"recursive-include {folder} *.py" in manifest


# -- 7. a calibration on few held-out recordings is said to be rough -----------------------------
def test_calibration_on_few_held_out_recordings_is_flagged(runner, tone_corpus, tmp_path):
    from audiogmm.cli import FEW_HELD_OUT_PER_CLASS, _calibration_note

    path = tmp_path / "m.agmm"
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(path), "-k", "2",
                                  "--preset", "music"])
    assert result.exit_code == 0, result.output
    assert "Note: the probabilities were calibrated on only 12 held-out recording(s) for 3 classes" in result.stderr
    info = runner.invoke(main, ["info", str(path)]).stdout
    assert "fitted on 12 held-out recordings" in info and "confidences are rough" in info
    enough = {"kind": "temperature", "n_held_out": FEW_HELD_OUT_PER_CLASS * 3}
    assert _calibration_note(enough, 3) is None
    assert _calibration_note({**enough, "n_held_out": enough["n_held_out"] - 1}, 3) is not None
    assert _calibration_note({"kind": "softmax", "reason": "calibrate=False"}, 3) is None
    quiet = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(path), "-k", "2",
                                 "--preset", "music", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
