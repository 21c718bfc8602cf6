"""Tests for audiogmm.mixture (DiagonalGMM and the engine): maths against scipy/scikit-learn, EM behaviour, robustness, API."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from audiogmm.exceptions import ConvergenceWarning, NotFittedError, ParameterError
from audiogmm.mixture import DiagonalGMM, score_samples_many, select_n_components


def _blobs(rng, n_per=300, centres=((-4, 0, 2), (0, 3, -2), (4, -3, 0)), scale=(1.0, 0.5, 0.8)):
    X = np.concatenate([rng.normal(c, s, (n_per, len(c))) for c, s in zip(centres, scale)])
    return X[rng.permutation(len(X))]


def _random_params(rng, k, d):
    w = rng.dirichlet(np.ones(k) * 3)
    mu = rng.normal(0, 3, (k, d))
    var = rng.uniform(0.3, 2.0, (k, d))
    return w, mu, var


def _model(w, mu, var, dtype="float64"):
    """A model rebuilt from its attributes alone, as the model-file loader does."""
    g = DiagonalGMM(n_components=len(w), dtype=dtype)
    g.weights_, g.means_, g.variances_ = w, mu, var
    g.n_features_in_, g.converged_, g.n_iter_, g.lower_bound_ = mu.shape[1], True, 1, 0.0
    return g


def _reference_em(X, w, mu, var, n_iter, reg_covar):
    """Straightforward unblocked float64 EM (sklearn's equations), for comparison."""
    for _ in range(n_iter):
        logp = np.stack([np.log(w[k]) + norm.logpdf(X, mu[k], np.sqrt(var[k])).sum(axis=1)
                         for k in range(len(w))], axis=1)
        resp = np.exp(logp - logsumexp(logp, axis=1, keepdims=True))
        nk = resp.sum(axis=0) + 10 * np.finfo(float).eps
        mu = resp.T @ X / nk[:, None]
        var = resp.T @ (X * X) / nk[:, None] - mu**2 + reg_covar
        w = nk / nk.sum()
    return w, mu, var


# ---------------------------------------------------------------------------- maths


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 1e-5)])
def test_log_density_matches_scipy(rng, dtype, rtol):
    w, mu, var = _random_params(rng, 5, 4)
    X = rng.normal(0, 3, (257, 4))
    per_comp = np.stack([norm.logpdf(X, mu[k], np.sqrt(var[k])).sum(axis=1) for k in range(5)],
                        axis=1)
    expected = logsumexp(per_comp + np.log(w), axis=1)
    g = _model(w, mu, var, dtype)
    np.testing.assert_allclose(g.score_samples(X), expected, rtol=rtol, atol=rtol)
    # per-component densities through the responsibilities: log r_k + log p(x) = log w_k p_k(x)
    logr = np.log(g.predict_proba(X))
    np.testing.assert_allclose(logr + g.score_samples(X)[:, None], per_comp + np.log(w),
                               rtol=max(rtol, 1e-9), atol=1e3 * rtol)
    np.testing.assert_array_equal(g.predict(X), np.argmax(per_comp + np.log(w), axis=1))
    assert g.score(X) == pytest.approx(expected.mean(), rel=rtol)


def test_far_frames_score_finite(rng):
    w, mu, var = _random_params(rng, 3, 2)
    X = np.array([[1e4, -1e4], [1e8, 0.0], [0.0, 3e15]])
    for dtype in ("float32", "float64"):
        s = _model(w, mu, var, dtype).score_samples(X)
        assert np.all(np.isfinite(s)) and np.all(s < -1e6)


