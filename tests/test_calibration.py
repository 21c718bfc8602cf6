"""Calibrators: the maths, the state round trip, and calibration as train() and --segment use it."""

import numpy as np
import pytest
from scipy.special import log_softmax

from audiogmm import evaluation, pipeline
from audiogmm.calibration import SoftmaxCalibrator, TemperatureCalibrator, calibrator_from_state
from audiogmm.classifier import GMMClassifier
from audiogmm.exceptions import ParameterError
from audiogmm.features import FeatureConfig
from audiogmm.ubm import UBMClassifier


def sampled(rng, n, n_classes, scale, *, spread=1.0, prior=None):
    """Scores and labels drawn so that softmax(scale * (scores + log prior)) is the true posterior."""
    scores = rng.normal(0, spread, (n, n_classes))
    lp = np.log(np.full(n_classes, 1.0 / n_classes) if prior is None else np.asarray(prior))
    p = np.exp(log_softmax(scale * (scores + lp), axis=1))
    y = np.array([rng.choice(n_classes, p=row) for row in p])
    return scores, y, lp


def nll(log_proba, y):
    return -np.mean(log_proba[np.arange(y.size), y])


@pytest.mark.parametrize("true_scale", [0.3, 1.0, 4.0])
def test_temperature_recovers_a_known_scale(rng, true_scale):
    scores, y, lp = sampled(rng, 4000, 4, true_scale)
    cal = TemperatureCalibrator(label_smoothing=0).fit(scores, y, lp)
    assert cal.scale_ == pytest.approx(true_scale, rel=0.1)
    assert cal.bias_ is None


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("true_scale", [0.2, 1.0, 6.0])
def test_fitted_nll_is_never_worse_than_softmax(rng, true_scale, bias):
    scores, y, lp = sampled(rng, 300, 3, true_scale, prior=[0.5, 0.3, 0.2])
    cal = TemperatureCalibrator(bias=bias, label_smoothing=0).fit(scores, y, lp)
    before = nll(SoftmaxCalibrator().log_proba(scores, lp), y)
    assert nll(cal.log_proba(scores, lp), y) <= before + 1e-9


def test_biases_recover_class_offsets(rng):
    scores, y, lp = sampled(rng, 6000, 3, 2.0)
    shifted = scores - np.array([0.0, 0.5, -0.5])  # the model under-scores class 1, over-scores class 2
    cal = TemperatureCalibrator(bias=True, label_smoothing=0).fit(shifted, y, lp)
    np.testing.assert_allclose(cal.bias_, [0.0, 1.0, -1.0], atol=0.15)
    assert cal.scale_ == pytest.approx(2.0, rel=0.1)


def test_separable_scores_keep_a_finite_scale():
    scores = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    y = np.array([0, 1] * 10)
    lp = np.log([0.5, 0.5])
    cal = TemperatureCalibrator().fit(scores, y, lp)  # "auto" smoothing: eps = 1 / (20 + 2)
    top = np.exp(cal.log_proba(scores, lp)).max(axis=1)
    np.testing.assert_allclose(top, 1 - 1 / 22 / 2, atol=1e-3)


def test_the_label_is_the_top_class_whatever_the_priors(rng):
    scores, y, lp = sampled(rng, 500, 4, 0.4, prior=[0.7, 0.1, 0.1, 0.1])
    cal = TemperatureCalibrator().fit(scores, y, lp)
    assert cal.scale_ != pytest.approx(1.0, abs=0.05)
    np.testing.assert_array_equal(np.argmax(cal.log_proba(scores, lp), axis=1), np.argmax(scores + lp, axis=1))


def test_rows_with_a_missing_class_are_left_out(rng):
    scores, y, lp = sampled(rng, 400, 3, 2.0)
    holes = scores.copy()
    holes[:50, 1] = np.nan
    a = TemperatureCalibrator().fit(holes, y, lp).scale_
    assert a == TemperatureCalibrator().fit(scores[50:], y[50:], lp).scale_


