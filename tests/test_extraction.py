"""Tests for audiogmm.extraction: the frozen spec, one store per call, scheduling, order, excerpts."""

import pickle
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest

from audiogmm import cache as cache_mod
from audiogmm import extraction, pipeline
from audiogmm.cache import FeatureCache
from audiogmm.exceptions import ParameterError
from audiogmm.extraction import ExtractionSpec, iter_features
from audiogmm.features import FeatureConfig, extract_excerpts, extract_file


def test_spec_is_frozen_validated_and_picklable(tmp_path):
    spec = ExtractionSpec(FeatureConfig(n_mfcc=13), cache_dir=tmp_path / "c", excerpts=(2, 1))
    assert spec.cache_dir == str(tmp_path / "c") and spec.excerpts == (2, 1.0)
    with pytest.raises(FrozenInstanceError):
        spec.with_frames = True
    assert pickle.loads(pickle.dumps(spec)) == spec
    with pytest.raises(ParameterError, match="config must be a FeatureConfig, got dict"):
        ExtractionSpec({})
    with pytest.raises(ParameterError, match="with_frames and excerpts cannot be combined"):
        ExtractionSpec(FeatureConfig(), with_frames=True, excerpts=(2, 1.0))
    with pytest.raises(ParameterError, match="n_excerpts must be an int >= 1, got 0"):
        ExtractionSpec(FeatureConfig(), excerpts=(0, 1.0))
    with pytest.raises(ParameterError, match="cache_dir must be None or a folder path"):
        ExtractionSpec(FeatureConfig(), cache_dir="")
    with pytest.raises(ParameterError, match="spec must be an ExtractionSpec"):
        iter_features([], FeatureConfig())
    with pytest.raises(ParameterError, match="n_jobs must be a resolved worker count"):
        iter_features([], spec, n_jobs=-1)
    with pytest.raises(ParameterError, match="executor must be a distributed.Client"):
        iter_features([], spec, executor=object())


def test_one_feature_cache_per_call(tone_corpus, tmp_path, monkeypatch):
    made = []

    class Counting(FeatureCache):
        def __init__(self, directory):
            made.append(directory)
            super().__init__(directory)

    monkeypatch.setattr(extraction, "FeatureCache", Counting)
    paths = sorted((tone_corpus / "train").rglob("*.wav"))
    spec = ExtractionSpec(FeatureConfig(n_mfcc=13), cache_dir=tmp_path / "c")
    first = list(iter_features(paths, spec))  # all misses, extracted in this process
    second = list(iter_features(paths, spec))  # all hits
    assert len(made) == 2
    assert [r.cached for r in first] == [False] * 12 and [r.cached for r in second] == [True] * 12
    for a, b in zip(first, second):
        assert a.key == b.key and np.array_equal(a.X, b.X)


def test_serial_and_parallel_give_the_same_features_and_reasons(tone_corpus, tmp_path):
    paths = sorted((tone_corpus / "train").rglob("*.wav"))
    paths.insert(5, tmp_path / "missing.wav")
    spec = ExtractionSpec(FeatureConfig(n_mfcc=13, vad=True), with_frames=True)
    ser = list(iter_features(paths, spec))
    par = list(iter_features(paths, spec, n_jobs=2))
    assert [r.index for r in par] == list(range(13))
    for a, b in zip(ser, par, strict=True):
        assert a.reason == b.reason
        if a.X is not None:
            assert np.array_equal(a.X, b.X) and np.array_equal(a.frames, b.frames)
    assert ser[5].X is None and ser[5].reason and ser[5].key is None


def test_excerpt_features_are_cached(tone_corpus, tmp_path, monkeypatch):
    paths = sorted((tone_corpus / "test").rglob("*.wav"))  # 0.5 s files: 2 x 0.1 s is an excerpt run
    cfg, store = FeatureConfig(n_mfcc=13), tmp_path / "c"
    spec = ExtractionSpec(cfg, cache_dir=store, excerpts=(2, 0.1))
    first = list(iter_features(paths, spec))
    for r, p in zip(first, paths):
        assert not r.cached and np.array_equal(r.X, extract_excerpts(p, cfg, n_excerpts=2, seconds=0.1))
        assert r.X.shape[0] < extract_file(p, cfg).shape[0]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cache_mod, "extract_excerpts", no_decoding)
    second = list(iter_features(paths, spec))
    assert all(r.cached for r in second)
    for a, b in zip(first, second):
        assert np.array_equal(a.X, b.X)
    # another excerpt spec is another entry, and whole recordings are untouched by these
    cache = FeatureCache(store)
    assert len({cache.key(paths[0], cfg), cache.key(paths[0], cfg, excerpts=(2, 0.1)),
                cache.key(paths[0], cfg, excerpts=(3, 0.1))}) == 3
    assert not cache.contains(paths[0], cfg)


