"""Write tests/data/reference_gmm.npz: DiagonalGMM fits on generated data, by today's code.

Run from an untouched checkout of the code to be used as the reference, e.g.
``PYTHONPATH=/work/old python tests/data/make_reference_gmm.py OUT.npz``; the test
``tests/test_mixture_reference.py`` refits the same cases with the current code.
"""

import sys
import warnings

import numpy as np

from audiogmm.exceptions import ConvergenceWarning

try:
    from audiogmm.mixture import DiagonalGMM
except ImportError:  # the code before audiogmm.mixture existed
    from audiogmm.gmm import DiagonalGMM

#: name -> (data key, DiagonalGMM parameters); every fit uses block_size=64 so the 3000
#: frames span several chunks of 16 blocks (the fold order matters).
CASES = {
    "k1_f32": ("X", dict(n_components=1, dtype="float32")),
    "k1_f64": ("X", dict(n_components=1, dtype="float64")),
    "k4_f32": ("X", dict(n_components=4, dtype="float32")),
    "k4_f64": ("X", dict(n_components=4, dtype="float64")),
    "k4_f32_random_ninit2": ("X", dict(n_components=4, dtype="float32", init_params="random",
                                       n_init=2)),
    "k20_f32": ("X", dict(n_components=20, dtype="float32")),
    "k20_f64": ("X", dict(n_components=20, dtype="float64")),
    "reseed_f32": ("Xo", dict(n_components=3, dtype="float32", max_iter=40)),
    "reseed_f64": ("Xo", dict(n_components=3, dtype="float64", max_iter=40)),
}


def data():
    rng = np.random.default_rng(20261201)
    centres = rng.normal(0, 4, (6, 5))
    X = (centres[rng.integers(6, size=3000)] + rng.normal(0, 1, (3000, 5))).astype(np.float32)
    Xo = np.concatenate([rng.normal(0, 1, (3000, 2)), [[60.0, 60.0]]])
    means0 = np.array([[0.0, 0.0], [1.0, 1.0], [60.0, 60.0]])
    return {"X": X, "Xo": Xo, "means0": means0}


def fit(name, arrays):
    key, params = CASES[name]
    params = dict(params)
    if key == "Xo":  # a component on the single outlier: re-seeded
        params["means_init"] = arrays["means0"]
    X = arrays[key]
    if params["dtype"] == "float64":
        X = X.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g = DiagonalGMM(random_state=7, block_size=64, tol=1e-6,
                        **{"max_iter": 25, **params}).fit(X)
    return g


def main(out):
    arrays = data()
    result = dict(arrays)
    for name in CASES:
        g = fit(name, arrays)
        for attr in ("weights_", "means_", "variances_"):
            result[f"{name}/{attr}"] = getattr(g, attr)
        result[f"{name}/lower_bounds_"] = np.asarray(g.lower_bounds_)
    np.savez_compressed(out, **result)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reference_gmm.npz")
