"""GMM-UBM with MAP adaptation: the maths by hand, scoring, robustness, the model file."""

import json

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from audiogmm.exceptions import ModelFileError, NotFittedError, ParameterError
from audiogmm.features import FeatureConfig
from audiogmm.mixture import score_samples_many
from audiogmm.persistence import TrainedModel, load_model, save_model
from audiogmm.recipes import make_classifier
from audiogmm.ubm import UBMClassifier, balanced_frames, map_adapt, map_statistics


# -- MAP adaptation by hand --------------------------------------------------------------------
def test_map_adapt_one_component_by_hand():
    # Prior: w=1, mu=0, var=1. Data: 4 frames with mean 2 and variance 1, so E[x]=2, E[x^2]=5.
    # alpha = n / (n + r) = 4 / (4 + 16) = 0.2.
    n, F, S = np.array([4.0]), np.array([[8.0]]), np.array([[20.0]])
    w, mu, var = map_adapt([1.0], [[0.0]], [[1.0]], n, F, S, relevance_factor=16, adapt="means,weights,variances")
    assert mu[0, 0] == pytest.approx(0.2 * 2 + 0.8 * 0)  # 0.4
    # variance: alpha E[x^2] + (1 - alpha)(var + mu^2) - new_mu^2 = 1.0 + 0.8 - 0.16
    assert var[0, 0] == pytest.approx(1.64)
    assert w[0] == pytest.approx(1.0)
    # Means only (the default): variances and weights stay the prior's.
    w2, mu2, var2 = map_adapt([1.0], [[0.0]], [[1.0]], n, F, S, relevance_factor=16)
    assert mu2[0, 0] == pytest.approx(0.4) and var2[0, 0] == 1.0 and w2[0] == 1.0


def test_map_adapt_relevance_factor_limits():
    n, F = np.array([10.0, 0.0]), np.array([[30.0], [0.0]])
    prior = ([0.5, 0.5], [[0.0], [5.0]], [[1.0], [1.0]])
    _, mu_tiny_r, _ = map_adapt(*prior, n, F, relevance_factor=1e-9)
    _, mu_huge_r, _ = map_adapt(*prior, n, F, relevance_factor=1e9)
    assert mu_tiny_r[0, 0] == pytest.approx(3.0)  # the data mean
    assert mu_huge_r[0, 0] == pytest.approx(0.0, abs=1e-6)  # the prior
    assert mu_tiny_r[1, 0] == 5.0  # a component without data keeps the prior


def test_map_adapt_weights_by_hand():
    # Two components, counts 30 and 10 (T = 40), r = 10: alpha = 0.75 and 0.5.
    # w1 ~ 0.75 * 0.75 + 0.25 * 0.5 = 0.6875, w2 ~ 0.5 * 0.25 + 0.5 * 0.5 = 0.375; normalised.
    w, _, _ = map_adapt([0.5, 0.5], [[0.0], [1.0]], [[1.0], [1.0]], [30.0, 10.0], [[0.0], [10.0]],
                        relevance_factor=10, adapt="weights")
    np.testing.assert_allclose(w, np.array([0.6875, 0.375]) / 1.0625)


def test_map_statistics_match_direct_computation(rng):
    w, mu, var = np.array([0.3, 0.7]), rng.normal(0, 1, (2, 3)), rng.uniform(0.5, 2, (2, 3))
    X = rng.normal(0, 1, (50, 3))
    n, F, S, ll = map_statistics(X, w, mu, var, block_size=7, dtype="float64")  # the engine's statistics
    logp = np.log(w) + norm.logpdf(X[:, None, :], mu, np.sqrt(var)).sum(axis=2)
    gamma = np.exp(logp - logsumexp(logp, axis=1, keepdims=True))
    np.testing.assert_allclose(n, gamma.sum(0))
    np.testing.assert_allclose(F, gamma.T @ X)
    np.testing.assert_allclose(S, gamma.T @ X**2)
    assert ll == pytest.approx(logsumexp(logp, axis=1).sum())


@pytest.mark.parametrize("bad, match", [
    (dict(relevance_factor=0), "relevance_factor"),
    (dict(adapt="mean"), "adapt"),
    (dict(adapt=""), "adapt"),
])
def test_map_adapt_rejects_bad_parameters(bad, match):
    with pytest.raises(ParameterError, match=match):
        map_adapt([1.0], [[0.0]], [[1.0]], [1.0], [[1.0]], [[2.0]], **bad)


