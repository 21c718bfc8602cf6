"""Hostile feature stores: swapped, truncated, padded, foreign and oversized entries, a damaged index.

Each damaged entry must be detected, warned about (CacheWarning naming the file) and
recomputed, never used; and a header declaring 2**40 rows must be refused before anything
is allocated.
"""

import json
import os
import shutil
import struct
import tracemalloc

import numpy as np
import pytest
from conftest import synth_tone

from audiogmm import pipeline
from audiogmm.cache import INDEX_NAME, TRAILER_SIZE, FeatureCache, read_index
from audiogmm.exceptions import AudiogmmError, CacheWarning
from audiogmm.features import FeatureConfig, extract_file


@pytest.fixture
def two(tmp_path, write_wav):
    """Two recordings of the same length (entries of the same shape) in a filled store."""
    a = write_wav("a.wav", synth_tone("low", seconds=0.5, seed=1))
    b = write_wav("b.wav", synth_tone("high", seconds=0.5, seed=2))
    cache, cfg = FeatureCache(tmp_path / "store"), FeatureConfig(n_mfcc=13)
    Xa, Xb = cache.extract(a, cfg), cache.extract(b, cfg)
    assert Xa.shape == Xb.shape and not np.array_equal(Xa, Xb)
    return cache, cfg, (a, Xa), (b, Xb)


def _entry(cache, path, cfg):
    return cache.entry_path(cache.key(path, cfg))


def _check_refused(cache, cfg, path, X, match):
    with pytest.warns(CacheWarning, match=match):
        assert cache.get(path, cfg) is None
    with pytest.raises(AudiogmmError, match="feature store entry"):
        cache.open_entry(cache.key(path, cfg))
    with pytest.warns(CacheWarning):
        np.testing.assert_array_equal(cache.extract(path, cfg), X)  # recomputed and overwritten
    np.testing.assert_array_equal(cache.get(path, cfg), X)


def test_swapped_entry_of_the_same_shape_is_refused(two):
    cache, cfg, (a, Xa), (b, Xb) = two
    shutil.copyfile(_entry(cache, a, cfg), _entry(cache, b, cfg))  # a's features under b's name
    _check_refused(cache, cfg, b, Xb, "the entry of another key")


def test_swapped_entries_through_the_pipeline_never_change_the_features(two):
    cache, cfg, (a, Xa), (b, Xb) = two
    ea, eb = _entry(cache, a, cfg), _entry(cache, b, cfg)
    tmp = ea.with_suffix(".swap")
    os.replace(ea, tmp)
    os.replace(eb, ea)
    os.replace(tmp, eb)
    with pytest.warns(CacheWarning, match="swapped"):
        feats, skipped = pipeline.extract_features([a, b], cfg, cache_dir=cache.directory)
    assert not skipped
    np.testing.assert_array_equal(feats[0], Xa)
    np.testing.assert_array_equal(feats[1], Xb)


@pytest.mark.parametrize("cut", [1, TRAILER_SIZE, TRAILER_SIZE + 4, 200])
def test_truncated_entry_is_refused(two, cut):
    cache, cfg, (a, Xa), _ = two
    e = _entry(cache, a, cfg)
    e.write_bytes(e.read_bytes()[:-cut])
    _check_refused(cache, cfg, a, Xa, "truncated|not a readable")


def test_padded_entry_is_refused(two):
    cache, cfg, (a, Xa), _ = two
    e = _entry(cache, a, cfg)
    e.write_bytes(e.read_bytes() + b"\0" * 4)
    _check_refused(cache, cfg, a, Xa, "padded")


