import numpy as np
import pytest

from audiogmm.classifier import GMMClassifier
from audiogmm.exceptions import NotFittedError, ParameterError, TrainingError


def blobs(rng, centers, n_rec=4, n_frames=60, dim=3):
    X, y = [], []
    for label, c in centers.items():
        for _ in range(n_rec):
            X.append(rng.normal(c, 1.0, size=(n_frames, dim)))
            y.append(label)
    return X, y


def test_fit_predict_recordings(rng):
    X, y = blobs(rng, {"a": 0.0, "b": 2.5, "c": -2.5})
    clf = GMMClassifier(n_components=2, random_state=0).fit(X, y)
    assert clf.classes_.tolist() == ["a", "b", "c"]
    assert clf.n_recordings_.tolist() == [4, 4, 4]
    assert clf.n_frames_.tolist() == [240, 240, 240]
    Xt, yt = blobs(rng, {"a": 0.0, "b": 2.5, "c": -2.5}, n_rec=3, n_frames=40)
    assert clf.predict(Xt).tolist() == yt
    proba = clf.predict_proba(Xt)
    assert proba.shape == (9, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.score(Xt, yt) == 1.0


def test_score_is_mean_frame_log_likelihood(rng):
    X, y = blobs(rng, {"a": 0.0, "b": 3.0})
    clf = GMMClassifier(n_components=2, random_state=0).fit(X, y)
    recs = [rng.normal(0, 1, (n, 3)) for n in (1, 7, 50, 300)]
    scores = clf.score_recordings(recs)
    expected = np.array([[g.score_samples(r).mean() for g in clf.gmms_] for r in recs])
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    # probabilities are the documented softmax of mean log-likelihood + log prior
    p = np.exp(expected - expected.max(axis=1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(recs), p / p.sum(axis=1, keepdims=True), rtol=1e-5)


def test_label_is_argmax_of_mean_log_likelihood_with_uniform_priors(rng):
    X, y = blobs(rng, {"a": 0.0, "b": 1.0})
    clf = GMMClassifier(n_components=1, random_state=0).fit(X, y)
    recs = [rng.normal(0.5, 1, (20, 3)) for _ in range(20)]
    s = clf.score_recordings(recs)
    assert clf.predict(recs).tolist() == clf.classes_[s.argmax(axis=1)].tolist()


def test_priors_shift_decision(rng):
    X, y = blobs(rng, {"a": 0.0, "b": 1.0})
    X += [rng.normal(0, 1, (60, 3)) for _ in range(12)]
    y += ["a"] * 12
    emp = GMMClassifier(n_components=1, priors="empirical", random_state=0).fit(X, y)
    np.testing.assert_allclose(emp.class_prior_, [16 / 20, 4 / 20])
    custom = GMMClassifier(n_components=1, priors=[1, 3], random_state=0).fit(X, y)
    np.testing.assert_allclose(custom.class_prior_, [0.25, 0.75])
    rec = [rng.normal(0.5, 1, (5, 3))]
    diff = custom.decision_function(rec) - custom.score_recordings(rec)
    np.testing.assert_allclose(diff[0], np.log([0.25, 0.75]))
    with pytest.raises(ParameterError, match="priors must hold 2 positive"):
        GMMClassifier(n_components=1, priors=[1, 2, 3]).fit(X, y)


def test_frame_level_2d_input(rng):
    X = np.vstack([rng.normal(0, 1, (100, 2)), rng.normal(4, 1, (100, 2))])
    y = np.array([0] * 100 + [1] * 100)
    clf = GMMClassifier(n_components=2, random_state=0).fit(X, y)
    assert clf.n_recordings_.tolist() == [100, 100]
    assert clf.score(X, y) > 0.95
    assert clf.predict(X[:3]).shape == (3,)


def test_reproducible_with_seed_and_jobs(rng):
    X, y = blobs(rng, {"a": 0.0, "b": 2.0, "c": 4.0})
    a = GMMClassifier(n_components=3, random_state=7).fit(X, y)
    b = GMMClassifier(n_components=3, random_state=7, n_jobs=2).fit(X, y)
    for ga, gb in zip(a.gmms_, b.gmms_):
        np.testing.assert_array_equal(ga.means_, gb.means_)


def test_errors(rng):
    X, y = blobs(rng, {"a": 0.0, "b": 2.0}, n_rec=1, n_frames=5)
    with pytest.raises(TrainingError, match=r"class 'a' has 5 frame\(s\) from 1 recording\(s\), fewer than n_components=8"):
        GMMClassifier(n_components=8).fit(X, y)
    with pytest.raises(ParameterError, match="n_components must be an int >= 1, got 0"):
        GMMClassifier(n_components=0).fit(X, y)
    with pytest.raises(ParameterError, match="one label per recording"):
        GMMClassifier(n_components=1).fit(X, y[:1])
    with pytest.raises(NotFittedError, match="not fitted"):
        GMMClassifier().predict(X)
    clf = GMMClassifier(n_components=1).fit(X, y)
    with pytest.raises(ParameterError, match="has 2 features but the classifier was trained on 3"):
        clf.predict([np.zeros((4, 2))])
    bad = [x.copy() for x in X]
    bad[1][0, 0] = np.nan
    with pytest.raises(ParameterError, match=r"X\[1\] contains NaN"):
        GMMClassifier(n_components=1).fit(bad, y)


def test_sklearn_clone_and_params():
    from sklearn.base import clone

    clf = GMMClassifier(n_components=3, priors="empirical", random_state=1)
    c2 = clone(clf)
    assert c2.get_params() == clf.get_params()
    assert "n_components=3" in repr(clf)
