"""Out-of-core training (issue 13, part 1): classes as frame sources read from the feature store.

Every test compares against in-memory training with ``np.array_equal`` (bit for bit), with
small partitions and block sizes so that chunks and partitions straddle recording boundaries.
"""

import hashlib
import os

import numpy as np
import pytest
from click.testing import CliRunner

import audiogmm.mixture._em as em
import audiogmm.mixture._stats as stats
from audiogmm import pipeline
from audiogmm.cache import FeatureCache
from audiogmm.classifier import GMMClassifier, class_source, mean_score
from audiogmm.cli import main
from audiogmm.exceptions import ParameterError
from audiogmm.features import FeatureConfig
from audiogmm.mixture import ConcatSource, DiagonalGMM
from audiogmm.ubm import UBMClassifier, balanced_frames, balanced_indices

D = 6
# The fits stop after a few iterations on purpose (the same iterations in both ways of training).
pytestmark = pytest.mark.filterwarnings("ignore::audiogmm.exceptions.ConvergenceWarning")


def _corpus(rng, n_classes=3, n_rec=5):
    """Float32 recordings of uneven lengths (1,000-9,000 frames), labels."""
    X, y = [], []
    for c in range(n_classes):
        for _ in range(n_rec):
            n = int(rng.integers(1000, 9000))
            X.append((rng.normal(c, 1.0 + 0.3 * c, (n, D))).astype(np.float32))
            y.append(f"c{c}")
    return X, y


def _stored(X, directory):
    """The recordings written into a feature store, each as a ConcatSource of its loader."""
    cache = FeatureCache(directory)
    config = FeatureConfig()
    sources = []
    for i, x in enumerate(X):
        key = hashlib.sha256(f"recording {i}".encode()).hexdigest()
        assert cache.put(f"rec{i}.wav", config, x, key=key)
        sources.append(ConcatSource([cache.loader(key, n_features=D)], [x.shape[0]], n_features=D,
                                    dtype=np.float32))
    return sources


def _assert_same(a, b):
    sa, aa = a.to_arrays()
    sb, ab = b.to_arrays()
    assert sorted(aa) == sorted(ab)
    for name in aa:
        assert np.array_equal(aa[name], ab[name]), name
    assert sa == sb


@pytest.fixture(params=[(1024, 2), (300, 1), (256, 3)], ids=["b1024-p2", "b300-p1", "b256-p3"])
def small_layout(request, monkeypatch):
    """Block size and partition size small enough that chunks straddle recordings."""
    block, chunks = request.param
    monkeypatch.setattr(stats, "DEFAULT_BLOCK_SIZE", block)
    monkeypatch.setattr(em, "PARTITION_CHUNKS", chunks)
    return request.param


def test_per_class_out_of_core_equals_in_memory(rng, tmp_path, small_layout):
    X, y = _corpus(rng)
    params = dict(n_components=4, max_iter=6, tol=0.0, random_state=0)
    ref = GMMClassifier(**params).fit(X, y)
    scratch = tmp_path / "scratch"
    got = GMMClassifier(**params).fit(_stored(X, tmp_path / "store"), y, scratch_dir=scratch)
    _assert_same(ref, got)
    assert list(got.n_frames_) == list(ref.n_frames_)
    assert not scratch.exists() or not any(scratch.iterdir())  # the frame state is removed


def test_per_class_in_memory_equals_concatenated_fit(rng):
    """Classes as sources change nothing: each class's model is the fit on its concatenation."""
    X, y = _corpus(rng, n_classes=2, n_rec=3)
    clf = GMMClassifier(n_components=3, max_iter=5, random_state=7).fit(X, y)
    seeds = np.random.SeedSequence(7).spawn(2)
    for c, g in enumerate(clf.gmms_):
        Xc = np.concatenate([x for x, lab in zip(X, y) if lab == f"c{c}"])
        ref = DiagonalGMM(**clf._gmm_params(), random_state=np.random.default_rng(seeds[c])).fit(Xc)
        for a in ("weights_", "means_", "variances_"):
            assert np.array_equal(getattr(g, a), getattr(ref, a))
        assert g.lower_bound_ == ref.lower_bound_


@pytest.mark.parametrize("max_frames", [None, 20000])
def test_ubm_out_of_core_equals_in_memory(rng, tmp_path, small_layout, max_frames):
    X, y = _corpus(rng)
    X.append(rng.normal(5, 1, (700, D)).astype(np.float32))  # a small class: whole copies in the pool
    y.append("small")
    params = dict(n_components=8, max_iter=5, tol=0.0, ubm_max_frames=max_frames, random_state=3)
    ref = UBMClassifier(**params).fit(X, y)
    got = UBMClassifier(**params).fit(_stored(X, tmp_path / "store"), y, scratch_dir=tmp_path / "scratch")
    _assert_same(ref, got)
    for a in ("weights_", "means_", "variances_"):
        assert np.array_equal(getattr(ref.ubm_, a), getattr(got.ubm_, a))


