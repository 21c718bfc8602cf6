"""Recipes: the registry of methods and presets, one object for the CLI and the Python API.

A :class:`Recipe` is everything that decides what a trained model is, apart from the data and
the seed: the features (a :class:`~audiogmm.features.FeatureConfig`), the method
(``"per-class"`` or ``"ubm"``) and the classifier's parameters. A *preset* is a named recipe,
features **and** classifier together, so ``audiogmm train --preset speech`` and
``audiogmm.train(DATA, preset="speech")`` build the same model.

:data:`METHODS` maps a method name to its classifier class; the model file
(:mod:`audiogmm.persistence`) reads and writes any of them through it, with no
``isinstance``.

Examples
--------
>>> r = get_recipe("music", n_components=16)
>>> r.method, r.params["n_components"], r.features.n_mels
('per-class', 16, 128)
>>> get_recipe().name is None        # the no-preset default: DEFAULT_RECIPE
True
>>> get_recipe(median_seconds=0.9).method   # ... or chosen from the recordings' duration
'ubm'
>>> get_recipe(method="per-class").params["n_components"]   # another method: its own default size
32
"""

from dataclasses import dataclass, field
from types import MappingProxyType

from .classifier import GMMClassifier
from .exceptions import ParameterError
from .features import FeatureConfig
from .ubm import UBMClassifier

__all__ = ["Recipe", "METHODS", "PRESETS", "PRESET_HELP", "DEFAULT_PARAMS", "DEFAULT_RECIPE", "METHOD_DEFAULTS",
           "AUTO_MUSIC_SECONDS", "default_preset", "get_recipe", "make_classifier"]

#: The classifier class of each method name (``--method``, the model file's ``method``).
METHODS = MappingProxyType({cls.method: cls for cls in (GMMClassifier, UBMClassifier)})

#: Classifier parameters of a recipe when neither the preset nor the caller sets them
#: (``random_state`` and ``n_jobs`` belong to the run, not to the recipe).
DEFAULT_PARAMS = MappingProxyType({
    "n_components": 8, "max_iter": 100, "tol": 1e-3, "reg_covar": 1e-3, "n_init": 1, "priors": "uniform",
    "relevance_factor": 16.0, "top_c": 5, "adapt": "means",
})

#: Parameters only the ``"ubm"`` method takes.
_UBM_ONLY = ("relevance_factor", "top_c", "adapt")

#: The presets: ``(feature preset, method, classifier parameters)``. Measured with
#: ``bench/accuracy.py`` (README, "Accuracy"): for speech, a UBM of 128 components with
#: means+weights adaptation beat per-class K=32 on every speech protocol; for music, per-class
#: K=32 matched or beat the UBM on soundtrack and genre-midi.
PRESETS = MappingProxyType({
    "speech": ("speech", "ubm", {"n_components": 128, "relevance_factor": 16.0, "adapt": "means,weights"}),
    "music": ("music", "per-class", {"n_components": 32}),
})

#: What each preset is, for ``--help`` and error messages.
PRESET_HELP = MappingProxyType({
    "speech": "speech (speaker ID, spoken language, words): 16 kHz, 20 MFCC + deltas from 40 mel bands, a UBM "
              "of 128 components with means+weights MAP adaptation",
    "music": "music (genre, soundtracks): 16 kHz, 20 MFCC + deltas from 128 mel bands from 0 Hz, one GMM of "
             "32 components per class",
})

#: The recipe of ``get_recipe()`` when nothing is known of the data (the Python API without a
#: dataset, e.g. ``bench/`` and ``get_recipe(n_components=16)``), as a preset's
#: ``(feature preset, method, classifier parameters)``: the music preset's recipe. With a
#: dataset, the workflows pass its recordings' median duration and :func:`default_preset` picks.
DEFAULT_RECIPE = PRESETS["music"]

#: :func:`default_preset`: training recordings whose median duration is at least this many
#: seconds get the music recipe, shorter ones the speech recipe. The measured corpora lie far on
#: either side (medians: FSDD words 0.44 s, GCompris words 0.95 s; genre-midi clips 30 s,
#: soundtrack tracks 222 s), so any threshold from about 3 to 30 s chooses the same; 10 s is a
#: round value between them, not tuned.
AUTO_MUSIC_SECONDS = 10.0


def default_preset(median_seconds):
    """The preset the no-preset default trains for recordings of this median duration.

    Short recordings (words, utterances) get ``"speech"``, long ones (songs, clips, tracks)
    ``"music"``: on grouped cross-validation of every protocol's training part
    (``bench/defaults.py``) that preset was the best or tied (README, "Defaults without tuning").

    Parameters
    ----------
    median_seconds : float or None
        Median duration of the training recordings; None (unknown): the music recipe, as
        :data:`DEFAULT_RECIPE`.

    Returns
    -------
    {"speech", "music"}

    Examples
    --------
    >>> default_preset(0.8), default_preset(30.0), default_preset(None)
    ('speech', 'music', 'music')
    """
    if median_seconds is None:
        return "music"
    return "music" if float(median_seconds) >= AUTO_MUSIC_SECONDS else "speech"