def test_a_class_absent_from_a_fold_counts_as_impossible(rng):
    scores, y, lp = sampled(rng, 3000, 3, 2.0)
    absent = scores.copy()
    rows = np.flatnonzero(y != 2)[:1000]
    absent[rows, 2] = -np.inf  # these rows were scored by models without class 2
    keep = np.ones(y.size, bool)
    keep[np.flatnonzero(y == 2)[:5]] = False
    absent[~keep, 2] = -np.inf  # and a few class-2 rows have no score for their own class: left out
    cal = TemperatureCalibrator(label_smoothing=0).fit(absent, y, lp)
    assert cal.scale_ == pytest.approx(2.0, rel=0.1)
    p = np.exp(cal.log_proba(absent[rows], lp))
    assert np.all(p[:, 2] == 0) and np.allclose(p.sum(axis=1), 1)


def test_fit_rejects_bad_input(rng):
    scores, y, lp = sampled(rng, 20, 3, 1.0)
    with pytest.raises(ParameterError, match="y must hold one class index"):
        TemperatureCalibrator().fit(scores, y + 3, lp)
    with pytest.raises(ParameterError, match="label_smoothing must be"):
        TemperatureCalibrator(label_smoothing=1.5).fit(scores, y, lp)
    with pytest.raises(ParameterError, match="scores must have shape"):
        TemperatureCalibrator().fit(scores, y, lp[:2])


def short_piece_data(rng, n_items=600, n_ref=200):
    """Per-frame evidence of strength 0.05 nats: a piece of n frames has mean-score noise ~ 1/sqrt(n)."""
    def draw(n):
        y = rng.integers(0, 2, n_items)
        mu = np.where(y[:, None] == np.arange(2), 0.05, -0.05)
        return mu + rng.normal(0, 1 / np.sqrt(n), (n_items, 2)), y

    full, y_full = draw(n_ref)
    pieces = [draw(m) for m in (100, 50, 25, 12)]
    p_scores = np.concatenate([s for s, _ in pieces])
    p_y = np.concatenate([y for _, y in pieces])
    p_n = np.repeat([100, 50, 25, 12], n_items)
    return full, y_full, np.full(n_items, n_ref), (p_scores, p_y, p_n)


def test_short_inputs_are_tempered(rng):
    full, y, n, pieces = short_piece_data(rng)
    lp = np.log([0.5, 0.5])
    cal = TemperatureCalibrator().fit(full, y, lp, n_frames=n, pieces=pieces)
    assert cal.n_frames_ref_ == 200.0
    assert 0.3 < cal.length_exponent_ <= 1.0  # independent frames: the evidence grows with n
    s = np.array([[1.0, 0.0]])
    p_full = np.exp(cal.log_proba(s, lp))[0, 0]
    p_long = np.exp(cal.log_proba(s, lp, n_frames=[5000]))[0, 0]
    p_short = np.exp(cal.log_proba(s, lp, n_frames=[10]))[0, 0]
    assert p_long == p_full  # never more confident than at the fitted length
    assert 0.5 < p_short < p_full
    # calibrated on the pieces: a 12-frame piece's NLL is better tempered than not
    short = pieces[2] == 12
    ps, py, pn = (a[short] for a in pieces)
    assert nll(cal.log_proba(ps, lp, n_frames=pn), py) < nll(cal.log_proba(ps, lp), py)
    with pytest.raises(ParameterError, match="n_frames must hold one positive frame count"):
        cal.log_proba(s, lp, n_frames=[0])


# -- state ---------------------------------------------------------------------------------------
def fitted_classifier(rng, cls=GMMClassifier, **params):
    X = [rng.normal(m, 1, (40, 3)) for m in (0, 0, 0, 2, 2, 2, 4, 4, 4)]
    y = ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    return cls(n_components=2, random_state=0, **params).fit(X, y), X, y


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("cls", [GMMClassifier, UBMClassifier])
def test_round_trip_through_arrays(rng, cls, bias):
    clf, X, y = fitted_classifier(rng, cls)
    scores = clf.score_recordings(X)
    clf.calibrator_ = TemperatureCalibrator(bias=bias).fit(
        scores, np.searchsorted(clf.classes_, y), np.log(clf.class_prior_), n_frames=[40] * 9,
        pieces=(scores, np.searchsorted(clf.classes_, y), [10] * 9))
    state, arrays = clf.to_arrays()
    assert state["calibration"]["kind"] == "temperature"
    assert ("calibration_bias" in arrays) == bias
    import json

    state = json.loads(json.dumps(state))  # the model file stores it as JSON
    again = type(clf).from_arrays(clf.get_params(), state, arrays)
    assert isinstance(again.calibrator_, TemperatureCalibrator)
    assert again.calibrator_.to_dict() == clf.calibrator_.to_dict()
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_bad_calibrator_state_is_refused():
    good = {"kind": "temperature", "bias": False, "label_smoothing": "auto", "scale": 2.0, "n_frames_ref": 50.0,
            "length_exponent": 0.5}
    assert calibrator_from_state(good).scale_ == 2.0
    for bad in ({**good, "scale": -1.0}, {**good, "length_exponent": 2.0}, {"kind": "temperature"}):
        with pytest.raises(ParameterError, match="temperature calibrator state"):
            calibrator_from_state(bad)
    with pytest.raises(ParameterError, match="bias"):
        calibrator_from_state({**good, "bias": True})
    with pytest.raises(ParameterError, match="unknown calibrator 'platt'"):
        calibrator_from_state({"kind": "platt"})


