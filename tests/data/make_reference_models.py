"""Write tests/data/reference_models.npz: classifiers trained on generated features.

Run with the code whose results are the reference (it was run with audiogmm as of commit
1da631e, before the restructure of issue 12)::

    PYTHONPATH=/path/to/that/checkout python tests/data/make_reference_models.py

tests/test_reference_models.py trains the same models with today's code and checks that every
array agrees to float32 rounding.
"""

from pathlib import Path

import numpy as np


def corpus():
    """Three classes of generated 'recordings' (frames x 6 features), fixed by the seed."""
    rng = np.random.default_rng(20261201)
    X, y = [], []
    for c, (shift, scale) in enumerate([(0.0, 1.0), (1.5, 0.7), (-1.0, 1.3)]):
        for i in range(6):
            n = int(rng.integers(150, 400))
            comp = rng.integers(0, 3, n)
            frames = rng.normal(shift + comp[:, None] * 0.8, scale, (n, 6)).astype(np.float32)
            X.append(frames)
            y.append(f"class{c}")
    return X, y


def models():
    """``{name: fitted classifier}`` of the reference configurations."""
    from audiogmm.classifier import GMMClassifier
    from audiogmm.ubm import UBMClassifier

    X, y = corpus()
    return {
        "per_class": GMMClassifier(4, reg_covar=1e-3, random_state=0).fit(X, y),
        "per_class_jobs2": GMMClassifier(4, reg_covar=1e-3, random_state=0, n_jobs=2).fit(X, y),
        "ubm": UBMClassifier(8, reg_covar=1e-3, adapt="means,weights", random_state=0).fit(X, y),
    }


def arrays(clf):
    """The class mixtures (and the UBM) of a fitted classifier as named arrays."""
    out = {}
    for i, g in enumerate(clf.gmms_):
        for name in ("weights", "means", "variances"):
            out[f"{name}_{i}"] = np.asarray(getattr(g, name + "_"))
    if hasattr(clf, "ubm_"):
        for name in ("weights", "means", "variances"):
            out[f"ubm_{name}"] = np.asarray(getattr(clf.ubm_, name + "_"))
    return out


if __name__ == "__main__":
    flat = {f"{model}/{k}": v for model, clf in models().items() for k, v in arrays(clf).items()}
    np.savez_compressed(Path(__file__).with_name("reference_models.npz"), **flat)
    print(f"wrote {len(flat)} arrays")