def test_balanced_frames_gives_every_class_the_same_share(rng):
    frames = [np.full((100, 1), 0.0), np.full((7, 1), 1.0), np.full((30, 1), 2.0)]
    X = balanced_frames(frames, random_state=rng)
    assert np.bincount(X[:, 0].astype(int)).tolist() == [100, 100, 100]
    X = balanced_frames(frames, max_frames=60, random_state=rng)
    assert np.bincount(X[:, 0].astype(int)).tolist() == [20, 20, 20]


# -- the classifier ----------------------------------------------------------------------------
@pytest.fixture
def data(rng):
    # Three classes that share most of their space and differ by a shift: what MAP is for.
    centres = {"a": [0, 0, 0], "b": [1.5, 0, 0], "c": [0, 1.5, 0]}
    X, y = [], []
    for label, c in centres.items():
        for _ in range(4):
            X.append(rng.normal(c, 1, (150, 3)) + rng.choice([-2, 2], size=(150, 1)))
            y.append(label)
    return X, y, centres


def test_fit_predict_and_sklearn_protocol(data, rng):
    X, y, centres = data
    clf = UBMClassifier(n_components=4, random_state=0)
    assert clf.fit(X, y) is clf
    assert clf.classes_.tolist() == ["a", "b", "c"] and clf.n_features_in_ == 3
    test = [rng.normal(c, 1, (200, 3)) + rng.choice([-2, 2], size=(200, 1)) for c in centres.values()]
    assert clf.predict(test).tolist() == ["a", "b", "c"]
    proba = clf.predict_proba(test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.get_params()["relevance_factor"] == 16.0
    assert clf.set_params(top_c=2) is clf and clf.top_c == 2
    with pytest.raises(ParameterError, match="invalid parameter"):
        clf.set_params(n_mixtures=3)
    assert "n_components=4" in repr(clf)


def test_ubm_threads_do_not_change_the_model(rng):
    # 18 000 frames: more than one chunk of row blocks, so n_jobs=2 really runs two threads
    X = [rng.normal(i % 3, 1, (1500, 3)).astype(np.float32) for i in range(12)]
    y = [i % 3 for i in range(12)]
    one = UBMClassifier(n_components=4, random_state=0, n_jobs=1).fit(X, y)
    two = UBMClassifier(n_components=4, random_state=0, n_jobs=-1).fit(X, y)
    for attr in ("weights_", "means_", "variances_"):
        np.testing.assert_array_equal(getattr(one.ubm_, attr), getattr(two.ubm_, attr))
    np.testing.assert_array_equal(one.decision_function(X[:3]), two.decision_function(X[:3]))


def test_scores_are_mean_llr_and_top_c_approximates_exact(data, rng):
    X, y, _ = data
    clf = UBMClassifier(n_components=6, top_c=None, random_state=0).fit(X, y)
    T = rng.normal(0, 1.5, (80, 3))
    exact = clf.score_recordings([T])[0]
    reference = (score_samples_many(clf.gmms_, T) - clf.ubm_.score_samples(T)[:, None]).mean(axis=0)
    np.testing.assert_allclose(exact, reference, atol=1e-4)
    approx = clf.set_params(top_c=3).score_recordings([T])[0]
    np.testing.assert_allclose(approx, exact, atol=0.05)


@pytest.mark.parametrize("adapt", ["means", "means,weights,variances"])
def test_never_nan_far_from_the_data(data, adapt):
    X, y, _ = data
    clf = UBMClassifier(n_components=4, adapt=adapt, random_state=0).fit(X, y)
    far = [np.full((5, 3), 1e6), np.full((3, 3), -1e12), np.array([[1e8, -1e8, 0.0]]), np.zeros((1, 3))]
    for top_c in (5, 2, None):
        clf.top_c = top_c
        scores = clf.score_recordings(far)
        assert np.all(np.isfinite(scores))
        assert np.all(np.isfinite(clf.predict_proba(far)))


def test_errors_before_work():
    with pytest.raises(ParameterError, match="n_components"):
        UBMClassifier(n_components=0).fit([np.zeros((10, 2))], ["a"])
    with pytest.raises(ParameterError, match="top_c"):
        UBMClassifier(top_c=0).fit([np.zeros((10, 2))], ["a"])
    with pytest.raises(NotFittedError):
        UBMClassifier().predict([np.zeros((3, 2))])
    with pytest.raises(ParameterError, match="method"):
        make_classifier("gmm-ubm")


# -- the model file ----------------------------------------------------------------------------
@pytest.fixture
def ubm_model(rng):
    config = FeatureConfig()
    d = config.n_features
    X = [rng.normal(c, 1, (80, d)) for c in (0, 0, 0.5, 0.5, 1)]
    clf = UBMClassifier(n_components=3, top_c=2, adapt="means,variances", random_state=0).fit(X, list("aabbc"))
    return TrainedModel(clf, config, {"dataset": "somewhere"})


def test_model_file_round_trip_for_ubm(tmp_path, ubm_model, rng):
    path = save_model(ubm_model, tmp_path / "m.agmm")
    loaded = load_model(path)
    clf0, clf1 = ubm_model.classifier, loaded.classifier
    assert isinstance(clf1, UBMClassifier)
    assert clf1.get_params() == {**clf0.get_params(), "random_state": 0}
    for name in ("weights_", "means_", "variances_"):
        np.testing.assert_array_equal(getattr(clf0.ubm_, name), getattr(clf1.ubm_, name))
        for g0, g1 in zip(clf0.gmms_, clf1.gmms_):
            np.testing.assert_array_equal(getattr(g0, name), getattr(g1, name))
    X = [rng.normal(0.5, 1, (30, ubm_model.feature_config.n_features))]
    np.testing.assert_array_equal(clf1.score_recordings(X), clf0.score_recordings(X))
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["metadata"].tobytes())
    assert meta["method"] == "ubm" and meta["format_version"] == 1


