import json

import numpy as np
import pytest

from audiogmm.classifier import GMMClassifier
from audiogmm.exceptions import ModelFileError
from audiogmm.features import FeatureConfig
from audiogmm.persistence import FORMAT_VERSION, TrainedModel, load_model, save_model


@pytest.fixture
def model(rng):
    config = FeatureConfig()
    d = config.n_features
    X = [rng.normal(c, 1, (80, d)) for c in (0, 0, 2, 2, 4)]
    y = ["a", "a", "b", "b", "c"]
    clf = GMMClassifier(n_components=3, random_state=0, priors="empirical").fit(X, y)
    return TrainedModel(clf, config, {"dataset": "somewhere", "n_recordings": 5})


def test_round_trip_bit_for_bit(tmp_path, model, rng):
    path = save_model(model, tmp_path / "m.agmm")
    loaded = load_model(path)
    assert loaded.classes == ["a", "b", "c"]
    assert loaded.feature_config == model.feature_config
    assert loaded.summary == model.summary
    assert loaded.metadata["format_version"] == FORMAT_VERSION
    for g0, g1 in zip(model.classifier.gmms_, loaded.classifier.gmms_):
        for name in ("weights_", "means_", "variances_"):
            np.testing.assert_array_equal(getattr(g0, name), getattr(g1, name))
            assert getattr(g1, name).dtype == np.float64
        assert (g0.n_iter_, g0.converged_, g0.lower_bound_) == (g1.n_iter_, g1.converged_, g1.lower_bound_)
    np.testing.assert_array_equal(loaded.classifier.class_prior_, model.classifier.class_prior_)
    X = [rng.normal(1, 1, (30, model.feature_config.n_features))]
    np.testing.assert_array_equal(loaded.classifier.predict_proba(X), model.classifier.predict_proba(X))


def test_file_is_plain_npz_without_pickle(tmp_path, model):
    path = save_model(model, tmp_path / "m.agmm")
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["metadata"].tobytes())
        assert all(npz[name].dtype != object for name in npz.files)
    assert meta["format"] == "audiogmm-model"
    assert meta["classes"] == ["a", "b", "c"]
    assert meta["feature_config"] == model.feature_config.to_dict()


def test_atomic_write_keeps_old_file_on_failure(tmp_path, model, monkeypatch):
    path = save_model(model, tmp_path / "m.agmm")
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(ModelFileError, match="No space left"):
        save_model(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.agmm"]  # no temporary left behind


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not an audiogmm model file"),
        (b"garbage" * 100, "not an audiogmm model file"),
        (None, "no audiogmm metadata"),
    ],
)
def test_damaged_or_foreign_files(tmp_path, content, match):
    path = tmp_path / "bad.agmm"
    if content is None:
        np.savez(path.open("wb"), x=np.arange(3))
    else:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=match):
        load_model(path)


def test_truncated_file(tmp_path, model):
    path = save_model(model, tmp_path / "m.agmm")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a usable audiogmm model"):
        load_model(path)


def test_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "evil.agmm"
    with open(path, "wb") as fh:
        np.savez(fh, metadata=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelFileError):
        load_model(path)


def _rewrite(path, edit):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["metadata"].tobytes())
    edit(meta, arrays)
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_newer_version_and_inconsistent_content(tmp_path, model):
    path = save_model(model, tmp_path / "m.agmm")
    _rewrite(path, lambda m, a: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError, match="newer than this audiogmm"):
        load_model(path)
    path = save_model(model, tmp_path / "m.agmm")
    _rewrite(path, lambda m, a: a.update(variances_1=-a["variances_1"]))
    with pytest.raises(ModelFileError, match="variances must be > 0"):
        load_model(path)
    path = save_model(model, tmp_path / "m.agmm")
    _rewrite(path, lambda m, a: a.pop("means_2"))
    with pytest.raises(ModelFileError, match="member 'means_2.npy' is missing"):
        load_model(path)


def test_missing_model(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "none.agmm")


@pytest.mark.parametrize("name", ["speech", "language", "music"])
def test_presets_round_trip_through_the_model_file(tmp_path, rng, name):
    config = FeatureConfig.preset(name, cmvn="sliding", cmvn_window=2.5, vad_threshold_db=35.0)
    d = config.n_features
    clf = GMMClassifier(n_components=2, random_state=0).fit([rng.normal(c, 1, (60, d)) for c in (0, 3)], ["a", "b"])
    path = save_model(TrainedModel(clf, config), tmp_path / f"{name}.agmm")
    loaded = load_model(path).feature_config
    assert loaded == config and loaded.to_dict() == config.to_dict()
    assert (loaded.sdc, loaded.vad, loaded.n_features) == (config.sdc, config.vad, d)


def test_metadata_is_strict_json_and_a_missing_bound_is_null(tmp_path, model):
    model.classifier.gmms_[0].lower_bound_ = float("nan")
    model.summary["secs"] = float("inf")
    path = save_model(model, tmp_path / "m.agmm")
    with np.load(path, allow_pickle=False) as npz:
        text = npz["metadata"].tobytes().decode()
    meta = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert meta["gmms"][0]["lower_bound"] is None and meta["training"]["secs"] is None
    loaded = load_model(path)
    assert np.isnan(loaded.classifier.gmms_[0].lower_bound_) and loaded.summary["secs"] is None
