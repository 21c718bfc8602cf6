"""map_statistics by the engine's accumulate vs a direct float64 E-step (scipy); map_adapt."""

import numpy as np
import pytest

from audiogmm.exceptions import ParameterError
from audiogmm.mixture import ConcatSource, ThreadExecutor, map_adapt, map_statistics
from scipy.special import logsumexp
from scipy.stats import norm


def _float64_estep(X, w, mu, var):
    """The Baum-Welch statistics computed directly in float64 (the independent reference)."""
    logp = np.log(w) + norm.logpdf(X[:, None, :], mu, np.sqrt(var)).sum(axis=2)
    gamma = np.exp(logp - logsumexp(logp, axis=1, keepdims=True))
    return gamma.sum(0), gamma.T @ X, gamma.T @ X**2, float(logsumexp(logp, axis=1).sum())


def _gmm(rng, k=8, d=5):
    w = rng.dirichlet(np.ones(k) * 2)
    mu = rng.normal(0, 3, (k, d))
    var = rng.uniform(0.5, 2.0, (k, d))
    return w, mu, var


def _frames(rng, mu, n=3000):
    return (mu[rng.integers(len(mu), size=n)] + rng.normal(0, 1.2, (n, mu.shape[1])))


@pytest.mark.parametrize("dtype, rtol", [("float32", 2e-5), ("float64", 1e-10)])
@pytest.mark.parametrize("k", [1, 8, 20])
def test_map_statistics_agree_with_float64_estep(rng, dtype, rtol, k):
    w, mu, var = _gmm(rng, k)
    X = _frames(rng, mu)
    n0, F0, S0, ll0 = _float64_estep(X, w, mu, var)
    n, F, S, ll = map_statistics(X.astype(np.float32) if dtype == "float32" else X, w, mu, var,
                                 dtype=dtype, block_size=64)
    scale = X.shape[0]  # errors relative to the total count, not to tiny components
    np.testing.assert_allclose(n, n0, rtol=rtol, atol=rtol * scale * 1e-2)
    np.testing.assert_allclose(F, F0, rtol=rtol, atol=rtol * scale * 1e-1)
    np.testing.assert_allclose(S, S0, rtol=rtol, atol=rtol * scale)
    assert ll == pytest.approx(ll0, rel=rtol)


def test_map_statistics_over_sources_and_threads_is_bit_identical(rng):
    w, mu, var = _gmm(rng)
    X = _frames(rng, mu, n=5000).astype(np.float32)
    ref = map_statistics(X, w, mu, var, block_size=32)
    src = ConcatSource([X[:1234], X[1234:4000], X[4000:]])
    for other in (map_statistics(src, w, mu, var, block_size=32),
                  map_statistics(X, w, mu, var, block_size=32, n_jobs=2),
                  map_statistics(src, w, mu, var, block_size=32, executor=ThreadExecutor(2))):
        for a, b in zip(ref, other):
            np.testing.assert_array_equal(a, b)


def test_map_statistics_by_hand_and_errors():
    n, F, S, ll = map_statistics(np.array([[1.0], [3.0]]), [1.0], [[0.0]], [[1.0]])
    np.testing.assert_allclose([n[0], F[0, 0], S[0, 0]], [2.0, 4.0, 10.0], rtol=1e-6)
    assert ll == pytest.approx(-np.log(2 * np.pi) - 5.0, rel=1e-6)
    with pytest.raises(ParameterError, match=r"X must have shape \(n_frames, 1\)"):
        map_statistics(np.zeros((3, 2)), [1.0], [[0.0]], [[1.0]])
    with pytest.raises(ParameterError, match="dtype must be 'float32' or 'float64'"):
        map_statistics(np.zeros((3, 1)), [1.0], [[0.0]], [[1.0]], dtype="float16")


def test_map_adapt_moves_the_mean_by_alpha():
    w, mu, var = map_adapt([1.0], [[0.0]], [[1.0]], [4.0], [[8.0]], relevance_factor=16)
    assert float(mu[0, 0]) == pytest.approx(0.4)
    with pytest.raises(ParameterError, match="relevance_factor must be a finite number > 0"):
        map_adapt([1.0], [[0.0]], [[1.0]], [4.0], [[8.0]], relevance_factor=0)
