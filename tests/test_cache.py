"""Tests for audiogmm.cache: keys, invalidation, corrupt entries, and the pipeline/CLI wiring."""

import os

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import synth_tone

from audiogmm import cache as cache_mod
from audiogmm import extraction, pipeline
from audiogmm.cache import FeatureCache
from audiogmm.cli import main
from audiogmm.exceptions import CacheWarning, ParameterError
from audiogmm.features import FeatureConfig, extract_file


@pytest.fixture
def counted(monkeypatch):
    """Count the real extractions done through the cache (serial runs, this process)."""
    calls = []
    real = cache_mod.extract_file

    def counting(path, config, **kwargs):
        calls.append(str(path))
        return real(path, config, **kwargs)

    monkeypatch.setattr(cache_mod, "extract_file", counting)
    return calls


def test_miss_then_hit(tmp_path, write_wav, counted):
    path = write_wav("a.wav", synth_tone("low", seconds=0.5))
    cache = FeatureCache(tmp_path / "c")
    cfg = FeatureConfig()
    assert cache.get(path, cfg) is None and not cache.contains(path, cfg)
    X1 = cache.extract(path, cfg)
    X2 = cache.extract(path, cfg)
    assert counted == [str(path)]  # computed once, then read back
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(X1, extract_file(path, cfg))
    entries = list((tmp_path / "c").rglob("*.npy"))
    assert len(entries) == 1 and not list((tmp_path / "c").rglob(".tmp-*"))
    assert np.load(entries[0], allow_pickle=False).dtype == np.float32


def test_file_change_invalidates(tmp_path, write_wav, counted):
    path = write_wav("a.wav", synth_tone("low", seconds=0.5))
    cache, cfg = FeatureCache(tmp_path / "c"), FeatureConfig()
    X1 = cache.extract(path, cfg)
    st = os.stat(path)
    sf.write(path, synth_tone("high", seconds=0.5), 16000)  # same size, new content
    assert os.stat(path).st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a later mtime, as any write gives
    X2 = cache.extract(path, cfg)
    assert len(counted) == 2 and not np.array_equal(X1, X2)
    np.testing.assert_array_equal(X2, extract_file(path, cfg))


def test_config_change_invalidates_and_coexists(tmp_path, write_wav, counted):
    path = write_wav("a.wav", synth_tone("low", seconds=0.5))
    cache = FeatureCache(tmp_path / "c")
    a, b = FeatureConfig(), FeatureConfig(n_mfcc=13)
    assert cache.key(path, a) != cache.key(path, b)
    cache.extract(path, a)
    assert cache.extract(path, b).shape[1] == 39
    cache.extract(path, a)
    cache.extract(path, b)
    assert len(counted) == 2