#: Parameters a method takes when a recipe is switched to it (``--method`` without ``-k``):
#: a per-class mixture and a UBM want very different sizes.
METHOD_DEFAULTS = MappingProxyType({
    "per-class": MappingProxyType({"n_components": 32}),
    "ubm": MappingProxyType({"n_components": 128, "adapt": "means,weights"}),
})


@dataclass(frozen=True)
class Recipe:
    """Features + method + classifier parameters: what to train, without the data.

    Parameters
    ----------
    features : FeatureConfig
    method : {"per-class", "ubm"}
    params : mapping
        Classifier parameters (see :data:`DEFAULT_PARAMS`); ubm-only ones are ignored by
        ``"per-class"``.
    name : str or None
        The preset it came from.
    """

    features: FeatureConfig = field(default_factory=FeatureConfig)
    method: str = "per-class"
    params: dict = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    name: str | None = None

    def __post_init__(self):
        if not isinstance(self.features, FeatureConfig):
            raise ParameterError(f"features must be a FeatureConfig, got {type(self.features).__name__}")
        if self.method not in METHODS:
            raise ParameterError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        unknown = sorted(set(self.params) - set(DEFAULT_PARAMS))
        if unknown:
            raise ParameterError(f"unknown recipe parameter(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(DEFAULT_PARAMS)}")
        object.__setattr__(self, "params", MappingProxyType({**DEFAULT_PARAMS, **self.params}))

    def classifier_params(self):
        """The keyword arguments of this recipe's classifier class (without the run's seed and jobs)."""
        params = dict(self.params)
        if params["top_c"] == 0:  # the command line's "0: all components"
            params["top_c"] = None
        if self.method != "ubm":
            for name in _UBM_ONLY:
                params.pop(name)
        return params

    def make_classifier(self, *, random_state=None, n_jobs=None):
        """A validated, unfitted classifier of this recipe."""
        clf = METHODS[self.method](**self.classifier_params(), random_state=random_state, n_jobs=n_jobs)
        clf.validate_params()
        return clf

    def replace(self, *, features=None, method=None, **params):
        """A copy with some fields changed (None keeps a field)."""
        return Recipe(features=self.features if features is None else features,
                      method=self.method if method is None else method,
                      params={**self.params, **{k: v for k, v in params.items() if v is not None}},
                      name=self.name)

    def to_dict(self):
        """JSON-safe description (what a model's training summary records)."""
        return {"preset": self.name, "method": self.method, "params": dict(self.params),
                "features": self.features.to_dict()}


def get_recipe(preset=None, *, median_seconds=None, features=None, method=None, **params):
    """The recipe of ``preset`` (None: the defaults) with explicit choices over it.

    Parameters
    ----------
    preset : {"speech", "music"} or None
    median_seconds : float, optional
        With no preset: the median duration of the training recordings, from which
        :func:`default_preset` picks the base recipe (None: :data:`DEFAULT_RECIPE`). Ignored
        with a preset.
    features : FeatureConfig, optional
        Replaces the preset's features whole.
    method : {"per-class", "ubm"}, optional
    **params
        Classifier parameters (:data:`DEFAULT_PARAMS`); None leaves the preset's value.

    Notes
    -----
    With no preset the base is the recipe of ``default_preset(median_seconds)`` (its
    ``name`` stays None: no preset was asked for). A ``method`` other than the base's
    starts from :data:`METHOD_DEFAULTS` for that method (a per-class mixture of 128 components
    would be a UBM's size); ``n_components="auto"`` with no preset and no method means
    ``"per-class"``, the method that chooses K.

    Raises
    ------
    ParameterError
        Unknown preset, method or parameter, or an invalid value.
    """
    if preset is None:
        feature_preset, preset_method, preset_params = (
            DEFAULT_RECIPE if median_seconds is None else PRESETS[default_preset(median_seconds)])
        base = Recipe(FeatureConfig.preset(feature_preset), preset_method, dict(preset_params))
        if method is None and params.get("n_components") == "auto":
            method = "per-class"  # the only method that chooses K; the default's method was ours to pick
    elif preset == "language":
        raise ParameterError("preset 'language' was the same recipe as 'speech' and was removed: use "
                             "--preset speech (preset='speech')")
    elif preset not in PRESETS:
        raise ParameterError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    else:
        feature_preset, preset_method, preset_params = PRESETS[preset]
        base = Recipe(FeatureConfig.preset(feature_preset), preset_method, dict(preset_params), preset)
    if method is not None and method != base.method:
        # another method than the recipe's: its own defaults, not the other method's sizes
        base = Recipe(base.features, method, dict(METHOD_DEFAULTS.get(method, {})), base.name)
    return base.replace(features=features, method=method, **params)


def make_classifier(method="per-class", *, random_state=None, n_jobs=None, **params):
    """A validated, unfitted classifier for ``method`` with recipe parameters ``params``.

    Raises
    ------
    ParameterError
        Unknown method or an invalid parameter.
    """
    return get_recipe(method=method, **params).make_classifier(random_state=random_state, n_jobs=n_jobs)