# -- in the workflows ------------------------------------------------------------------------------
def test_train_fits_a_calibrator_and_keeps_the_labels(tone_corpus):
    kw = dict(feature_config=FeatureConfig(cmvn="none"), n_components=2, random_state=0)
    model = pipeline.train(tone_corpus / "train", **kw)
    plain = pipeline.train(tone_corpus / "train", calibrate=False, **kw)
    cal = model.classifier.calibrator_
    assert isinstance(cal, TemperatureCalibrator) and isinstance(plain.classifier.calibrator_, SoftmaxCalibrator)
    info = model.summary["calibration"]
    assert info["kind"] == "temperature" and info["n_splits"] == 3 and info["n_held_out"] == 12
    assert info["scale"] == cal.scale_ and plain.summary["calibration"]["reason"] == "calibrate=False"
    # the mixtures are the same model: calibration trains extra classifiers, it does not touch this one
    np.testing.assert_array_equal(model.classifier.gmms_[0].means_, plain.classifier.gmms_[0].means_)
    preds, _ = pipeline.predict(model, [tone_corpus / "test"])
    plain_preds, _ = pipeline.predict(plain, [tone_corpus / "test"])
    assert [p.label for p in preds] == [p.label for p in plain_preds]
    p = np.array([p.probabilities for p in preds])
    q = np.array([p.probabilities for p in plain_preds])
    assert not np.allclose(p, q)
    np.testing.assert_allclose(p, np.exp(cal.log_proba(np.array([p.scores for p in preds]),
                                                       np.log(model.classifier.class_prior_),
                                                       n_frames=[p.n_frames for p in preds])))
    ev = pipeline.evaluate(model, tone_corpus / "test")
    assert ev.calibration["n"] == 6 and set(ev.calibration["softmax"]) == {"ece", "log_loss", "brier"}
    assert ev.to_dict()["calibration"]["coverage"][0]["threshold"] == 0.5


def test_train_groups_the_calibration_folds(tone_corpus):
    kw = dict(feature_config=FeatureConfig(cmvn="none"), n_components=1, random_state=0)
    # two groups per class (files 0-1 and 2-3): two folds, each holding one group of every class out
    model = pipeline.train(tone_corpus / "train", group_by=r"^[a-z]+/(?=[a-z]+_[01])|^[a-z]+/[a-z]+", **kw)
    assert model.summary["calibration"]["n_splits"] == 2
    with pytest.raises(ParameterError, match="does not match"):
        pipeline.train(tone_corpus / "train", group_by=r"nothing-like-this", **kw)
    # classes in one group each are never held out: every fold trains on all of them, so each
    # held-out recording is scored against every class (no -inf column), as at prediction
    seen = []
    real = evaluation.out_of_fold_scores

    def spy(features, labels, splits, make, **kwargs):
        seen.extend(splits)
        out = real(features, labels, splits, make, **kwargs)
        seen.append(out)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluation, "out_of_fold_scores", spy)
        model = pipeline.train(tone_corpus / "train", group_by=r"^(low|noise|high/high_[01]|high/high_[23])", **kw)
    info = model.summary["calibration"]
    assert info["kind"] == "temperature" and info["single_group_classes"] == ["low", "noise"]
    assert info["n_held_out"] == 4  # the high recordings only
    *splits, oof = seen
    labels = np.array([p.parent.name for p in sorted((tone_corpus / "train").glob("*/*.wav"))])
    held = np.concatenate([te for _, te in splits])
    assert sorted(held) == list(np.flatnonzero(labels == "high"))  # only high is held out, each once
    for tr, te in splits:
        assert set(np.flatnonzero(labels != "high")) <= set(tr)  # low and noise train every fold
    assert np.all(np.isfinite(oof["scores"][held]))  # scored by models of all three classes
    # one group per class: nothing can be held out, the softmax is kept and the summary says why
    model = pipeline.train(tone_corpus / "train", group_by=r"^([a-z]+)/", **kw)
    assert isinstance(model.classifier.calibrator_, SoftmaxCalibrator)
    assert "too few recordings (or groups) per class" in model.summary["calibration"]["reason"]
    with pytest.raises(ParameterError, match="calibrate must be True or False"):
        pipeline.train(tone_corpus / "train", calibrate="yes", **kw)


