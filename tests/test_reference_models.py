"""Refactors change no result: today's code reproduces models trained before the restructure.

tests/data/reference_models.npz was written by tests/data/make_reference_models.py with the
code as it was before issue 12's restructure. On the machine that wrote it the arrays are
bit-identical; across CPUs float32 GEMMs may round differently, so the test allows float32
rounding (a changed algorithm moves parameters far more than that).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).with_name("data")


def _maker():
    spec = importlib.util.spec_from_file_location("make_reference_models", DATA / "make_reference_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained():
    maker = _maker()
    return {name: maker.arrays(clf) for name, clf in maker.models().items()}


@pytest.mark.parametrize("name", ["per_class", "per_class_jobs2", "ubm"])
def test_models_reproduce_the_reference(trained, name):
    with np.load(DATA / "reference_models.npz") as ref:
        expected = {k.split("/", 1)[1]: ref[k] for k in ref.files if k.startswith(name + "/")}
    got = trained[name]
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=2e-5, atol=1e-7, err_msg=f"{name}: {key}")
