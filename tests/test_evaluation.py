"""Evaluation that does not leak: splits, groups, clips, metrics, and `audiogmm evaluate` with a protocol."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from audiogmm import pipeline
from audiogmm.cli import main
from audiogmm.dataset import Recording
from audiogmm.evaluation import (calibration_metrics, classification_metrics, cut_clips, fixed_split, group_keys,
                                 kfold_splits, one_vs_rest_scores, verification_metrics)
from audiogmm.exceptions import ParameterError
from audiogmm.features import FeatureConfig


# -- metrics -----------------------------------------------------------------------------------
def test_eer_of_perfectly_separated_scores_is_zero(rng):
    targets, others = rng.normal(5, 1, 50), rng.normal(-5, 1, 200)
    y = np.r_[np.ones(50, bool), np.zeros(200, bool)]
    m = verification_metrics(y, np.r_[targets, others])
    assert m["eer"] == 0.0
    assert set(m["det"]) == {"false_alarm", "miss", "threshold"}


def test_eer_of_identical_scores_is_one_half():
    y = np.r_[np.ones(10, bool), np.zeros(30, bool)]
    assert verification_metrics(y, np.zeros(40))["eer"] == pytest.approx(0.5)


def test_eer_of_overlapping_scores(rng):
    # Two unit Gaussians 2 apart: EER = Phi(-1) = 0.159.
    y = np.r_[np.ones(20000, bool), np.zeros(20000, bool)]
    s = np.r_[rng.normal(1, 1, 20000), rng.normal(-1, 1, 20000)]
    assert verification_metrics(y, s)["eer"] == pytest.approx(0.1587, abs=0.01)


def test_eer_needs_both_kinds_of_trial():
    assert verification_metrics([True, True], [1.0, 2.0]) is None


def test_one_vs_rest_scores():
    y, s = one_vs_rest_scores(["a", "b"], np.array([[0.0, -1.0], [0.0, np.nan]]), ["a", "b"])
    assert y.tolist() == [True, False]  # the second recording has one finite score: no trial
    np.testing.assert_allclose(s, [1.0, -1.0])


def test_classification_metrics():
    m = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    assert m["accuracy"] == 0.75 and m["balanced_accuracy"] == 0.75
    assert m["confusion"].tolist() == [[1, 1], [0, 2]]


def test_calibration_metrics_by_hand():
    p = np.array([[0.9, 0.05, 0.05], [0.55, 0.45, 0.0], [0.2, 0.7, 0.1], [0.34, 0.33, 0.33]])
    y = ["a", "b", "b", "c"]  # top classes a, a, b, a: right, wrong, right, wrong
    with np.errstate(divide="ignore"):
        lp = np.log(p)
    m = calibration_metrics(lp, y, ["a", "b", "c"], thresholds=(0.5, 0.8, 0.95))
    # bins: 0.9 -> [0.9, 1) right; 0.55 -> [0.5, 0.6) wrong; 0.7 -> [0.7, 0.8) right; 0.34 -> [0.3, 0.4) wrong
    assert m["ece"] == pytest.approx((0.1 + 0.55 + 0.3 + 0.34) / 4)
    brier = [0.1**2 + 2 * 0.05**2, 0.55**2 + 0.55**2, 0.2**2 + 0.3**2 + 0.1**2, 0.34**2 + 0.33**2 + 0.67**2]
    assert m["brier"] == pytest.approx(np.mean(brier))
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.45, 0.7, 0.33])))
    assert m["accuracy"] == 0.5 and m["n"] == 4 and m["n_unknown"] == 0
    assert m["coverage"] == [{"threshold": 0.5, "kept": 0.75, "n_kept": 3, "accuracy": pytest.approx(2 / 3)},
                             {"threshold": 0.8, "kept": 0.25, "n_kept": 1, "accuracy": 1.0},
                             {"threshold": 0.95, "kept": 0.0, "n_kept": 0, "accuracy": None}]


def test_calibration_metrics_edge_cases():
    # a zero probability for the true class: log-loss floored at -ln(1e-15), not infinite
    m = calibration_metrics(np.array([[0.0, -np.inf]]), ["b"], ["a", "b"])
    assert m["log_loss"] == pytest.approx(-np.log(1e-15)) and m["ece"] == 1.0 and m["brier"] == 2.0
    # a label the model does not know is left out and counted
    m = calibration_metrics(np.log([[0.5, 0.5], [0.8, 0.2]]), ["z", "a"], ["a", "b"])
    assert m["n"] == 1 and m["n_unknown"] == 1 and m["ece"] == pytest.approx(0.2)
    assert calibration_metrics(np.zeros((1, 2)), ["z"], ["a", "b"])["ece"] is None


# -- groups and splits -------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 9)), min_size=6, max_size=60),
    st.integers(2, 6),
    st.integers(0, 2**16),
)
def test_kfold_splits_keep_groups_disjoint(rows, n_splits, seed):
    labels = [f"c{c}" for c, _ in rows]
    groups = [f"g{g}" for _, g in rows]
    if len(set(groups)) < 2:
        with pytest.raises(ParameterError, match="2 groups"):
            kfold_splits(labels, groups, n_splits, random_state=seed)
        return
    splits = kfold_splits(labels, groups, n_splits, random_state=seed)
    tested = np.concatenate([te for _, te in splits])
    assert sorted(tested.tolist()) == list(range(len(rows)))  # every recording tested once
    for tr, te in splits:
        assert not set(tr) & set(te)
        assert not {groups[i] for i in tr} & {groups[i] for i in te}


def _rows(names, label="x"):
    return [Recording(f"/data/{n}", label, n) for n in names]


def test_group_keys_from_a_pattern():
    rows = _rows(["a/0_george_3.wav", "a/1_theo_4.wav"])
    assert group_keys(rows, r"_(?P<speaker>[a-z]+)_") == ["george", "theo"]
    assert group_keys(rows, r"_([a-z]+)_(\d)") == ["george", "theo"]
    assert group_keys(rows, r"\d\.wav$") == ["3.wav", "4.wav"]
    assert group_keys(rows, None) == ["/data/a/0_george_3.wav", "/data/a/1_theo_4.wav"]
    with pytest.raises(ParameterError, match="does not match"):
        group_keys(rows, "nicolas")
    with pytest.raises(ParameterError, match="regular expression"):
        group_keys(rows, "(")


def test_group_keys_from_a_manifest_column(tmp_path):
    manifest = tmp_path / "m.tsv"
    manifest.write_text("path\tlabel\tspeaker\nx/a.wav\tde\tAnna\nx/b.wav\tde\tBen\n")
    rows = [Recording(tmp_path / "x" / n, "de", f"x/{n}") for n in ("a.wav", "b.wav")]
    assert group_keys(rows, "speaker", dataset=manifest) == ["Anna", "Ben"]


def test_fixed_split():
    rows = _rows(["0_a_0.wav", "0_a_7.wav", "1_b_3.wav", "1_b_12.wav"])
    [(tr, te)] = fixed_split(rows, test=["*_[0-4].wav"])
    assert te.tolist() == [0, 2] and tr.tolist() == [1, 3]
    [(tr, te)] = fixed_split(rows, test=["0_a_0.wav"], train=["1_b_12.wav"])
    assert te.tolist() == [0] and tr.tolist() == [3]
    with pytest.raises(ParameterError, match="overlap"):
        fixed_split(rows, test=["*"], train=["0_a_0.wav"])
    with pytest.raises(ParameterError, match="no recording matches"):
        fixed_split(rows, test=["nothing"])


# -- clips -------------------------------------------------------------------------------------
def test_cut_clips_whole_clips_each_normalised(rng):
    config = FeatureConfig()  # 100 frames per second, per-recording CMVN
    X = rng.normal(3, 2, (1050, config.n_features)).astype(np.float32)
    clips = cut_clips(X, config, 2.0)
    assert [c.shape[0] for c in clips] == [200] * 5  # the 50-frame tail is dropped
    for c in clips:
        np.testing.assert_allclose(c.mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(c.std(axis=0), 1, atol=1e-3)
    assert [c.shape[0] for c in cut_clips(X[:150], config, 2.0)] == [150]  # shorter than a clip: kept whole
    with pytest.raises(ParameterError, match="clip"):
        cut_clips(X, config, 0)


# -- the workflow ------------------------------------------------------------------------------
def test_cross_validate_groups_and_clips(tone_corpus):
    # Stationary tones: without CMVN (per-clip normalisation would flatten them).
    ev = pipeline.cross_validate(tone_corpus / "train", n_splits=2, group_by=r"_(\d)\.wav", n_components=2,
                                 clip=0.2, feature_config=FeatureConfig(cmvn="none"))
    assert ev.protocol["kind"] == "k-fold" and ev.protocol["n_splits"] == 2
    assert ev.protocol["n_items"] == 12 * 2  # 0.5 s files: two 0.2 s clips each
    assert len(ev.y_true) == 24 and ev.accuracy > 0.9
    for fold in ev.folds:
        assert fold["n_train"] + fold["n_test"] == 24
    assert 0 <= ev.eer <= 0.1


def test_cross_validate_fixed_split_with_ubm(tone_corpus):
    # Classes far apart: only adapted weights tell them apart (means-only MAP leaves the UBM as it is).
    ev = pipeline.cross_validate(tone_corpus / "train", test=["*_0.wav"], method="ubm", n_components=4, adapt="means,weights",
                                 feature_config=FeatureConfig(cmvn="none"))
    assert ev.protocol["kind"] == "fixed" and len(ev.y_true) == 3
    assert ev.accuracy == 1.0


@pytest.fixture
def runner():
    return CliRunner()


def test_cli_evaluate_with_a_protocol(runner, tone_corpus):
    r = runner.invoke(main, ["evaluate", str(tone_corpus / "train"), "--cv", "2", "--group-by", r"_(\d)\.wav",
                             "-k", "2", "-q", "--format", "json", "--cmvn", "none"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["protocol"]["kind"] == "k-fold" and len(out["folds"]) == 2
    assert {"accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion", "eer", "det"} <= set(out)
    r = runner.invoke(main, ["evaluate", str(tone_corpus / "train"), "--test", "*_0.wav", "--method", "ubm", "-k", "4", "-q", "--adapt", "means,weights",
                             "--cmvn", "none"])
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.stdout and "EER (one vs rest)" in r.stdout and "fixed, 1 split(s)" in r.stdout


def test_cli_evaluate_protocol_errors(runner, tone_corpus, tmp_path):
    model = tmp_path / "m.agmm"
    r = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(model), "-k", "2", "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["evaluate", str(model), str(tone_corpus / "test"), "--cv", "3"])
    assert r.exit_code == 2 and "--cv applies only without a MODEL" in r.stderr
    r = runner.invoke(main, ["evaluate", str(tone_corpus / "train"), "--cv", "3", "--test", "x*"])
    assert r.exit_code == 2 and "alternatives" in r.stderr
    r = runner.invoke(main, ["evaluate", str(tone_corpus / "train"), "--group-by", "nomatch", "-q"])
    assert r.exit_code == 2 and "does not match" in r.stderr


def test_cli_train_ubm_round_trip(runner, tone_corpus, tmp_path):
    model = tmp_path / "u.agmm"
    r = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(model), "--method", "ubm", "-k", "4", "--adapt", "means,weights",
                             "-q", "--cmvn", "none"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["evaluate", str(model), str(tone_corpus / "test"), "--format", "json", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["accuracy"] == 1.0
    r = runner.invoke(main, ["info", str(model), "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["training"]["method"] == "ubm"


def test_group_keys_read_a_commented_manifest_as_discover_does(tmp_path):
    """Regression: evaluation's own parser took the '# ...' line for the header."""
    manifest = tmp_path / "m.tsv"
    manifest.write_text("# speakers of the test set\npath\tlabel\tspeaker\n\nx/a.wav\tde\tAnna\n# b\nx/b.wav\tde\tBen\n")
    from audiogmm.dataset import discover

    rows = discover(manifest)
    assert group_keys(rows, "speaker", dataset=manifest) == ["Anna", "Ben"]
    with pytest.raises(ParameterError, match="manifest columns: path, label, speaker"):
        group_keys(rows, "(", dataset=manifest)


def test_cli_evaluate_group_by_column_of_a_commented_manifest(runner, tone_corpus, tmp_path):
    """`audiogmm evaluate DATA.tsv --group-by speaker` on a manifest `train` reads."""
    lines = ["# generated", "path\tlabel\tspeaker"]
    for p in sorted((tone_corpus / "train").glob("*/*.wav")):
        lines.append(f"{p}\t{p.parent.name}\tspk{p.stem[-1]}")
    manifest = tmp_path / "data.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    r = runner.invoke(main, ["evaluate", str(manifest), "--cv", "2", "--group-by", "speaker", "-k", "2", "-q",
                             "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.stdout