def test_predict_with_excerpts_reads_the_store_the_second_time(tone_corpus, tmp_path, monkeypatch):
    model = pipeline.train(tone_corpus / "train", feature_config=FeatureConfig(n_mfcc=13), n_components=2)
    paths = sorted((tone_corpus / "test").rglob("*.wav"))
    store = tmp_path / "c"
    first, _ = pipeline.predict(model, paths, excerpts=(2, 0.1), cache_dir=store)
    assert len(list(store.rglob("*.npy"))) == len(paths)  # excerpts no longer bypass the store

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cache_mod, "extract_excerpts", no_decoding)
    second, _ = pipeline.predict(model, paths, excerpts=(2, 0.1), cache_dir=store)
    assert [p.label for p in first] == [p.label for p in second]
    for a, b in zip(first, second):
        assert np.array_equal(a.scores, b.scores)


def test_import_audiogmm_does_not_import_dask():
    code = ("import sys, audiogmm, audiogmm.pipeline, audiogmm.extraction, audiogmm._dask\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_batches_cover_every_path_in_order(tmp_path):
    paths = [tmp_path / f"{i}.wav" for i in range(1000)]
    for p in paths[:10]:
        p.write_bytes(b"x" * 100)
    for n_jobs in (1, 2, -1):
        batches = extraction._batches(paths, pipeline._check_jobs(n_jobs))
        assert [p for b in batches for p in b] == paths
        assert all(len(b) <= extraction._BATCH_FILES for b in batches) and len(batches) >= 4


def test_waves_dispatch_largest_first_and_cover_every_file_once(monkeypatch):
    monkeypatch.setattr(extraction, "_WAVE_BYTES", 1000)
    sizes = [10] * 80 + [900] + [10] * 119  # one long file at the end of the first wave
    waves = extraction._waves(len(sizes), sizes, 2)
    flat = [i for wave in waves for b in wave for i in b]
    assert sorted(flat) == list(range(200))
    spans = [(min(i for b in w for i in b), max(i for b in w for i in b)) for w in waves]
    assert len(waves) == 3 and spans[0] == (0, 80) and all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:]))
    assert 80 in waves[0][0]  # the batch with the long file goes out first
    for wave in waves:
        costs = [sum(sizes[i] for i in b) for b in wave]
        assert costs == sorted(costs, reverse=True)


def test_parallel_results_come_back_in_input_order(tone_corpus, monkeypatch):
    paths = sorted(tone_corpus.rglob("*.wav"))
    monkeypatch.setattr(extraction, "_WAVE_BYTES", 3 * paths[0].stat().st_size)  # several waves
    cfg = FeatureConfig(n_mfcc=13)
    par, _ = pipeline.extract_features(paths, cfg, n_jobs=2)
    ser, _ = pipeline.extract_features(paths, cfg)
    for a, b in zip(par, ser, strict=True):
        np.testing.assert_array_equal(a, b)




def test_load_false_only_fills_the_store(tone_corpus, tmp_path):
    paths = sorted((tone_corpus / "train").rglob("*.wav"))
    spec = ExtractionSpec(FeatureConfig(n_mfcc=13), cache_dir=tmp_path / "c")
    with pytest.raises(ParameterError, match="load=False needs cache_dir"):
        iter_features(paths, ExtractionSpec(FeatureConfig()), load=False)
    meta = list(iter_features(paths, spec, n_jobs=2, load=False))  # workers return no arrays
    assert all(r.X is None and r.reason is None and not r.cached for r in meta)
    again = list(iter_features(paths, spec, load=False))  # checked from the headers
    loaded = list(iter_features(paths, spec))
    assert all(r.cached for r in again + loaded)
    for a, b, c in zip(meta, again, loaded):
        assert a.key == b.key == c.key and a.n_frames == b.n_frames == c.n_frames == c.X.shape[0]


def test_an_executor_whose_workers_cannot_reach_the_store_or_fail(tone_corpus, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from audiogmm.exceptions import AudiogmmError

    paths = sorted((tone_corpus / "train").rglob("*.wav"))[:3]
    spec = ExtractionSpec(FeatureConfig(n_mfcc=13), cache_dir=tmp_path / "c")

    class ElsewhereStore:  # the workers write into a store this process does not see
        def submit(self, fn, batch, spec_):
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(fn, batch, ExtractionSpec(spec_.config, cache_dir=tmp_path / "other"))

    with pytest.raises(ParameterError, match="shared by this machine and every worker"):
        list(iter_features(paths, spec, executor=ElsewhereStore(), load=False))

    class Failing:
        def submit(self, fn, batch, spec_):
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(lambda: 1 / 0)

    failed = r"extraction task for .*high_0.wav and 0 more file\(s\) failed.*ZeroDivisionError"
    with pytest.raises(AudiogmmError, match=failed):
        list(iter_features(paths, spec, executor=Failing()))
    # a concurrent.futures executor serves as well as a Dask client
    with ThreadPoolExecutor(2) as pool:
        got = list(iter_features(paths, spec, executor=pool))
    ref = list(iter_features(paths, ExtractionSpec(FeatureConfig(n_mfcc=13))))
    assert all(np.array_equal(a.X, b.X) for a, b in zip(got, ref, strict=True))