# ---------------------------------------------------------------------------- parity with sklearn


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fit_matches_sklearn(rng, dtype):
    from sklearn.mixture import GaussianMixture

    X = _blobs(rng)
    k = 4
    w0 = np.full(k, 1 / k)
    m0 = X[rng.choice(len(X), k, replace=False)]
    v0 = np.ones((k, X.shape[1]))
    ours = DiagonalGMM(k, weights_init=w0, means_init=m0, variances_init=v0, dtype=dtype,
                       block_size=128).fit(X)
    ref = GaussianMixture(k, covariance_type="diag", weights_init=w0, means_init=m0,
                          precisions_init=1 / v0).fit(X)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.converged_ and ref.converged_
    if dtype == "float64":
        np.testing.assert_allclose(ours.weights_, ref.weights_, atol=1e-6)
        np.testing.assert_allclose(ours.means_, ref.means_, atol=1e-6)
        np.testing.assert_allclose(ours.variances_, ref.covariances_, atol=1e-6)
        assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-9)
        np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-9)
    else:
        assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-4)
        np.testing.assert_allclose(ours.means_, ref.means_, atol=1e-3)
    assert ours.score(X) == pytest.approx(ref.score(X), rel=1e-4)


def test_lower_bound_never_decreases(rng):
    X = np.concatenate([_blobs(rng), rng.normal(0, 4, (300, 3))])
    for dtype, slack in (("float64", 1e-12), ("float32", 1e-6)):
        trace = []
        g = DiagonalGMM(6, tol=0.0, max_iter=60, random_state=0, dtype=dtype, block_size=100,
                        verbose=lambda **kw: trace.append(kw["lower_bound"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0: never "converges"
            g.fit(X)
        assert trace == g.lower_bounds_ and len(trace) == 60
        steps = np.diff(trace)
        assert np.all(steps >= -slack * abs(trace[-1])), steps.min()
        assert trace[-1] > trace[0]


# ---------------------------------------------------------------------------- recovery


def test_recovers_classic_1d_mixture(rng):
    X = np.concatenate([rng.normal(2, 1, 200), rng.normal(-1, 0.8, 600)])[:, None]
    g = DiagonalGMM(2, random_state=0, tol=1e-6, max_iter=500).fit(X)
    order = np.argsort(g.means_[:, 0])
    np.testing.assert_allclose(g.means_[order, 0], [-1, 2], atol=0.2)
    np.testing.assert_allclose(np.sqrt(g.variances_[order, 0]), [0.8, 1.0], atol=0.15)
    np.testing.assert_allclose(g.weights_[order], [0.75, 0.25], atol=0.05)
    assert g.converged_ and g.n_features_in_ == 1


def test_recovers_multid_mixture(rng):
    w, mu, var = np.array([0.5, 0.3, 0.2]), rng.normal(0, 6, (3, 5)), rng.uniform(0.3, 1.5, (3, 5))
    truth = _model(w, mu, var)
    truth.random_state = 1
    X, labels = truth.sample(6000)
    assert X.shape == (6000, 5) and labels.shape == (6000,)
    g = DiagonalGMM(3, random_state=0, n_init=2).fit(X)
    order = [int(np.argmin(((g.means_ - m) ** 2).sum(axis=1))) for m in mu]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(g.weights_[order], w, atol=0.03)
    np.testing.assert_allclose(g.means_[order], mu, atol=0.1)
    np.testing.assert_allclose(g.variances_[order], var, rtol=0.15)
    # refit on its own samples: close to itself
    g.random_state = 2
    Y, _ = g.sample(6000)
    again = DiagonalGMM(3, means_init=g.means_, random_state=0).fit(Y)
    np.testing.assert_allclose(again.means_, g.means_, atol=0.1)
    np.testing.assert_allclose(again.weights_, g.weights_, atol=0.03)


# ---------------------------------------------------------------------------- blocked vs unblocked


def test_blocked_fit_equals_unblocked_reference(rng):
    X = _blobs(rng, n_per=200)
    k, n_iter = 3, 15
    w0, m0, v0 = np.full(k, 1 / k), X[:k].copy(), np.ones((k, 3))
    fits = []
    for bs in (37, 1000):
        g = DiagonalGMM(k, weights_init=w0, means_init=m0, variances_init=v0, tol=0.0,
                        max_iter=n_iter, dtype="float64", block_size=bs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(g.fit(X))
    w, mu, var = _reference_em(X, w0, m0, v0, n_iter, 1e-6)
    for g in fits:
        np.testing.assert_allclose(g.weights_, w, rtol=1e-9)
        np.testing.assert_allclose(g.means_, mu, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(g.variances_, var, rtol=1e-9)
    # float32 blocks vs the float64 reference
    g = DiagonalGMM(k, weights_init=w0, means_init=m0, variances_init=v0, tol=0.0,
                    max_iter=n_iter, block_size=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g.fit(X.astype(np.float32))
    np.testing.assert_allclose(g.means_, mu, atol=1e-4)
    np.testing.assert_allclose(g.variances_, var, rtol=1e-4)


def _fit_path(X, k, use_numba, threads=1, **kw):
    g = DiagonalGMM(k, tol=0.0, max_iter=8, random_state=0, block_size=64, n_jobs=threads, **kw)
    g._use_numba = use_numba
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return g.fit(X)


# 12 > 2D+2: the other scaling branch of NumPy's path; 20 > CHUNK_KERNEL_MAX_K: numba per block
@pytest.mark.parametrize("k", [3, 12, 20])
def test_numba_and_numpy_paths_agree(rng, k):
    from audiogmm.mixture import _stats as engine

    if engine.numba_kernels() is None:
        pytest.skip("numba not available: only the NumPy path exists")
    X = _blobs(rng, n_per=700).astype(np.float32)  # 2100 frames: 33 blocks, 3 chunks
    fast, ref = _fit_path(X, k, True), _fit_path(X, k, False)
    np.testing.assert_allclose(fast.weights_, ref.weights_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fast.means_, ref.means_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast.variances_, ref.variances_, rtol=1e-4)
    np.testing.assert_allclose(fast.lower_bounds_, ref.lower_bounds_, rtol=1e-6)
    # responsibilities through a far-off hint (the out-of-window redo) and the first E-step
    w, mu, var = ref.weights_, ref.means_, ref.variances_
    WT = engine.design_weights(w, mu, var, np.zeros(3)).astype(np.float32)
    out = {}
    for name, nb in (("numba", engine.numba_kernels()), ("numpy", None)):
        ws = engine.Workspace(k, 3, 64, np.dtype(np.float32), np.zeros(3, np.float32))
        hint = np.zeros(len(X), np.float32)
        engine.accumulate(X, WT, np.zeros(3, np.float32), ws, block_size=64,
                           loglik_out=hint, nb=nb)
        hint[::7] -= 50.0  # these frames leave the safe window
        out[name] = engine.accumulate(X, WT, np.zeros(3, np.float32), ws, block_size=64,
                                       hint=hint, loglik_out=hint, nb=nb), hint.copy()
    (a, ha), (b, hb) = out["numba"], out["numpy"]
    np.testing.assert_allclose(ha, hb, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(a.nk, b.nk, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.sum_x, b.sum_x, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("use_numba", [True, False])
def test_row_threads_give_bit_identical_results(rng, use_numba):
    X = _blobs(rng, n_per=800).astype(np.float32)  # 2400 frames = 3 chunks of 16 blocks
    one, two = _fit_path(X, 5, use_numba, 1), _fit_path(X, 5, use_numba, 2)
    for attr in ("weights_", "means_", "variances_", "lower_bounds_"):
        np.testing.assert_array_equal(getattr(one, attr), getattr(two, attr))


def test_numba_missing_falls_back_silently(rng, monkeypatch):
    from audiogmm.mixture import _stats as engine

    X = _blobs(rng).astype(np.float32)
    ref = _fit_path(X, 3, False)
    monkeypatch.setattr(engine, "_NUMBA", [])
    monkeypatch.setitem(sys.modules, "numba", None)  # "import numba" raises ImportError
    monkeypatch.delitem(sys.modules, "audiogmm.mixture._kernels", raising=False)
    monkeypatch.delattr(sys.modules["audiogmm.mixture"], "_kernels", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert engine.numba_kernels() is None
        g = DiagonalGMM(3, tol=0.0, max_iter=8, random_state=0, block_size=64)
        with pytest.warns(ConvergenceWarning):  # tol=0 never converges; nothing else warns
            g.fit(X)
    for attr in ("weights_", "means_", "variances_"):
        np.testing.assert_array_equal(getattr(g, attr), getattr(ref, attr))


# ---------------------------------------------------------------------------- robustness


def test_duplicated_points_and_too_many_components(rng):
    X = np.repeat(rng.normal(0, 5, (3, 2)), 10, axis=0)
    for dtype in ("float32", "float64"):
        with pytest.warns(ConvergenceWarning):
            g = DiagonalGMM(5, random_state=0, dtype=dtype).fit(X)
        for a in (g.weights_, g.means_, g.variances_):
            assert np.all(np.isfinite(a))
        assert np.all(np.isfinite(g.score_samples(X))) and np.isfinite(g.lower_bound_)
        assert g.weights_.sum() == pytest.approx(1.0)


def test_component_on_single_outlier_is_reseeded(rng):
    X = np.concatenate([rng.normal(0, 1, (400, 2)), [[50.0, 50.0]]])
    m0 = np.array([[0.0, 0.0], [1.0, 1.0], [50.0, 50.0]])
    g = DiagonalGMM(3, means_init=m0, random_state=0, max_iter=50)
    with pytest.warns(ConvergenceWarning, match="re-seeded"):
        g.fit(X)
    assert np.all(np.isfinite(g.variances_)) and np.all(g.variances_ > 0)


def test_not_converged_warns(rng):
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        g = DiagonalGMM(4, max_iter=2, random_state=0).fit(_blobs(rng))
    assert not g.converged_ and g.n_iter_ == 2


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize("params, match", [
    ({"n_components": 0}, "n_components must be an int >= 1, got 0"),
    ({"n_components": 2.5}, "n_components must be an int >= 1"),
    ({"tol": -1}, "tol must be a finite number >= 0"),
    ({"reg_covar": float("nan")}, "reg_covar must be"),
    ({"max_iter": -1}, "max_iter must be an int >= 0"),
    ({"n_init": 0}, "n_init must be an int >= 1"),
    ({"init_params": "kmeans"}, "init_params must be one of"),
    ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
    ({"block_size": 0}, "block_size must be an int >= 1"),
    ({"n_jobs": 0}, "n_jobs must be None or a non-zero int"),
    ({"n_jobs": 1.5}, "n_jobs must be None or a non-zero int"),
    ({"random_state": "x"}, "random_state must be"),
    ({"weights_init": [0.5, 0.6]}, "weights_init must be non-negative and sum to 1"),
    ({"means_init": np.zeros((3, 3))}, r"means_init must have shape \(2, 3\)"),
    ({"variances_init": np.zeros((2, 3))}, "variances_init must be > 0"),
])
def test_parameter_errors(rng, params, match):
    params = {"n_components": 2, **params}
    with pytest.raises(ParameterError, match=match):
        DiagonalGMM(**params).fit(rng.normal(size=(20, 3)))


def test_data_errors(rng):
    X = rng.normal(size=(20, 3))
    bad = X.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ParameterError, match="NaN or inf .* row 5"):
        DiagonalGMM(2).fit(bad)
    with pytest.raises(ParameterError, match="n_samples=20 frames but n_components=30"):
        DiagonalGMM(30).fit(X)
    with pytest.raises(ParameterError, match="2-D"):
        DiagonalGMM(2).fit(X[:, 0])
    g = DiagonalGMM(2, random_state=0).fit(X)
    with pytest.raises(ParameterError, match="X has 2 features, but DiagonalGMM is expecting 3"):
        g.score_samples(X[:, :2])
    with pytest.raises(NotFittedError):
        DiagonalGMM(2).score_samples(X)
    with pytest.raises(ParameterError, match="share n_features_in_"):
        score_samples_many([g, DiagonalGMM(1).fit(X[:, :2])], X)


def test_import_is_light():
    code = ("import sys, audiogmm.mixture; bad = [m for m in ('librosa', 'click', 'sklearn', "
            "'joblib') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# ---------------------------------------------------------------------------- API


def test_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    # Skipped check (reason): audiogmm.exceptions.NotFittedError is a ValueError and an
    # AttributeError like scikit-learn's, but gmm.py may not import scikit-learn, so it
    # cannot subclass sklearn.exceptions.NotFittedError, which this check requires.
    expected = {"check_estimators_unfitted": "NotFittedError is audiogmm's own (no sklearn import)"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*does not inherit from .*BaseEstimator")
        check_estimator(DiagonalGMM(), expected_failed_checks=expected, on_skip=None)
    with pytest.raises(NotFittedError):  # what the skipped check asks, with our class
        DiagonalGMM().predict(np.zeros((2, 2)))


def test_clone_and_params():
    from sklearn.base import clone

    g = DiagonalGMM(3, tol=1e-4, dtype="float64", random_state=7)
    c = clone(g)
    assert c is not g and c.get_params() == g.get_params()
    assert g.set_params(n_components=5) is g and g.n_components == 5
    with pytest.raises(ParameterError, match="Invalid parameter 'foo'"):
        g.set_params(foo=1)
    assert "n_components=5" in repr(g)


def test_float32_input_not_copied_and_fit_returns_self(rng):
    X = rng.normal(size=(500, 4)).astype(np.float32)
    g = DiagonalGMM(2, random_state=0)
    assert g.fit(X) is g
    for a in (g.weights_, g.means_, g.variances_):
        assert a.dtype == np.float64
    assert g.score_samples(X).dtype == np.float64
    assert g.predict_proba(X).shape == (500, 2)
    np.testing.assert_allclose(g.predict_proba(X).sum(axis=1), 1.0, rtol=1e-6)


def test_score_samples_many_equals_stacking(rng):
    X = _blobs(rng)
    models = [DiagonalGMM(k, random_state=k).fit(X[i::3]) for i, k in enumerate((1, 3, 4))]
    models.append(DiagonalGMM(3, random_state=9).fit(X + 1))
    got = score_samples_many(models, X, block_size=100)
    assert got.shape == (len(X), 4) and got.dtype == np.float64
    expected = np.stack([m.score_samples(X) for m in models], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    same_k = [models[1], models[3]]
    np.testing.assert_allclose(score_samples_many(same_k, X), expected[:, [1, 3]], rtol=1e-5)


def test_select_n_components(rng):
    X = np.concatenate([rng.normal(c, 0.3, (200, 2)) for c in ([-6, 0], [0, 6], [6, 0])])
    best, values = select_n_components(X, (1, 2, 3, 4, 6), random_state=0)
    assert best.n_components == 3 and set(values) == {1, 2, 3, 4, 6}
    assert values[3] == pytest.approx(best.bic(X))
    _, aics = select_n_components(X, (2, 3), criterion="aic", random_state=0, max_iter=50)
    assert aics[3] < aics[2]
    with pytest.raises(ParameterError, match="criterion must be"):
        select_n_components(X, criterion="xic")


def test_bic_aic_match_sklearn(rng):
    from sklearn.mixture import GaussianMixture

    X = _blobs(rng, n_per=100)
    ours = DiagonalGMM(3, random_state=0, dtype="float64").fit(X)
    ref = GaussianMixture(3, covariance_type="diag", weights_init=ours.weights_,
                          means_init=ours.means_, precisions_init=1 / ours.variances_,
                          max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: one iteration does not converge
        ref.fit(X)
    ref.weights_, ref.means_ = ours.weights_, ours.means_
    ref.covariances_, ref.precisions_cholesky_ = ours.variances_, 1 / np.sqrt(ours.variances_)
    assert ours.bic(X) == pytest.approx(ref.bic(X), rel=1e-10)
    assert ours.aic(X) == pytest.approx(ref.aic(X), rel=1e-10)


def test_sample_shapes_and_max_iter_zero(rng):
    g = DiagonalGMM(2, random_state=0, max_iter=0).fit(_blobs(rng))
    assert g.n_iter_ == 0 and np.isfinite(g.lower_bound_)
    X, labels = g.sample(7)
    assert X.shape == (7, 3) and labels.shape == (7,) and set(labels) <= {0, 1}