def test_ubm_pool_is_balanced_frames(rng):
    """The pool as indices gives exactly the rows balanced_frames pools, from the same draws."""
    frames = [rng.normal(size=(n, 2)) for n in (50, 7, 30)]
    for max_frames in (None, 40):
        idx = balanced_indices([f.shape[0] for f in frames], max_frames, np.random.default_rng(1))
        pooled = balanced_frames(frames, max_frames, np.random.default_rng(1))
        assert np.array_equal(np.concatenate(frames)[idx], pooled)
        src = class_source(frames, 2)
        assert np.array_equal(src.take(idx), pooled)


@pytest.mark.parametrize("n", [1, 9, 129, 1000, 4097, 70001])
def test_mean_score_of_a_source_is_score_of_the_array(rng, n):
    X = rng.normal(size=(n, 3)).astype(np.float32)
    g = DiagonalGMM(2, random_state=0, max_iter=3).fit(np.concatenate([X, X[:2]]))
    parts = np.array_split(X, 3) if n >= 3 else [X]
    src = ConcatSource([lambda p=p: p for p in parts], [p.shape[0] for p in parts], n_features=3)
    assert mean_score(g, src, chunk_blocks=1) == g.score(X)
    assert mean_score(g, src) == g.score(X)


def test_non_finite_frames_in_a_source_are_refused(rng, tmp_path):
    X, y = _corpus(rng, n_classes=2, n_rec=2)
    X[1][5, 2] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        GMMClassifier(n_components=2, max_iter=2).fit(_stored(X, tmp_path / "s1"), y)
    with pytest.raises(ParameterError, match="NaN"):
        UBMClassifier(n_components=2, max_iter=2, ubm_max_frames=50).fit(_stored(X, tmp_path / "s2"), y)


def test_auto_components_need_arrays(rng, tmp_path):
    X, y = _corpus(rng, n_classes=2, n_rec=2)
    with pytest.raises(ParameterError, match="auto"):
        GMMClassifier(n_components="auto").fit(_stored(X, tmp_path / "store"), y)


@pytest.mark.parametrize("method,k", [("per-class", 2), ("ubm", 4)])
def test_pipeline_out_of_core_equals_in_memory(tone_corpus, tmp_path, monkeypatch, method, k):
    monkeypatch.setattr(em, "PARTITION_CHUNKS", 1)
    monkeypatch.setattr(stats, "DEFAULT_BLOCK_SIZE", 64)  # 1,024-frame chunks: recordings are ~50 frames
    store = tmp_path / "store"
    kw = dict(method=method, n_components=k, max_iter=8, random_state=0, cache_dir=store)
    ref = pipeline.train(tone_corpus / "train", **kw)
    got = pipeline.train(tone_corpus / "train", out_of_core=True, **kw)
    _assert_same(ref.classifier, got.classifier)
    assert got.summary["out_of_core"] is True and got.summary["n_recordings"] == 12
    assert not [p for p in os.listdir(store) if p.startswith(".train-scratch")]


def test_pipeline_out_of_core_refusals(tone_corpus, tmp_path):
    with pytest.raises(ParameterError, match="cache_dir"):
        pipeline.train(tone_corpus / "train", n_components=2, out_of_core=True)
    with pytest.raises(ParameterError, match="clip"):
        pipeline.train(tone_corpus / "train", n_components=2, out_of_core=True, cache_dir=tmp_path / "s", clip=0.2)
    with pytest.raises(ParameterError, match="auto"):
        pipeline.train(tone_corpus / "train", n_components="auto", out_of_core=True, cache_dir=tmp_path / "s")
    with pytest.raises(ParameterError, match="out_of_core"):
        pipeline.train(tone_corpus / "train", n_components=2, out_of_core="yes", cache_dir=tmp_path / "s")


def test_cli_out_of_core(tone_corpus, tmp_path):
    runner = CliRunner()
    store = tmp_path / "store"
    a, b = tmp_path / "a.agmm", tmp_path / "b.agmm"
    args = ["train", str(tone_corpus / "train"), "-k", "2", "--cache", str(store), "-q"]
    assert runner.invoke(main, [*args, "-o", str(a)]).exit_code == 0
    result = runner.invoke(main, [*args, "-o", str(b), "--out-of-core"])
    assert result.exit_code == 0, result.output
    with np.load(a) as A, np.load(b) as B:
        assert sorted(A.files) == sorted(B.files)
        for name in A.files:
            if name != "metadata":
                assert np.array_equal(A[name], B[name]), name


def test_cli_out_of_core_needs_cache(tone_corpus, tmp_path, monkeypatch):
    monkeypatch.delenv("AUDIOGMM_CACHE", raising=False)
    result = CliRunner().invoke(main, ["train", str(tone_corpus / "train"), "-o", str(tmp_path / "m.agmm"),
                                       "--out-of-core"])
    assert result.exit_code == 2
    assert "--cache" in result.output
    assert not (tmp_path / "m.agmm").exists()
