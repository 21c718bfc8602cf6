"""Recipes: the no-preset default, presets as one object for CLI and API, and ``n_components="auto"``."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from audiogmm import classifier as classifier_module
from audiogmm import pipeline
from audiogmm.classifier import GMMClassifier
from audiogmm.exceptions import ConvergenceWarning, ParameterError
from audiogmm.features import FeatureConfig
from audiogmm.mixture import DiagonalGMM
from audiogmm.persistence import load_model
from audiogmm.recipes import (AUTO_MUSIC_SECONDS, DEFAULT_PARAMS, DEFAULT_RECIPE, PRESET_HELP, PRESETS, default_preset,
                              get_recipe)
from audiogmm.ubm import UBMClassifier

ROOT = Path(__file__).resolve().parents[1]


# -- the default recipe and the presets --------------------------------------------------------
def test_default_recipe_is_the_documented_one():
    # with no preset and nothing known of the data (no dataset) a user gets DEFAULT_RECIPE_DOC below
    r = get_recipe()
    assert r.name is None
    assert (r.method, r.params["n_components"], r.params["adapt"], r.params["relevance_factor"]) == \
        DEFAULT_RECIPE_DOC["classifier"]
    assert r.features == FeatureConfig.from_dict(DEFAULT_RECIPE_DOC["features"])
    assert isinstance(r.make_classifier(), {"ubm": UBMClassifier, "per-class": GMMClassifier}[r.method])
    # explicit choices still win over the default, one by one
    assert get_recipe(n_components=4).params["n_components"] == 4
    assert get_recipe(method="per-class").method == "per-class"
    assert DEFAULT_PARAMS["max_iter"] == r.params["max_iter"]
    # another method starts from that method's own size; -k auto with no preset is per-class
    assert get_recipe(method="per-class").params["n_components"] == 32
    assert get_recipe(method="ubm").params["n_components"] == 128
    auto = get_recipe(n_components="auto")
    assert (auto.method, auto.params["n_components"]) == ("per-class", "auto")


DEFAULT_RECIPE_DOC = {
    "classifier": ("per-class", 32, "means", 16.0),  # adapt / relevance_factor: unused by per-class
    "features": {"n_mels": 128, "fmin": 0.0},  # = the music preset's features
}


def test_presets_and_their_help_agree():
    assert set(PRESETS) == set(PRESET_HELP) == {"speech", "music"}
    for name in PRESETS:
        r = get_recipe(name)
        assert r.name == name
        assert f"{r.params['n_components']} components" in PRESET_HELP[name]
        assert ("UBM" in PRESET_HELP[name]) == (r.method == "ubm")
        assert f"{r.features.n_mels} mel" in PRESET_HELP[name]
    with pytest.raises(ParameterError, match="preset 'language' was the same recipe as 'speech'"):
        get_recipe("language")
    with pytest.raises(ParameterError, match="unknown preset 'jazz'"):
        get_recipe("jazz")


def test_preset_is_the_same_model_in_cli_and_api(tone_corpus, tmp_path):
    data = tone_corpus / "train"
    path = tmp_path / "cli.agmm"
    # 32 components on 200 frames a class: EM re-seeds some (the same in both runs)
    with pytest.warns(ConvergenceWarning, match="re-seeded"):
        api = pipeline.train(data, preset="music", random_state=0)
    proc = subprocess.run([sys.executable, "-m", "audiogmm", "train", str(data), "--preset", "music",
                           "-o", str(path), "-q"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    cli = load_model(path)
    assert cli.feature_config == api.feature_config == get_recipe("music").features
    assert type(cli.classifier) is type(api.classifier)
    assert cli.classifier.get_params()["n_components"] == api.classifier.get_params()["n_components"] == 32
    state_cli, arrays_cli = cli.classifier.to_arrays()
    state_api, arrays_api = api.classifier.to_arrays()
    assert sorted(arrays_cli) == sorted(arrays_api)
    for name in arrays_api:
        np.testing.assert_array_equal(arrays_cli[name], arrays_api[name], err_msg=name)


def test_the_default_preset_follows_the_recordings_median_duration():
    assert default_preset(None) == "music"  # nothing known: DEFAULT_RECIPE
    assert PRESETS[default_preset(None)] == DEFAULT_RECIPE
    assert default_preset(0.44) == default_preset(AUTO_MUSIC_SECONDS - 1e-6) == "speech"
    assert default_preset(AUTO_MUSIC_SECONDS) == default_preset(222.0) == "music"
    short = get_recipe(median_seconds=0.9)
    assert short.name is None  # no preset was asked for
    assert (short.features, short.method, dict(short.params)) == \
        (get_recipe("speech").features, "ubm", dict(get_recipe("speech").params))
    assert get_recipe(median_seconds=30.0) == get_recipe()
    # explicit choices still apply over the chosen base, and a preset ignores the duration
    assert get_recipe(median_seconds=0.9, n_components=64).params["n_components"] == 64
    assert get_recipe(median_seconds=0.9, n_components="auto").method == "per-class"
    assert get_recipe("music", median_seconds=0.9) == get_recipe("music")


def test_no_preset_chooses_by_duration_the_same_in_cli_and_api(tone_corpus, tmp_path, write_wav):
    from conftest import synth_tone

    # short recordings (0.5 s): the speech recipe's features and UBM, K overridden in both
    data = tone_corpus / "train"
    api = pipeline.train(data, n_components=4, random_state=0, calibrate=False)
    assert api.summary["preset"] is None
    assert api.summary["default_choice"]["preset"] == "speech"
    assert api.summary["default_choice"]["median_seconds"] == pytest.approx(0.5)
    path = tmp_path / "cli.agmm"
    proc = subprocess.run([sys.executable, "-m", "audiogmm", "train", str(data), "-k", "4", "--no-calibrate",
                           "-o", str(path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "No --preset: the recordings are short, like speech (median 0.5 s" in proc.stderr
    cli = load_model(path)
    assert cli.summary["default_choice"] == api.summary["default_choice"]
    assert cli.feature_config == api.feature_config == get_recipe("speech").features
    assert type(cli.classifier) is type(api.classifier) is UBMClassifier
    _, arrays_cli = cli.classifier.to_arrays()
    _, arrays_api = api.classifier.to_arrays()
    assert sorted(arrays_cli) == sorted(arrays_api)
    for name in arrays_api:
        np.testing.assert_array_equal(arrays_cli[name], arrays_api[name], err_msg=name)
    # long recordings: the music recipe; a feature option still applies over the chosen base
    for label, kind in (("a", "low"), ("b", "high")):
        for i in range(2):
            write_wav(f"long/{label}/{i}.wav", synth_tone(kind, seconds=AUTO_MUSIC_SECONDS + 2, seed=i))
    long = pipeline.train(tmp_path / "long", n_components=2, feature_config=None, calibrate=False)
    assert long.summary["default_choice"]["preset"] == "music"
    assert long.feature_config == get_recipe("music").features
    assert type(long.classifier) is GMMClassifier
    proc = subprocess.run([sys.executable, "-m", "audiogmm", "features", str(tmp_path / "long"), "--cache",
                           str(tmp_path / "store"), "--n-mfcc", "13", "-f", "json"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)["feature_config"]
    assert (config["n_mfcc"], config["n_mels"], config["fmin"]) == (13, 128, 0.0)  # music base, option over it


# -- n_components="auto" -----------------------------------------------------------------------
def _two_component_class(rng, n_recordings=6, n_frames=300, d=3):
    def one():
        z = rng.integers(0, 2, n_frames)[:, None]
        return rng.normal(0.0, 1.0, (n_frames, d)) + np.where(z == 1, 4.0, -4.0)
    return [one() for _ in range(n_recordings)]


@pytest.fixture
def count_fits(monkeypatch):
    """Count DiagonalGMM fits by number of components (through the real fit)."""
    counts = []
    real_fit = DiagonalGMM.fit

    def fit(self, X, y=None):
        counts.append(self.n_components)
        return real_fit(self, X, y)

    monkeypatch.setattr(DiagonalGMM, "fit", fit)
    return counts


def test_auto_picks_a_small_k_and_stops_early(rng, count_fits):
    X = _two_component_class(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no grid-end warning: the search stopped by itself
        clf = GMMClassifier(n_components="auto", random_state=0).fit(X, ["a"] * len(X))
    assert clf.n_components_.tolist() == [2]
    # K = 1, 2, 4 tried (4 gains nothing on held-out frames), then 2 fitted on all frames
    assert count_fits == [1, 2, 4, 2]
    assert sorted(clf.heldout_scores_[0]) == [1, 2, 4]
    scores = clf.heldout_scores_[0]
    assert scores[2] - scores[1] > 1.0 and scores[4] - scores[2] < classifier_module.AUTO_MIN_GAIN * 3
    assert clf.bic_ is None


def test_auto_gives_the_fixed_k_model_and_is_independent_of_n_jobs(rng):
    a = _two_component_class(rng)
    b = [rng.normal(0.0, 1.0, (300, 3)) for _ in range(6)]
    X, y = a + b, ["a"] * 6 + ["b"] * 6
    auto = [GMMClassifier(n_components="auto", random_state=3, n_jobs=j).fit(X, y) for j in (1, 2)]
    assert auto[0].n_components_.tolist() == auto[1].n_components_.tolist() == [2, 1]
    fixed = {k: GMMClassifier(n_components=k, random_state=3).fit(X, y) for k in (1, 2)}
    for c, k in enumerate((2, 1)):
        for clf in auto:
            np.testing.assert_array_equal(clf.gmms_[c].means_, fixed[k].gmms_[c].means_)
            np.testing.assert_array_equal(clf.gmms_[c].variances_, fixed[k].gmms_[c].variances_)
            np.testing.assert_array_equal(clf.gmms_[c].weights_, fixed[k].gmms_[c].weights_)


def test_auto_warns_when_it_keeps_the_grid_end(rng, monkeypatch, count_fits):
    monkeypatch.setattr(classifier_module, "N_COMPONENTS_GRID", (1, 2))
    X = [np.concatenate([rng.normal(c, 0.3, (50, 2)) for c in ([-6, 0], [0, 6], [6, 0], [0, -6])])
         for _ in range(5)]
    with pytest.warns(ConvergenceWarning, match=r"kept the largest candidate.*'four': K=2"):
        clf = GMMClassifier(n_components="auto", random_state=0).fit(X, ["four"] * 5)
    assert clf.n_components_.tolist() == [2]
    assert count_fits == [1, 2, 2]


def test_auto_with_one_recording_or_few_frames(rng):
    # one recording: its last fifth is held out; a class of 5 frames: K <= 4 frames of its fit part
    one = _two_component_class(rng, n_recordings=1, n_frames=1000)
    tiny = [rng.normal(0, 1, (5, 3))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # EM on 4 frames may re-seed components
        clf = GMMClassifier(n_components="auto", random_state=0).fit(one + tiny, ["one", "tiny"])
    assert clf.n_components_[0] == 2
    assert max(clf.heldout_scores_[1]) <= 4
