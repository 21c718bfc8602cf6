"""Frame sources, partitions, executors and per-frame state: bit-identical fits.

A fit over a ConcatSource of pieces, an IndexedSource, with the file-backed frame state or
with threads must equal the fit over the concatenated array bit for bit (the canonical
fold: chunks in order within a partition, partitions in order).
"""

import functools
import pickle
import warnings

import numpy as np
import pytest

from audiogmm.exceptions import ConvergenceWarning, ParameterError
from audiogmm.mixture import (ArraySource, ConcatSource, DiagonalGMM, FileFrameState,
                              IndexedSource, SerialExecutor, ThreadExecutor, _em)
from audiogmm.mixture._stats import numba_kernels


def _data(rng, n=3001, d=4, dtype=np.float32):
    centres = rng.normal(0, 3, (5, d))
    return (centres[rng.integers(5, size=n)] + rng.normal(0, 1, (n, d))).astype(dtype)


def _fit(X, *, block_size, dtype, use_numba=True, n_jobs=None, k=4, **fit_kw):
    g = DiagonalGMM(k, tol=0.0, max_iter=6, random_state=3, block_size=block_size,
                    dtype=dtype, n_jobs=n_jobs)
    g._use_numba = use_numba
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return g.fit(X, **fit_kw)


def _assert_same(a, b):
    for attr in ("weights_", "means_", "variances_"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)
    assert a.lower_bounds_ == b.lower_bounds_


def _pieces(X, cuts):
    return [X[a:b] for a, b in zip([0, *cuts], [*cuts, len(X)])]


@pytest.fixture(params=[2, 3], ids=["partition2chunks", "partition3chunks"])
def small_partitions(request, monkeypatch):
    """Several partitions with a few thousand frames (the fold order then matters)."""
    monkeypatch.setattr(_em, "PARTITION_CHUNKS", request.param)
    return request.param


ENGINES = [("float32", True), ("float32", False), ("float64", False)]


@pytest.mark.parametrize("dtype, use_numba", ENGINES, ids=["f32-numba", "f32-numpy", "f64"])
@pytest.mark.parametrize("block_size", [32, 50])
def test_sources_state_and_threads_are_bit_identical(rng, small_partitions, dtype, use_numba,
                                                     block_size, tmp_path):
    if use_numba and numba_kernels() is None:
        pytest.skip("numba not available")
    X = _data(rng, n=5003, dtype=np.dtype(dtype))
    chunk = block_size * 16
    # cuts on, just before and just after chunk and partition boundaries, and an empty piece
    part = chunk * small_partitions
    cuts = sorted([1, chunk - 1, chunk, chunk + 1, part, part + 1, part + 7, part + 7,
                   2 * part - 3])
    ref = _fit(X, block_size=block_size, dtype=dtype, use_numba=use_numba)
    assert X.shape[0] > 2 * part  # several partitions really occur
    parts = _pieces(X, cuts)
    lazy = [functools.partial(np.asarray, p) if i % 2 else p for i, p in enumerate(parts)]
    cases = {
        "concat": ConcatSource(parts),
        "concat-callables": ConcatSource(lazy, lengths=[len(p) for p in parts]),
        "indexed": IndexedSource(X, np.arange(len(X))),
        "array-source": ArraySource(X),
    }
    for name, src in cases.items():
        _assert_same(_fit(src, block_size=block_size, dtype=dtype, use_numba=use_numba), ref)
    _assert_same(_fit(X, block_size=block_size, dtype=dtype, use_numba=use_numba, n_jobs=2),
                 ref)
    with ThreadExecutor(2) as ex:
        _assert_same(_fit(cases["concat"], block_size=block_size, dtype=dtype,
                          use_numba=use_numba, executor=ex), ref)
    state = FileFrameState(tmp_path / "state")
    _assert_same(_fit(cases["concat-callables"], block_size=block_size, dtype=dtype,
                      use_numba=use_numba, frame_state=state, executor=SerialExecutor()), ref)
    state.remove()


def test_indexed_source_equals_the_gathered_array(rng, small_partitions):
    X = _data(rng, n=1200)
    idx = np.concatenate([np.arange(1200), rng.integers(0, 1200, size=900)])  # repeats
    ref = _fit(X[idx], block_size=32, dtype="float32")
    base = ConcatSource(_pieces(X, [100, 640, 641]))
    _assert_same(_fit(IndexedSource(base, idx), block_size=32, dtype="float32"), ref)