def test_key_is_not_the_path_alone(tmp_path, write_wav):
    path = write_wav("a.wav", synth_tone("low", seconds=0.5))
    cache, cfg = FeatureCache(tmp_path / "c"), FeatureConfig()
    k1 = cache.key(path, cfg)
    sf.write(path, synth_tone("low", seconds=0.6), 16000)
    assert cache.key(path, cfg) != k1  # same path, other content
    assert cache.key(tmp_path / "missing.wav", cfg) is None


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle", "shape"])
def test_corrupt_entry_is_recomputed(tmp_path, write_wav, counted, damage):
    path = write_wav("a.wav", synth_tone("low", seconds=0.5))
    cache, cfg = FeatureCache(tmp_path / "c"), FeatureConfig()
    X = cache.extract(path, cfg)
    entry = next((tmp_path / "c").rglob("*.npy"))
    if damage == "truncate":
        entry.write_bytes(entry.read_bytes()[:100])
    elif damage == "garbage":
        entry.write_bytes(b"not a numpy file")
    elif damage == "pickle":
        np.save(entry, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    else:
        np.save(entry, np.zeros((5, 3), np.float32))
    with pytest.warns(CacheWarning, match="is not used"):
        assert cache.get(path, cfg) is None
    with pytest.warns(CacheWarning, match="recomputing it"):
        np.testing.assert_array_equal(cache.extract(path, cfg), X)
    assert len(counted) == 2
    np.testing.assert_array_equal(cache.get(path, cfg), X)  # overwritten with a good entry


def test_vad_entries_keep_frames(tmp_path, write_wav):
    y = np.concatenate([synth_tone("low", seconds=0.5), np.zeros(8000, np.float32), synth_tone("low", seconds=0.5)])
    path = write_wav("a.wav", y)
    cache, cfg = FeatureCache(tmp_path / "c"), FeatureConfig(vad=True)
    X, frames = cache.extract(path, cfg, with_frames=True)
    X2, frames2 = cache.get(path, cfg, with_frames=True)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(frames, frames2)
    assert frames.size < 1 + y.size // 160
    next((tmp_path / "c").rglob("*.frames.npy")).unlink()
    assert cache.get(path, cfg) is None  # incomplete entry: a miss


def test_bad_cache_dir(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ParameterError, match="cache_dir must be a folder"):
        FeatureCache(f)
    with pytest.raises(ParameterError, match="cache_dir must be a folder"):
        pipeline.extract_features([], FeatureConfig(), cache_dir=f)


def test_pipeline_uses_cache(tone_corpus, tmp_path, counted):
    paths = sorted((tone_corpus / "train").rglob("*.wav"))
    c = tmp_path / "c"
    first, _ = pipeline.extract_features(paths, FeatureConfig(), cache_dir=c)
    assert len(counted) == len(paths)
    second, _ = pipeline.extract_features(paths, FeatureConfig(), cache_dir=c)
    assert len(counted) == len(paths)  # all read back in this process
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # with two worker processes the results are the same, and the workers fill the cache
    par, _ = pipeline.extract_features(paths, FeatureConfig(n_mfcc=13), n_jobs=2, cache_dir=c)
    ser, _ = pipeline.extract_features(paths, FeatureConfig(n_mfcc=13))
    for a, b in zip(par, ser):
        np.testing.assert_array_equal(a, b)
    assert sum(FeatureCache(c).contains(p, FeatureConfig(n_mfcc=13)) for p in paths) == len(paths)


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


def test_cli_features_then_train_from_cache(tone_corpus, tmp_path, monkeypatch):
    runner = CliRunner()
    c = tmp_path / "feats"
    result = runner.invoke(main, ["features", str(tone_corpus / "train"), "-o", str(c), "--n-mfcc", "13"])
    assert result.exit_code == 0, result.output
    assert "12 recordings: 12 extracted, 0 already cached, 0 skipped" in result.stdout
    result = runner.invoke(main, ["features", str(tone_corpus / "train"), "-o", str(c), "--n-mfcc", "13",
                                  "--format", "json", "-q"])
    assert result.exit_code == 0 and '"n_cached": 12' in result.stdout

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cache_mod, "extract_file", no_decoding)
    model = tmp_path / "m.agmm"
    result = runner.invoke(main, ["train", str(tone_corpus / "train"), "-o", str(model), "-k", "2", "-q",
                                  "--n-mfcc", "13"], env={"AUDIOGMM_CACHE": str(c)})
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["evaluate", str(model), str(tone_corpus / "train"), "-q", "--cache", str(c)])
    assert result.exit_code == 0 and "accuracy" in result.stdout


def test_cli_features_errors(tmp_path, tone_corpus):
    runner = CliRunner()
    f = tmp_path / "file"
    f.write_text("x")
    result = runner.invoke(main, ["features", str(tone_corpus), "-o", str(f)])
    assert result.exit_code == 2 and "is a file" in result.stderr
    result = runner.invoke(main, ["features", str(tone_corpus), "-o", str(tmp_path / "c"), "--sdc", "--n-mfcc", "5"])
    assert result.exit_code == 2 and "sdc_n must be <= n_mfcc (5)" in result.stderr