@pytest.mark.parametrize("kind", ["plain_npy", "fortran", "float64", "pickle", "empty", "garbage"])
def test_foreign_entry_is_refused(two, kind):
    cache, cfg, (a, Xa), _ = two
    e = _entry(cache, a, cfg)
    if kind == "plain_npy":  # right dtype and shape, but not written by the store
        np.save(e, Xa)
    elif kind == "fortran":
        np.save(e, np.asfortranarray(Xa))
    elif kind == "float64":
        np.save(e, Xa.astype(np.float64))
    elif kind == "pickle":
        np.save(e, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    elif kind == "empty":
        e.write_bytes(b"")
    else:
        e.write_bytes(os.urandom(4096))
    _check_refused(cache, cfg, a, Xa, "is not used")


def test_header_declaring_2_40_rows_is_refused_before_allocation(two):
    cache, cfg, (a, Xa), _ = two
    e = _entry(cache, a, cfg)
    raw = e.read_bytes()
    header_len = struct.unpack("<H", raw[8:10])[0]
    header = raw[10:10 + header_len].decode("latin1")
    huge = header.replace(f"({Xa.shape[0]}, 39)", f"({2 ** 40}, 39)")
    huge = huge.rstrip("\n").rstrip(" ")
    huge = huge + " " * (header_len - 1 - len(huge)) + "\n"
    assert len(huge) == header_len
    e.write_bytes(raw[:10] + huge.encode("latin1") + raw[10 + header_len:])
    tracemalloc.start()
    try:
        with pytest.warns(CacheWarning, match=f"declares {2 ** 40} rows"):
            assert cache.get(a, cfg) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # nothing of the declared 4 TiB was allocated
    with pytest.raises(AudiogmmError, match="declares"):
        cache.open_entry(cache.key(a, cfg))


def test_swapped_frame_indices_are_refused(tmp_path, write_wav):
    y = np.concatenate([synth_tone("low", seconds=0.5), np.zeros(8000, np.float32), synth_tone("low", seconds=0.5)])
    a, b = write_wav("a.wav", y), write_wav("b.wav", y[::-1].copy())
    cache, cfg = FeatureCache(tmp_path / "store"), FeatureConfig(vad=True)
    cache.extract(a, cfg)
    cache.extract(b, cfg)
    fa = cache.entry_path(cache.key(a, cfg)).with_name(cache.key(a, cfg) + ".frames.npy")
    fb = cache.entry_path(cache.key(b, cfg)).with_name(cache.key(b, cfg) + ".frames.npy")
    shutil.copyfile(fa, fb)
    with pytest.warns(CacheWarning, match="another key"):
        assert cache.get(b, cfg, with_frames=True) is None
    _, frames = extract_file(b, cfg, return_frames=True)
    with pytest.warns(CacheWarning):
        _, frames2 = cache.extract(b, cfg, with_frames=True)
    np.testing.assert_array_equal(frames2, frames)


def test_damaged_index_lines_are_left_out_with_a_warning(tone_corpus, tmp_path):
    store = tmp_path / "store"
    pipeline.cache_features(tone_corpus / "train", FeatureConfig(n_mfcc=13), store)
    index = store / INDEX_NAME
    good = index.read_bytes().splitlines(keepends=True)
    bad = [b"not json\n", b"[1, 2]\n", b'{"path": 1}\n', b"\xff\xfe\n", b"[" * 100000 + b"\n",
           b'{"x": "' + b"a" * 200000 + b'"}\n',
           (json.dumps({**json.loads(good[0]), "key": "../../x"}) + "\n").encode(),
           (json.dumps({**json.loads(good[0]), "n_frames": -5}) + "\n").encode()]
    index.write_bytes(good[0] + b"".join(bad) + b"".join(good[1:]))
    with pytest.warns(CacheWarning, match="line") as record:
        rows = read_index(store)
    assert len(rows) == 12 and len(record) == len(bad)
    # writing merges over the damage: the file is whole again
    with pytest.warns(CacheWarning):
        pipeline.cache_features(tone_corpus / "train", FeatureConfig(n_mfcc=13), store)
    assert len(read_index(store)) == 12


def test_cache_features_rechecks_and_recomputes_a_swapped_entry(two):
    cache, cfg, (a, Xa), (b, Xb) = two
    shutil.copyfile(cache.entry_path(cache.key(a, cfg)), cache.entry_path(cache.key(b, cfg)))
    with pytest.warns(CacheWarning, match="another key"):
        summary = pipeline.cache_features([a, b], cfg, cache.directory)
    assert (summary["n_cached"], summary["n_extracted"]) == (1, 1)
    np.testing.assert_array_equal(cache.get(b, cfg), Xb)