def test_reseeding_is_bit_identical_across_sources(rng, small_partitions, tmp_path):
    X = np.concatenate([rng.normal(0, 1, (2500, 2)), [[60.0, 60.0]], rng.normal(0, 1, (5, 2))])
    m0 = np.array([[0.0, 0.0], [1.0, 1.0], [60.0, 60.0]])

    def fit(src, **kw):
        g = DiagonalGMM(3, means_init=m0, random_state=0, max_iter=30, block_size=32)
        with pytest.warns(ConvergenceWarning, match="re-seeded"):
            return g.fit(src, **kw)

    ref = fit(X)
    _assert_same(fit(ConcatSource(_pieces(X, [700, 2501]))), ref)
    _assert_same(fit(X, executor=ThreadExecutor(2)), ref)
    _assert_same(fit(X, frame_state=FileFrameState(tmp_path)), ref)  # worst frames from files


def test_worst_frames_are_deterministic():
    v = np.array([3.0, -1.0, 2.0, -1.0, 5.0, -1.0], dtype=np.float32)
    vals, idx = _em.worst_frames(v, 10, 2)
    assert idx.tolist() == [11, 13] and vals.tolist() == [-1.0, -1.0]
    vals, idx = _em._merge_worst([np.array([-1.0, 2.0]), np.array([-1.0, -5.0])],
                                 [np.array([7, 8]), np.array([3, 9])], 3)
    assert idx.tolist() == [9, 3, 7]


def test_sources_read_exactly_the_concatenated_rows(rng):
    X = _data(rng, n=50, dtype=np.float64)
    parts = _pieces(X, [0, 10, 11, 30])
    src = ConcatSource([functools.partial(np.asarray, p) for p in parts],
                       lengths=[len(p) for p in parts])
    assert (src.n_frames, src.n_features, src.dtype) == (50, 4, np.float64)
    buf = np.empty((64, 4))
    for a, b in [(0, 50), (5, 12), (10, 11), (29, 31), (49, 50)]:
        np.testing.assert_array_equal(src.read(a, b, out=buf), X[a:b])
    view = ConcatSource(parts).read(12, 20)
    assert np.shares_memory(view, X)  # inside one in-memory part: a view
    idx = np.array([49, 0, 10, 10, 29])
    np.testing.assert_array_equal(src.take(idx), X[idx])
    ind = IndexedSource(src, idx)
    np.testing.assert_array_equal(ind.read(1, 5), X[idx[1:5]])
    assert pickle.loads(pickle.dumps(ConcatSource(parts))).n_frames == 50


def test_source_errors(rng):
    X = _data(rng, n=20)
    with pytest.raises(ParameterError, match="part 1 is a callable: pass its frame count"):
        ConcatSource([X, lambda: X])
    with pytest.raises(ParameterError, match="same number of features"):
        ConcatSource([X, X[:, :2]])
    src = ConcatSource([X, lambda: X[:5]], lengths=[20, 6])
    with pytest.raises(ParameterError, match=r"part 1 returned an array of shape \(5, 4\)"):
        src.read(0, 26)
    with pytest.raises(ParameterError, match="indices must lie in"):
        IndexedSource(X, [0, 20])
    with pytest.raises(ParameterError, match="executor must have a map"):
        DiagonalGMM(2).fit(X, executor=object())


def test_file_frame_state_generations(tmp_path):
    st = FileFrameState(tmp_path / "s")
    st.prepare(10, np.float32)
    _, out = st.views(1, 0, 10, False)
    out[:] = np.arange(10)
    st.commit(1, 0, out)
    hint, out = st.views(2, 3, 7, True)
    np.testing.assert_array_equal(hint, [3, 4, 5, 6])
    out[:] = -1
    st.commit(2, 3, out)
    again, _ = st.views(2, 3, 7, True)  # a retried generation-2 task reads the same values
    np.testing.assert_array_equal(again, [3, 4, 5, 6])
    clone = pickle.loads(pickle.dumps(st))
    np.testing.assert_array_equal(clone.views(3, 3, 5, True)[0], [-1, -1])
    st.remove()
    clone.close()
