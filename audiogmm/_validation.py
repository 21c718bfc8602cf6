"""The one home of parameter checks: ints, reals, intervals, options, n_jobs, seeds, frames.

Every check raises :class:`~audiogmm.exceptions.ParameterError` (also a ``ValueError``) with
a message that names the parameter, the value and, where there is one, the fix. This module
imports only :mod:`audiogmm.exceptions` (and NumPy).
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

from audiogmm.exceptions import ParameterError

__all__ = ["is_int", "is_real", "check_int", "check_real", "check_option", "check_n_jobs",
           "check_float_dtype", "check_random_state", "seed_entropy", "check_frames",
           "nonfinite_error"]


def is_int(value):
    """True for an integral number that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """True for a real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name, value, minimum, maximum=None):
    """``value`` as an int in ``[minimum, maximum]`` (``maximum=None``: unbounded).

    Examples
    --------
    >>> check_int("max_iter", 3, 0)
    3
    """
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ParameterError(f"{name} must be an int {bound}, got {value!r}")
    return int(value)


def check_real(name, value, minimum=0.0, maximum=None, *, include_minimum=True,
               include_maximum=True):
    """``value`` as a finite float in the interval given (``None``: that side unbounded).

    Examples
    --------
    >>> check_real("tol", 1e-3)
    0.001
    >>> check_real("alpha", 0.5, 0.0, 1.0, include_minimum=False)
    0.5
    """
    ok = is_real(value) and math.isfinite(float(value))
    if ok and minimum is not None:
        ok = value >= minimum if include_minimum else value > minimum
    if ok and maximum is not None:
        ok = value <= maximum if include_maximum else value < maximum
    if not ok:
        if maximum is None and minimum is None:
            bound = ""
        elif maximum is None:
            bound = f" {'>=' if include_minimum else '>'} {minimum:g}"
        elif minimum is None:
            bound = f" {'<=' if include_maximum else '<'} {maximum:g}"
        else:
            bound = (f" in {'[' if include_minimum else '('}{minimum:g}, {maximum:g}"
                     f"{']' if include_maximum else ')'}")
        raise ParameterError(f"{name} must be a finite number{bound}, got {value!r}")
    return float(value)


def check_option(name, value, options):
    """``value`` if it is one of ``options``, else a ParameterError listing them."""
    options = tuple(options)
    try:
        ok = any(isinstance(value, type(o)) and value == o for o in options)
    except Exception:  # e.g. an array compared with a string
        ok = False
    if not ok:
        raise ParameterError(f"{name} must be one of {options}, got {value!r}")
    return value


def check_n_jobs(n_jobs, name="n_jobs"):
    """``n_jobs`` (None, int >= 1, or negative as in joblib) as a worker count >= 1.

    The one rule for every ``n_jobs``/``--jobs`` of the package: None is 1, a negative count
    is counted from the number of CPUs (-1 all, -2 all but one), as joblib and scikit-learn.

    Examples
    --------
    >>> check_n_jobs(None), check_n_jobs(3)
    (1, 3)
    """
    if n_jobs is None:
        return 1
    if not is_int(n_jobs) or n_jobs == 0:
        raise ParameterError(f"{name} must be None or a non-zero int (-1: all CPUs, -2: all "
                             f"but one), got {n_jobs!r}")
    if n_jobs > 0:
        return int(n_jobs)
    return max(1, (os.cpu_count() or 1) + 1 + int(n_jobs))


def check_float_dtype(value, name="dtype"):
    """``value`` as ``np.dtype('float32')`` or ``np.dtype('float64')``."""
    try:
        dtype = np.dtype(value) if value is not None else None  # np.dtype(None) is float64
    except TypeError:
        dtype = None
    # `None in (float32, float64)` is True (NumPy compares None equal to float64): test it first
    if dtype is None or dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ParameterError(f"{name} must be 'float32' or 'float64', got {value!r}")
    return dtype


_SEED_KINDS = "None, an int >= 0, a numpy Generator or RandomState"


def check_random_state(random_state):
    """Turn ``random_state`` (None, int, Generator or RandomState) into a Generator."""
    if random_state is None:
        return np.random.default_rng()
    if is_int(random_state):
        if random_state < 0:
            raise ParameterError(f"random_state must be {_SEED_KINDS}, got {random_state!r}")
        return np.random.default_rng(int(random_state))
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1, size=4))
    raise ParameterError(f"random_state must be {_SEED_KINDS}, got {random_state!r}")


def seed_entropy(random_state, check_only=False):
    """An integer seed for ``np.random.SeedSequence`` from None, an int or a Generator/RandomState.

    None gives None (fresh entropy); an int >= 0 is used as is; a Generator or RandomState
    draws one integer from its stream (``check_only=True``: draw nothing, return None).
    """
    if random_state is None:
        return None
    if is_int(random_state):
        if random_state < 0:
            raise ParameterError(f"random_state must be None, an int >= 0 or a numpy Generator, "
                                 f"got {random_state!r}")
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return None if check_only else int(random_state.integers(2**63))
    if isinstance(random_state, np.random.RandomState):
        return None if check_only else int(random_state.randint(2**31))
    raise ParameterError(f"random_state must be None, an int >= 0 or a numpy Generator, got "
                         f"{random_state!r}")


def check_frames(X, *, name="X", n_features=None, estimator="DiagonalGMM"):
    """Return X as a 2-D float32/float64 array (float32 and float64 input is not copied)."""
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise ParameterError(f"{name}: sparse input is not supported; pass a dense array "
                             f"(e.g. {name}.toarray())")
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise ParameterError(f"{name}: Complex data not supported; pass real-valued features")
    if X.dtype not in (np.float32, np.float64):
        if X.dtype.kind not in "biuf" and X.dtype != object:
            raise ParameterError(f"{name} must be numeric, got dtype {X.dtype}")
        X = X.astype(np.float64)  # object arrays of non-numbers raise TypeError here
    if X.ndim != 2:
        raise ParameterError(
            f"{name} must be a 2-D array of shape (n_samples, n_features), got shape "
            f"{X.shape}; Reshape your data with {name}.reshape(-1, 1) for a single feature "
            f"or {name}.reshape(1, -1) for a single frame")
    if X.shape[0] < 1:
        raise ParameterError(f"Found array with 0 sample(s) (shape={X.shape}) while a "
                             f"minimum of 1 is required: {name} has no frames")
    if X.shape[1] < 1:
        raise ParameterError(f"Found array with 0 feature(s) (shape={X.shape}) while a "
                             f"minimum of 1 is required: {name} has no features")
    if n_features is not None and X.shape[1] != n_features:
        raise ParameterError(
            f"{name} has {X.shape[1]} features, but {estimator} is expecting {n_features} "
            f"features as input; pass frames with the same features used in fit")
    return X


def nonfinite_error(name, n_rows, first_row):
    """The ParameterError for frames holding NaN or inf (``n_rows`` rows, first at ``first_row``)."""
    return ParameterError(
        f"{name} contains NaN or inf in {n_rows} row(s) (first at row {first_row}); "
        f"remove or impute those frames before fitting")
