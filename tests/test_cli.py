"""The command line end to end on synthetic recordings (tone_corpus fixture)."""

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from audiogmm.cli import main
from audiogmm.persistence import load_model


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def trained(runner, tone_corpus, tmp_path):
    model = tmp_path / "tones.agmm"
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(model), "-k", "2", "-q"])
    assert result.exit_code == 0, result.output
    return model


def test_help_everywhere(runner):
    for args in ([], ["train"], ["predict"], ["evaluate"], ["info"], ["demo"]):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0
        assert "Examples:" in result.output


def test_train_reports_and_writes_model(runner, tone_corpus, tmp_path):
    model = tmp_path / "m.agmm"
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(model), "-k", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "Trained 3 classes on 12 recordings (0 skipped)" in result.stdout
    assert "features: 12/12" in result.stderr
    loaded = load_model(model)
    assert loaded.classes == ["high", "low", "noise"]
    assert loaded.summary["random_state"] == 3


def test_same_seed_same_model(runner, tone_corpus, tmp_path):
    paths = []
    for name in ("a.agmm", "b.agmm"):
        paths.append(tmp_path / name)
        runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(paths[-1]), "-k", "2", "-q"])
    a, b = (load_model(p).classifier for p in paths)
    for ga, gb in zip(a.gmms_, b.gmms_):
        np.testing.assert_array_equal(ga.means_, gb.means_)


def test_predict_formats(runner, trained, tone_corpus):
    test_dir = tone_corpus / "test"
    result = runner.invoke(main, ["predict", str(trained), str(test_dir), "--format", "json"])
    assert result.exit_code == 0, result.output
    preds = json.loads(result.stdout)["predictions"]
    assert len(preds) == 6
    for p in preds:
        assert p["label"] == p["path"].split("/")[-2]  # folder name is the true label
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-9
        assert p["confidence"] == max(p["probabilities"].values())

    result = runner.invoke(main, ["predict", str(trained), str(test_dir), "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["label"] for r in rows] == [p["label"] for p in preds]
    assert set(rows[0]) == {"path", "label", "confidence", "p_high", "p_low", "p_noise", "error"}

    result = runner.invoke(main, ["predict", str(trained), str(test_dir / "low" / "low_0.wav")])
    assert result.exit_code == 0
    assert "low_0.wav" in result.stdout and " low " in result.stdout


def test_evaluate_and_info(runner, trained, tone_corpus):
    result = runner.invoke(main, ["evaluate", str(trained), str(tone_corpus / "test"), "-f", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"] == 1.0
    assert report["n_recordings"] == 6
    assert report["labels"] == ["high", "low", "noise"]
    assert np.trace(report["confusion"]) == 6
    table = runner.invoke(main, ["evaluate", str(trained), str(tone_corpus / "test")]).stdout
    assert "accuracy           1.0000  (6/6 recordings, 0 skipped)" in table
    assert "confusion matrix" in table

    result = runner.invoke(main, ["info", str(trained)])
    assert result.exit_code == 0
    assert "classes      3: high, low, noise" in result.stdout
    info = json.loads(runner.invoke(main, ["info", str(trained), "-f", "json"]).stdout)
    assert info["classes"] == ["high", "low", "noise"]
    assert info["format"] == "audiogmm-model"
    assert info["feature_config"]["sample_rate"] == 16000


def test_corrupt_recording_is_skipped_and_counted(runner, tone_corpus, tmp_path):
    (tone_corpus / "train" / "low" / "broken.wav").write_bytes(b"RIFF\x00\x00not really audio")
    model = tmp_path / "m.agmm"
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(model), "-k", "2"])
    assert result.exit_code == 0, result.output
    assert "Warning: skipped" in result.stderr and "broken.wav" in result.stderr
    assert "(1 skipped)" in result.stdout
    assert load_model(model).summary["skipped"][0]["path"].endswith("broken.wav")

    result = runner.invoke(main, ["predict", str(model), str(tone_corpus / "train" / "low"), "-f", "json"])
    assert result.exit_code == 0
    broken = [p for p in json.loads(result.stdout)["predictions"] if p["path"].endswith("broken.wav")]
    assert broken[0]["label"] is None and broken[0]["error"]


def test_empty_class_is_an_error(runner, tone_corpus, tmp_path):
    (tone_corpus / "train" / "silence").mkdir()  # an empty class folder
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(tmp_path / "m.agmm")])
    assert result.exit_code == 1
    assert "Error: class folder(s)" in result.stderr and "silence" in result.stderr
    assert not (tmp_path / "m.agmm").exists()


def test_class_with_only_corrupt_audio_is_an_error(runner, tone_corpus, tmp_path):
    bad = tone_corpus / "train" / "broken"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"\x00" * 100)
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(tmp_path / "m.agmm"), "-q"])
    assert result.exit_code == 1
    assert "Error: class(es) 'broken' have no usable recording" in result.stderr


def test_too_few_frames_is_an_error(runner, tone_corpus, tmp_path):
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(tmp_path / "m.agmm"), "-k", "5000",
                                  "--method", "per-class", "-q"])
    assert result.exit_code == 1
    assert "fewer than n_components=5000: add audio to it or lower n_components" in result.stderr


