"""Tests for audiogmm.cache: keys, invalidation, corrupt entries, and the pipeline/CLI wiring."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import synth_tone

from audiogmm import cache as cache_mod
from audiogmm import pipeline
from audiogmm.cache import INDEX_NAME, FeatureCache, read_index
from audiogmm.cli import main
from audiogmm.exceptions import AudiogmmError, CacheWarning, ParameterError
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


def test_cli_features_then_train_from_cache(tone_corpus, tmp_path, monkeypatch):
    runner = CliRunner()
    c = tmp_path / "feats"
    result = runner.invoke(main, ["features", str(tone_corpus / "train"), "--cache", str(c), "--n-mfcc", "13"])
    assert result.exit_code == 0, result.output
    assert "12 recordings: 12 extracted, 0 already cached, 0 skipped" in result.stdout
    result = runner.invoke(main, ["features", str(tone_corpus / "train"), "--cache", str(c), "--n-mfcc", "13",
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
    result = runner.invoke(main, ["features", str(tone_corpus), "--cache", str(f)])
    assert result.exit_code == 2 and "is a file" in result.stderr
    result = runner.invoke(main, ["features", str(tone_corpus), "--cache", str(tmp_path / "c"), "--sdc", "--n-mfcc", "5"])
    assert result.exit_code == 2 and "sdc_n must be <= n_mfcc (5)" in result.stderr


def test_open_entry_is_a_copy_on_write_map_equal_to_get(tmp_path, write_wav):
    path = write_wav("a.wav", synth_tone("low", seconds=0.5))
    cache, cfg = FeatureCache(tmp_path / "c"), FeatureConfig()
    X = cache.extract(path, cfg)
    key = cache.key(path, cfg)
    Xm = cache.open_entry(key, n_features=cfg.n_features)
    assert isinstance(Xm, np.memmap) and Xm.mode == "c" and Xm.flags.writeable
    np.testing.assert_array_equal(Xm, X)
    Xm[0, 0] = 1e9  # copy-on-write: the entry on disk is unchanged
    np.testing.assert_array_equal(cache.get(path, cfg), X)
    load = pickle.loads(pickle.dumps(cache.loader(key)))  # travels to a worker
    np.testing.assert_array_equal(load(), X)
    assert isinstance(load(), np.memmap) and load().mode == "c"
    with pytest.raises(AudiogmmError, match="cannot be opened"):
        cache.open_entry("0" * 64)
    with pytest.raises(AudiogmmError, match="features per frame, not 13"):
        cache.open_entry(key, n_features=13)
    with pytest.raises(ParameterError, match="key must be 64 lowercase hex digits"):
        cache.open_entry("../../etc/passwd")


def test_cache_features_writes_and_merges_the_index(tone_corpus, tmp_path):
    store = tmp_path / "store"
    cfg, cfg13 = FeatureConfig(), FeatureConfig(n_mfcc=13)
    summary = pipeline.cache_features(tone_corpus / "train", cfg13, store)
    assert summary["index"] == str(store / INDEX_NAME)
    rows = read_index(store)
    assert len(rows) == 12 and {r["label"] for r in rows} == {"low", "high", "noise"}
    cache = FeatureCache(store)
    for r in rows:
        assert r["key"] == cache.key(r["path"], cfg13) and r["config"] == cache.config_id(cfg13)
        assert (r["n_features"], r["dtype"]) == (39, "float32")
        assert r["n_frames"] == cache.open_entry(r["key"]).shape[0]  # planned without reading
        assert Path(r["path"]).is_absolute() and Path(r["path"]).parent.name == r["label"]
    # a second configuration and the test split merge in; re-running changes nothing
    pipeline.cache_features(tone_corpus / "train", cfg, store)
    pipeline.cache_features([tone_corpus / "test"], cfg13, store)
    again = pipeline.cache_features(tone_corpus / "train", cfg13, store)
    assert again["n_cached"] == 12 and again["n_extracted"] == 0
    assert len(read_index(store)) == 12 + 12 + 6
    assert len(cache.index(cfg13)) == 18 and len(cache.index(cfg)) == 12
    assert not list(store.glob(".tmp-*"))
    # a recording rewritten since: its row is replaced, not duplicated
    target = sorted((tone_corpus / "train" / "low").glob("*.wav"))[0]
    sf.write(target, synth_tone("low", seconds=0.7), 16000)
    pipeline.cache_features(tone_corpus / "train", cfg13, store)
    rows = cache.index(cfg13)
    assert len(rows) == 18
    (row,) = [r for r in rows if r["path"] == os.path.realpath(target)]
    assert row["key"] == cache.key(target, cfg13) and row["n_frames"] > 50


def test_loader_reads_rows_into_a_buffer_and_rechecks_a_replaced_entry(tmp_path, write_wav):
    cfg = FeatureConfig()
    cache = FeatureCache(tmp_path / "c")
    a = write_wav("a.wav", synth_tone("low", seconds=0.5))
    b = write_wav("b.wav", synth_tone("high", seconds=0.7))
    Xa = cache.extract(a, cfg)
    cache.extract(b, cfg)
    load = cache.loader(cache.key(a, cfg), n_features=cfg.n_features)
    out = np.empty((10, cfg.n_features), dtype=np.float32)
    load.read_rows(5, 15, out)
    np.testing.assert_array_equal(out, Xa[5:15])  # the same bytes as the memory map
    with pytest.raises(AudiogmmError, match="do not fit its shape"):
        load.read_rows(Xa.shape[0] - 2, Xa.shape[0] + 8, out)
    # b's entry put under a's name (a swapped file): the changed file is checked again, and refused
    entry_a = cache.entry_path(cache.key(a, cfg))
    entry_a.write_bytes(cache.entry_path(cache.key(b, cfg)).read_bytes())
    with pytest.raises(AudiogmmError, match="entry of another key"):
        load.read_rows(0, 10, out)