def test_unknown_method_is_a_model_file_error(tmp_path, ubm_model):
    path = save_model(ubm_model, tmp_path / "m.agmm")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["metadata"].tobytes())
    meta["method"] = "i-vector"
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(open(tmp_path / "bad.agmm", "wb"), **arrays)
    with pytest.raises(ModelFileError, match="unknown method 'i-vector'"):
        load_model(tmp_path / "bad.agmm")
    del arrays["ubm_means"]
    arrays["metadata"] = np.frombuffer(json.dumps({**meta, "method": "ubm"}).encode(), dtype=np.uint8)
    np.savez(open(tmp_path / "bad2.agmm", "wb"), **arrays)
    with pytest.raises(ModelFileError, match="inconsistent"):
        load_model(tmp_path / "bad2.agmm")


def test_per_class_files_without_method_still_load(tmp_path, rng):
    from audiogmm.classifier import GMMClassifier

    config = FeatureConfig()
    X = [rng.normal(c, 1, (40, config.n_features)) for c in (0, 1)]
    model = TrainedModel(GMMClassifier(2, random_state=0).fit(X, ["a", "b"]), config)
    path = save_model(model, tmp_path / "m.agmm")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["metadata"].tobytes())
    assert meta.pop("method") == "per-class"  # a format-1 file from before the key existed
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(open(tmp_path / "old.agmm", "wb"), **arrays)
    assert isinstance(load_model(tmp_path / "old.agmm").classifier, GMMClassifier)


def test_row_logsumexp_agrees_with_scipy():
    from audiogmm.ubm import _logsumexp_rows

    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 5)) * 40 - 300
    a[0] = -np.inf
    a[1, :4] = -np.inf
    np.testing.assert_allclose(_logsumexp_rows(a)[1:], logsumexp(a, axis=1)[1:], rtol=1e-12)
    assert _logsumexp_rows(a)[0] == -np.inf and logsumexp(a[:1], axis=1)[0] == -np.inf
    assert _logsumexp_rows(a)[1] == a[1, 4]


def test_ubm_scores_match_scipy_logsumexp_scoring(rng):
    # the frame LLRs equal those computed with scipy's logsumexp, to rounding, top-C and exact
    from audiogmm import ubm as ubm_module

    X = [rng.normal(size=(200, 4)) + (i % 3) for i in range(9)]
    y = [str(i % 3) for i in range(9)]
    for top_c in (3, None):
        clf = UBMClassifier(8, top_c=top_c, random_state=0).fit(X, y)
        fast = clf.score_frames(X[0])
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ubm_module, "_logsumexp_rows", lambda a: logsumexp(a, axis=1))
            slow = clf.score_frames(X[0])
        np.testing.assert_allclose(fast, slow, rtol=1e-11, atol=1e-12)