def test_a_short_trailing_segment_does_not_claim_certainty(tone_corpus, write_wav):
    from conftest import synth_tone

    model = pipeline.train(tone_corpus / "train", feature_config=FeatureConfig(cmvn="none"), n_components=2,
                           random_state=0)
    cal = model.classifier.calibrator_
    path = write_wav("tail.wav", synth_tone("low", seconds=2.05, seed=7))  # segments of 1 s, 1 s, 0.05 s
    t = pipeline.predict_segments(model, [path], 1.0)[0][0]
    *whole, tail = t.segments
    assert tail.end - tail.start == pytest.approx(0.05) and tail.n_frames < cal.n_frames_ref_
    lp = np.log(model.classifier.class_prior_)
    for s in t.segments:
        np.testing.assert_allclose(s.probabilities, np.exp(cal.log_proba(s.scores[None], lp, n_frames=[s.n_frames]))[0])
    # the same scores as long as a training recording would be more confident than the tail is
    as_if_whole = np.exp(cal.log_proba(tail.scores[None], lp))[0].max()
    assert cal.length_exponent_ > 0 and tail.confidence < as_if_whole
    assert tail.confidence < 0.99 and all(s.confidence < 0.99 for s in whole)


def test_cross_validate_reports_calibration(tone_corpus):
    ev = pipeline.cross_validate(tone_corpus / "train", n_splits=2, feature_config=FeatureConfig(cmvn="none"),
                                 n_components=1, random_state=0)
    assert ev.protocol["calibrate"] is True
    assert all(f["calibration"]["kind"] == "temperature" for f in ev.folds)
    assert ev.calibration["n"] == 12 and 0 <= ev.calibration["ece"] <= 1
    plain = pipeline.cross_validate(tone_corpus / "train", n_splits=2, feature_config=FeatureConfig(cmvn="none"),
                                    n_components=1, random_state=0, calibrate=False)
    assert plain.calibration["ece"] == pytest.approx(plain.calibration["softmax"]["ece"])
    assert plain.y_pred == ev.y_pred


@pytest.mark.parametrize("make", [lambda: GMMClassifier(3, random_state=0),
                                  lambda: UBMClassifier(8, random_state=0, adapt="means,weights")],
                         ids=["per-class", "ubm"])
def test_out_of_fold_scores_with_pieces_are_the_scores_predict_gives(rng, make):
    # with pieces each held-out recording's frames are scored once; the whole-recording scores
    # must still be exactly score_recordings' (what predict prints), long and one-frame ones too
    lengths = [1, 5, 37, 240, 1200] * 4
    X = [(rng.normal(size=(n, 4)) + (i % 2)).astype(np.float32) for i, n in enumerate(lengths)]
    y = np.array(["a", "b"] * 10)
    splits = evaluation.kfold_splits(y, np.arange(20).astype(str), 2, random_state=0)
    plain = evaluation.out_of_fold_scores(X, y, splits, make)
    both = evaluation.out_of_fold_scores(X, y, splits, make, with_pieces=True)
    np.testing.assert_array_equal(both["scores"], plain["scores"])
    for tr, te in splits:
        clf = make().fit([X[i] for i in tr], y[tr])
        np.testing.assert_array_equal(both["scores"][te], np.vstack([clf.score_recordings([X[i]]) for i in te]))
        whole, frames = clf.score_recording_frames(X[te[0]])
        np.testing.assert_array_equal(whole, clf.score_recordings([X[te[0]]])[0])
        np.testing.assert_array_equal(frames, clf.score_frames(X[te[0]]))
    assert both["piece_scores"].shape[0] > 0