def test_missing_path_and_bad_options(runner, trained, tmp_path):
    result = runner.invoke(main, ["train", str(tmp_path / "nope"), "-o", "x.agmm"])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    result = runner.invoke(main, ["predict", str(trained), str(tmp_path / "nope.wav")])
    assert result.exit_code == 2
    result = runner.invoke(main, ["predict", str(trained), str(trained), "--format", "xml"])
    assert result.exit_code == 2
    assert "'xml' is not one of" in result.stderr
    result = runner.invoke(main, ["train", str(tmp_path), "-o", "x.agmm", "-k", "0"])
    assert result.exit_code == 2
    assert "n_components must be an int >= 1, got 0" in result.stderr
    result = runner.invoke(main, ["train", str(tmp_path), "-o", "x.agmm", "--jobs", "0"])
    assert result.exit_code == 2
    assert "'--jobs': must be a non-zero int" in result.stderr


def test_corrupt_model_file(runner, tmp_path):
    bad = tmp_path / "bad.agmm"
    bad.write_bytes(b"this is not a model")
    for args in (["info", str(bad)], ["predict", str(bad), str(bad)]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: ")
        assert "not a usable audiogmm model" in result.stderr
        assert "Traceback" not in result.output


def test_manifest_training(runner, tone_corpus, tmp_path):
    rows = ["path,label"]
    for p in sorted((tone_corpus / "train").rglob("*.wav")):
        rows.append(f"{p.relative_to(tone_corpus).as_posix()},{'tonal' if 'noise' not in p.name else 'noisy'}")
    (tone_corpus / "m.csv").write_text("\n".join(rows) + "\n")
    model = tmp_path / "m.agmm"
    result = runner.invoke(main, ["train", str(tone_corpus / "m.csv"), "-o", str(model), "-k", "2", "-q", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    assert load_model(model).classes == ["noisy", "tonal"]


def test_demo_kept_dir_runs_twice(runner, tmp_path):
    for _ in range(2):
        result = runner.invoke(main, ["demo", "--dir", str(tmp_path / "d"), "-f", "json", "-q"])
        assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["evaluation"]["n_recordings"] == 50
    assert 0.6 <= report["evaluation"]["accuracy"] <= 0.98  # learnable, yet not trivial
    assert (tmp_path / "d" / "demo.agmm").is_file()


def test_predict_segment_timeline(runner, tone_corpus, tmp_path, write_wav):
    from conftest import synth_tone

    trained = tmp_path / "sliding.agmm"
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(trained), "-k", "2", "-q",
                                  "--cmvn", "none"])
    assert result.exit_code == 0, result.output
    y = np.concatenate([synth_tone("low", seconds=2.0, seed=101), synth_tone("high", seconds=2.0, seed=102)])
    path = write_wav("two.wav", y)
    result = runner.invoke(main, ["predict", str(trained), str(path), "--segment", "1", "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["start"], r["end"]) for r in rows] == [("0.000", "1.000"), ("1.000", "2.000"),
                                                      ("2.000", "3.000"), ("3.000", "4.000")]
    labels = [r["label"] for r in rows]
    k = labels.index("high")
    assert labels == ["low"] * k + ["high"] * (4 - k) and abs(k - 2) <= 1  # the switch, within one segment
    assert set(rows[0]) >= {"p_low", "p_high", "p_noise", "confidence"}
    result = runner.invoke(main, ["predict", str(trained), str(path), "--segment", "2", "-f", "json"])
    data = json.loads(result.stdout)
    assert [s["label"] for s in data[0]["segments"]] == ["low", "high"] and data[0]["duration"] == 4.0
    assert set(data[0]["segments"][0]["probabilities"]) == {"low", "high", "noise"}
    result = runner.invoke(main, ["predict", str(trained), str(path), "--segment", "2"])
    assert result.exit_code == 0 and "(4.00 s)" in result.stdout and "high" in result.stdout.splitlines()[-1]
    result = runner.invoke(main, ["predict", str(trained), str(path), "--segment", "0"])
    assert result.exit_code == 2 and "segment must be a number of seconds > 0, got 0.0" in result.stderr


def test_train_n_components_auto(runner, tone_corpus, tmp_path):
    model = tmp_path / "auto.agmm"
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(model), "-k", "auto",
                                  "--max-iter", "30", "-q"])
    assert result.exit_code == 0, result.output
    loaded = load_model(model)
    clf = loaded.classifier
    assert clf.n_components == "auto"
    ks = [g.weights_.shape[0] for g in clf.gmms_]
    assert all(k in (1, 2, 4, 8, 16, 32, 64) for k in ks)
    assert clf.n_components_.tolist() == ks
    assert [loaded.summary["classes"][c]["n_components"] for c in loaded.classes] == ks
    assert set(loaded.summary["heldout_loglik"]) == set(loaded.classes)
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(model), "-k", "many"])
    assert result.exit_code == 2
    assert "'many' is not an int or 'auto'" in result.stderr


def test_ubm_training_table_shows_the_ubm_and_map_classes(runner, tone_corpus, tmp_path):
    model = tmp_path / "u.agmm"
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(model), "--method", "ubm",
                                  "-k", "4", "-q"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("(UBM)") and " yes " in line or line.startswith("(UBM)") and " no " in line
               for line in lines)
    assert sum(" MAP " in line for line in lines) == 3
