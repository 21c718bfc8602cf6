"""EM as Dask tasks (audiogmm._dask.DaskExecutor) on LocalClusters bound to 127.0.0.1.

Every model fitted on a cluster must equal the in-process model bit for bit: for 1x1, 2x1 and
1x2 workers x threads, with the in-RAM and the file-backed per-frame state, and after a worker
dies inside a task. The partition layout is made small by patching ``PARTITION_CHUNKS`` in
this process only: the driver plans the partitions and the tasks carry their rows, so the
worker processes never read the constant.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("distributed")

import distributed  # noqa: E402

from audiogmm import _dask, pipeline  # noqa: E402
from audiogmm.classifier import GMMClassifier  # noqa: E402
from audiogmm.exceptions import AudiogmmError, ParameterError  # noqa: E402
from audiogmm.mixture import (ConcatSource, DiagonalGMM, FileFrameState, SerialExecutor,  # noqa: E402
                              _em, map_statistics)
from audiogmm.ubm import UBMClassifier  # noqa: E402

#: Frames per block in the DiagonalGMM-level fits: chunks of 16 * 64 = 1024 frames.
BLOCK = 64


def _cluster(n_workers, threads):
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=True,
                                    host="127.0.0.1", dashboard_address=None,
                                    scheduler_kwargs=_dask.LOCAL_SCHEDULER_KWARGS)


@pytest.fixture(scope="module", params=[(1, 1), (2, 1), (1, 2)], ids=["1x1", "2x1", "1x2"])
def shaped_client(request):
    n_workers, threads = request.param
    saved = {k: os.environ.get(k) for k in _dask._PARENT_ENV}  # the nanny leaks some into this process
    try:
        with _cluster(n_workers, threads) as cluster, distributed.Client(cluster) as client:
            assert sorted(client.nthreads().values()) == [threads] * n_workers
            yield client
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def client():
    with _dask.client_for("local:2") as c:
        yield c


@pytest.fixture
def small_partitions(monkeypatch):
    """Partitions of 2 chunks (2048 frames at BLOCK) for the fits, 1 chunk for the classifiers."""
    monkeypatch.setattr(_em, "PARTITION_CHUNKS", 2)


def _blobs(rng, n=7000, d=3, centres=(-4.0, 0.0, 4.0)):
    X = np.concatenate([rng.normal(c, 1.0, (n // len(centres), d)) for c in centres])
    return X[rng.permutation(X.shape[0])]


def _same_model(a, b):
    for name in ("weights_", "means_", "variances_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("lower_bounds_", "lower_bound_", "n_iter_"):  # a MAP-adapted class has no EM trace
        assert getattr(a, name, None) == getattr(b, name, None), name


_GMM = dict(n_components=3, random_state=0, block_size=BLOCK, dtype="float64")


def test_fits_are_bit_identical_for_every_cluster_shape(shaped_client, small_partitions, rng, tmp_path):
    X = _blobs(rng)
    ref = DiagonalGMM(**_GMM).fit(X)
    assert len(_em.partitions(X.shape[0], BLOCK)) == 4  # several tasks per pass
    ex = _dask.DaskExecutor(shaped_client)
    _same_model(DiagonalGMM(**_GMM).fit(X, executor=ex), ref)  # the in-RAM hint travels with tasks
    state = FileFrameState(tmp_path / "state")
    _same_model(DiagonalGMM(**_GMM).fit(X, executor=ex, frame_state=state), ref)
    state.remove()
    # a store-like source: parts opened by picklable loaders where the task runs
    parts = [X[:2500], X[2500:2600], X[2600:]]
    np.save(tmp_path / "p.npy", parts[2])
    from functools import partial

    src = ConcatSource([parts[0], parts[1], partial(np.load, tmp_path / "p.npy", mmap_mode="c")],
                       lengths=[p.shape[0] for p in parts])
    _same_model(DiagonalGMM(**_GMM).fit(src, executor=ex), ref)
    stats = map_statistics(X, ref.weights_, ref.means_, ref.variances_, block_size=BLOCK, dtype="float64")
    remote = map_statistics(X, ref.weights_, ref.means_, ref.variances_, block_size=BLOCK, dtype="float64",
                            executor=ex)
    for a, b in zip(stats, remote):
        np.testing.assert_array_equal(a, b)


def _recordings(rng):
    # classes of more than one partition of the classifiers' block (16384 frames) each
    X = [rng.normal(m, s, (9000, 3)) for m, s in ((-2, 1.0), (-2.5, 0.7), (0, 1.0), (0.3, 0.5),
                                                  (2, 1.0), (2.5, 0.8), (2.2, 1.2))]
    return X, ["a", "a", "b", "b", "c", "c", "c"]


@pytest.mark.parametrize("cls", [GMMClassifier, UBMClassifier])
def test_classifiers_are_bit_identical_on_a_cluster(shaped_client, monkeypatch, rng, cls):
    monkeypatch.setattr(_em, "PARTITION_CHUNKS", 1)
    X, y = _recordings(rng)
    params = dict(n_components=2, dtype="float64", random_state=0, n_jobs=2)
    if cls is UBMClassifier:
        params.update(n_components=4, ubm_max_frames=40_000)
    ref = cls(**params).fit(X, y)
    got = cls(**params).fit(X, y, executor=_dask.DaskExecutor(shaped_client))
    for g, r in zip(got.gmms_, ref.gmms_):
        _same_model(g, r)
    if cls is UBMClassifier:
        _same_model(got.ubm_, ref.ubm_)
    np.testing.assert_array_equal(got.predict_proba(X), ref.predict_proba(X))


# -- a worker that dies inside a task ----------------------------------------------------------


class _DieOnce:
    """A source part that, once armed, kills the first worker process that reads it.

    The marker file is claimed with O_CREAT | O_EXCL, so exactly one read (in one worker) dies,
    whatever the scheduling; reads in the test process never die.
    """

    def __init__(self, X, arm, marker, driver_pid):
        self.X, self.arm, self.marker, self.driver_pid = X, str(arm), str(marker), driver_pid

    def __call__(self):
        if os.getpid() != self.driver_pid and os.path.exists(self.arm):
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return self.X
            os._exit(1)
        return self.X


def test_a_worker_dying_mid_iteration_leaves_the_model_identical(client, small_partitions, rng, tmp_path):
    X = _blobs(rng)
    ref = DiagonalGMM(**_GMM).fit(X)
    arm, marker = tmp_path / "arm", tmp_path / "claimed"

    def arm_after_iteration_1(*, init, n_iter, lower_bound, change):
        if n_iter == 1:
            arm.touch()  # the next pass's first read in a worker kills that worker

    src = ConcatSource([X[:3000], _DieOnce(X[3000:], arm, marker, os.getpid())], lengths=[3000, X.shape[0] - 3000])
    got = DiagonalGMM(**_GMM, verbose=arm_after_iteration_1).fit(src, executor=_dask.DaskExecutor(client))
    assert marker.exists() and got.n_iter_ > 1, got.n_iter_  # a worker died in the second pass
    _same_model(got, ref)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the dead worker


# -- a partition that always fails -------------------------------------------------------------


class _Unreadable:
    """A source part whose reads fail in every worker (the test process can read it)."""

    def __init__(self, X, driver_pid):
        self.X, self.driver_pid = X, driver_pid

    def __call__(self):
        if os.getpid() != self.driver_pid:
            raise OSError("the disk holding this part went away")
        return self.X

    def __repr__(self):
        return "Unreadable(part.npy)"


def test_a_partition_that_always_fails_is_named_in_the_error(client, small_partitions, rng):
    X = _blobs(rng)
    src = ConcatSource([X[:5000], _Unreadable(X[5000:], os.getpid())], lengths=[5000, X.shape[0] - 5000])
    with pytest.raises(AudiogmmError, match=r"rows 4096:6144 of ConcatSource.*source part\(s\) 0 \(an array\), "
                                            r"1 \(Unreadable\(part.npy\)\).*after 1 retries "
                                            r"\(OSError: the disk holding this part went away\)"):
        DiagonalGMM(**_GMM).fit(src, executor=_dask.DaskExecutor(client, retries=1))


# -- plumbing without a cluster ----------------------------------------------------------------


def test_executor_arguments_are_checked(client):
    assert isinstance(_dask.as_executor(client), _dask.DaskExecutor)
    serial = SerialExecutor()
    assert _dask.as_executor(serial) is serial and _dask.as_executor(None) is None
    with pytest.raises(ParameterError, match="executor must be a distributed.Client"):
        _dask.as_executor("tcp://127.0.0.1:8786")
    with pytest.raises(ParameterError, match="client must be a distributed.Client"):
        _dask.DaskExecutor(serial)
    with pytest.raises(ParameterError, match="retries must be an int >= 0"):
        _dask.DaskExecutor(client, retries=-1)


def test_pipeline_train_with_a_client_equals_in_process(client, tone_corpus):
    data = tone_corpus / "train"
    ref = pipeline.train(data, n_components=2, max_iter=100)
    got = pipeline.train(data, n_components=2, max_iter=100, executor=client)
    for g, r in zip(got.classifier.gmms_, ref.classifier.gmms_):
        _same_model(g, r)
    with pytest.raises(ParameterError, match="either executor or scheduler"):
        pipeline.train(data, executor=client, scheduler="local:1")
    with pytest.raises(ParameterError, match="scheduler"):
        pipeline.train(data, scheduler="local:zero")


_NO_DASK = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('dask', 'distributed'):\n"
    "            raise ImportError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "from audiogmm.cli import main\n"
    "main(sys.argv[1:])\n"
)


@pytest.mark.parametrize("command", ["train", "features"])
def test_scheduler_without_the_extra_exits_2_naming_the_install(tmp_path, command):
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        (tmp_path / "data" / label / "x.wav").write_bytes(b"")  # never decoded: the check comes first
    args = [str(tmp_path / "data"), "--scheduler", "local:1", "--cache", str(tmp_path / "store")]
    args += ["-o", str(tmp_path / "m.agmm")] if command == "train" else []
    proc = subprocess.run([sys.executable, "-c", _NO_DASK, command, *args], capture_output=True, text=True,
                          cwd=os.getcwd(), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install" in proc.stderr and "audiogmm[dask]" in proc.stderr


def test_import_audiogmm_does_not_import_dask():
    code = ("import sys, audiogmm, audiogmm.pipeline, audiogmm.classifier, audiogmm.ubm, audiogmm._dask\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
