"""Extraction as Dask tasks on a LocalCluster bound to 127.0.0.1, and audiogmm._dask.client_for.

One module-scoped cluster of 2 single-threaded worker processes serves every test here.
"""

import os
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("distributed")

from audiogmm import _dask, pipeline  # noqa: E402
from audiogmm.cache import FeatureCache, read_index  # noqa: E402
from audiogmm.exceptions import AudioSkippedWarning, ParameterError  # noqa: E402
from audiogmm.extraction import ExtractionSpec, iter_features  # noqa: E402
from audiogmm.features import FeatureConfig  # noqa: E402


def _worker_env():
    import os as _os

    return {k: _os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "NUMBA_CACHE_DIR")}


@pytest.fixture(scope="module")
def parent_env():
    before = {k: os.environ.get(k) for k in _dask._PARENT_ENV}
    return before


@pytest.fixture(scope="module")
def client(parent_env):
    with _dask.client_for("local:2") as c:
        yield c
    assert {k: os.environ.get(k) for k in _dask._PARENT_ENV} == parent_env  # and after closing


def test_local_cluster_is_two_single_threaded_local_workers(client, parent_env):
    nthreads = client.nthreads()
    assert len(nthreads) == 2 and set(nthreads.values()) == {1}
    assert all("127.0.0.1" in address for address in nthreads)
    port = client.scheduler_info()["services"]["dashboard"]  # the HTTP server stays, for /health
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10)  # no dashboard page
    # the nanny's variables did not stay in this process
    assert {k: os.environ.get(k) for k in _dask._PARENT_ENV} == parent_env
    envs = client.run(_worker_env)
    for env in envs.values():
        assert env["MALLOC_TRIM_THRESHOLD_"] is None  # unset: it doubled extraction CPU
        assert env["OMP_NUM_THREADS"] == "1"
        assert env["NUMBA_CACHE_DIR"] and os.access(env["NUMBA_CACHE_DIR"], os.W_OK)


def test_dask_extraction_equals_local_and_fills_the_store(client, tone_corpus, tmp_path, write_wav):
    paths = sorted(tone_corpus.rglob("*.wav"))[::3]  # 6 files: a short test
    bad = tmp_path / "bad.wav"  # missing: skipped by name (fast, where undecodable bytes cost an audioread import)
    paths.insert(3, bad)
    cfg = FeatureConfig(n_mfcc=13, vad=True)
    store = tmp_path / "store"
    with pytest.warns(AudioSkippedWarning, match="bad.wav"):
        dask_feats, dask_skipped = pipeline.extract_features(paths, cfg, cache_dir=store, executor=client)
    with pytest.warns(AudioSkippedWarning, match="bad.wav"):
        local, local_skipped = pipeline.extract_features(paths, cfg)
    assert [p for p, _ in dask_skipped] == [p for p, _ in local_skipped] == [str(bad)]
    for a, b in zip(dask_feats, local, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype and np.array_equal(a, b)
    cache = FeatureCache(store)
    assert sum(cache.contains(p, cfg) for p in paths) == len(paths) - 1  # the workers wrote them
    # with frames (segments): the workers stored the VAD's frame indices too
    spec = ExtractionSpec(cfg, cache_dir=store, with_frames=True)
    got = list(iter_features(paths, spec, executor=client))
    assert all(r.cached for r in got if r.X is not None)
    ref = list(iter_features(paths, ExtractionSpec(cfg, with_frames=True)))
    for a, b in zip(got, ref):
        if b.X is not None:
            assert np.array_equal(a.frames, b.frames) and np.array_equal(a.X, b.X)


def test_dask_tasks_are_few_batches_returning_metadata(client, tone_corpus, tmp_path):
    paths = sorted(tone_corpus.rglob("*.wav"))  # 18 files, 2 workers: 6 batches, not 18 tasks

    class Counting:  # the executor is duck-typed: count what reaches the client
        submitted = []

        def nthreads(self):
            return client.nthreads()

        def submit(self, fn, batch, spec):
            self.submitted.append(len(batch))
            return client.submit(fn, batch, spec, pure=False)

    store = tmp_path / "store"
    summary = pipeline.cache_features(paths, FeatureConfig(n_mfcc=13), store, executor=Counting())
    assert summary["n_extracted"] == 18 and summary["n_cached"] == 0
    assert sorted(Counting.submitted) == [3] * 6
    assert len(read_index(store)) == 18
    # the task results held metadata only: no array crossed back (the client read the store)
    from audiogmm.extraction import store_batch

    meta = client.submit(store_batch, [str(p) for p in paths[:2]],
                         ExtractionSpec(FeatureConfig(n_mfcc=13), cache_dir=store), pure=False).result()
    assert [type(x) for x in meta[0]] == [str, int, type(None), bool] and meta[0][3] is True


def test_executor_needs_a_store(client, tone_corpus):
    with pytest.raises(ParameterError, match="an executor needs cache_dir"):
        pipeline.extract_features(sorted(tone_corpus.rglob("*.wav")), FeatureConfig(), executor=client)


@pytest.mark.parametrize("bad", ["", "local:", "local:0", "local:x", "local:99999", 3])
def test_bad_scheduler_is_a_parameter_error(bad):
    with pytest.raises(ParameterError, match="scheduler"):
        _dask.parse_scheduler(bad)


def test_missing_dask_names_the_install_command(tmp_path):
    # a fresh interpreter where importing distributed fails, as without the extra
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from audiogmm import _dask\n"
        "from audiogmm.exceptions import ParameterError\n"
        "try:\n"
        "    with _dask.client_for('local:1'): pass\n"
        "except ParameterError as e: print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert 'pip install "audiogmm[dask]"' in out.stdout and 'pip install -e ".[dask]"' in out.stdout
