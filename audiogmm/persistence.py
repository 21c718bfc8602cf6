"""The model file: one ``.npz`` archive of plain arrays plus JSON metadata; no executable objects.

Format (``format_version`` 1)
-----------------------------
A ZIP archive written by :func:`numpy.savez` and read with ``allow_pickle=False``, so
loading a file from an untrusted source cannot run code. Members:

``metadata``
    A ``uint8`` array holding UTF-8 JSON: ``format`` (always ``"audiogmm-model"``),
    ``format_version``, ``audiogmm_version``, ``created`` (UTC, ISO 8601), ``classes``
    (label strings, in score order), ``feature_config`` (the :class:`~audiogmm.features.FeatureConfig`
    as a dict: prediction always re-extracts features with it), ``classifier`` (the
    :class:`~audiogmm.classifier.GMMClassifier` parameters), ``class_prior``, ``n_recordings``
    and ``n_frames`` per class, ``gmms`` (per class: ``n_components``, ``converged``,
    ``n_iter``, ``lower_bound``) and ``training`` (a free-form summary of the run).
``weights_<i>``, ``means_<i>``, ``variances_<i>``
    The mixture of class ``i`` as float64 arrays of shapes ``(K_i,)``, ``(K_i, D)``, ``(K_i, D)``.

``method`` in the metadata says how the mixtures were made: ``"per-class"`` (one GMM per
class trained by EM, :class:`~audiogmm.classifier.GMMClassifier`; files written before the
key existed are read as this) or ``"ubm"`` (:class:`~audiogmm.ubm.UBMClassifier`: the class
mixtures are MAP-adapted from a universal background model, stored as ``ubm_weights``,
``ubm_means``, ``ubm_variances``, and ``classifier`` holds its parameters). The layout of a
per-class file is unchanged, so the format version stays 1; a reader that predates
``method`` rejects a ``"ubm"`` file (its classifier parameters are unknown to it) with a
:class:`~audiogmm.exceptions.ModelFileError` rather than misreading it. An unknown
``method`` is a ModelFileError.

Files are written atomically: to a temporary file in the destination folder, flushed to
disk, then renamed over the destination, so a crash never leaves a half-written model
under the final name and an existing model is replaced only by a complete one.

Loading a file from an untrusted source
---------------------------------------
:func:`load_model` validates in layers before anything is built, and any failure is a
:class:`~audiogmm.exceptions.ModelFileError` naming the file and the field or member:

1. Only a regular file is opened (a folder, FIFO, device or socket, also behind a symlink,
   is refused without being read), of at most :data:`MAX_FILE_BYTES`.
2. The ZIP members are checked from the central directory before any is read: known
   names only (``metadata``, ``weights_<i>``, ``means_<i>``, ``variances_<i>``, ``ubm_*``
   and, reserved for later additions, ``calibration_*``), stored or deflated, not
   encrypted, each declaring an uncompressed size within what the metadata allows (so a
   zip bomb is refused without being inflated); each member's ``.npy`` header is parsed
   before its data (float64 or uint8 only, the shape the metadata implies), so no
   allocation exceeds what the metadata describes.
3. The JSON metadata is at most :data:`MAX_METADATA_BYTES`, nested at most
   :data:`MAX_JSON_DEPTH` deep (checked before parsing), strict UTF-8, without duplicate
   keys, integers of more than :data:`MAX_INT_DIGITS` digits, or NaN/Infinity/overflowing
   numbers (except a ``lower_bound``, which may be null, and the free-form ``training``).
4. Every field is checked for type, range and consistency (classes safe as folder names,
   the feature configuration and classifier parameters accepted by their own checks,
   priors positive and summing to 1, counts, components and feature sizes agreeing).
5. The arrays: finite means within :data:`MAX_ABS_MEAN`, variances within
   :data:`VARIANCE_RANGE`, weights >= 0 summing to 1 (these sanity bounds lie far outside
   any audio feature's scale and keep every score finite).
"""

import datetime
import json
import math
import os
import re
import stat
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .exceptions import ModelFileError, ParameterError
from ._files import check_class_names, write_atomically
from .features import FeatureConfig
from .recipes import METHODS

__all__ = ["TrainedModel", "save_model", "load_model", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "audiogmm-model"
FORMAT_VERSION = 1

#: Largest model file :func:`load_model` opens (checked before reading).
MAX_FILE_BYTES = 2 * 1024**3
#: Largest JSON metadata member.
MAX_METADATA_BYTES = 16 * 1024**2
#: Deepest nesting of JSON arrays/objects in the metadata (checked before parsing).
MAX_JSON_DEPTH = 64
#: Longest integer in the metadata, in digits.
MAX_INT_DIGITS = 40
#: Highest ``format_version`` read as a number (anything above is not a version).
MAX_FORMAT_VERSION = 10_000
#: Most classes, components per mixture and features per frame a model file may describe.
MAX_CLASSES, MAX_COMPONENTS, MAX_FEATURES = 10_000, 65_536, 10_000
#: Members named ``calibration_*`` are reserved for later additions: float64 or uint8, at most
#: this many members of this many bytes in all, read but not used by this version.
EXTRA_PREFIX, MAX_EXTRA_MEMBERS, MAX_EXTRA_BYTES = "calibration_", 64, 64 * 1024**2
#: Largest mel filterbank (n_mels x (n_fft / 2 + 1) entries) a model's feature config may ask for.
MAX_FILTERBANK = 2**24
#: Sanity bounds on a mixture's means (absolute value) and variances: far outside the scale of any
#: audio feature, and narrow enough that float32 scoring of any sane frame stays finite.
MAX_ABS_MEAN = 1e8
VARIANCE_RANGE = (1e-12, 1e16)
#: Largest .npy header read before a member's data (numpy's own limit is 10,000 bytes).
_MAX_NPY_HEADER = 10_000 + 12


@dataclass
class TrainedModel:
    """A fitted classifier together with the feature configuration it was trained on.

    Attributes
    ----------
    classifier : BaseGMMClassifier
        A fitted classifier of one of :data:`audiogmm.recipes.METHODS`.
        Fitted; its ``classes_`` are strings.
    feature_config : FeatureConfig
        The features every recording must be turned into before scoring.
    summary : dict
        JSON-safe facts about training (data source, counts, skipped files, timings...).
    metadata : dict
        For a loaded model, the file's metadata (format and audiogmm versions, creation time).
    """

    classifier: "BaseGMMClassifier"  # noqa: F821 (audiogmm.classifier; any method of audiogmm.recipes.METHODS)
    feature_config: FeatureConfig
    summary: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def classes(self):
        """The class labels, as a list of str."""
        return [str(c) for c in self.classifier.classes_]

    def save(self, path):
        """Write this model to ``path`` atomically; see :func:`save_model`."""
        return save_model(self, path)


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("audiogmm")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _json_safe_params(clf):
    params = clf.get_params()
    if isinstance(params["priors"], np.ndarray):
        params["priors"] = params["priors"].tolist()
    if not (params["random_state"] is None or isinstance(params["random_state"], int)):
        params["random_state"] = None
    return params


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _finite_json(obj):
    """``obj`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


def save_model(model, path):
    """Write ``model`` to ``path`` (conventionally ``*.agmm``), atomically.

    Parameters
    ----------
    model : TrainedModel
    path : str or Path

    Returns
    -------
    path : Path

    Raises
    ------
    ModelFileError
        The classifier is not fitted or the file cannot be written (the message names the path).
    """
    path = Path(path)
    clf = model.classifier
    if not hasattr(clf, "gmms_"):
        raise ModelFileError("cannot save an unfitted classifier: train it first")
    state, members = clf.to_arrays()
    for info in state["gmms"] + ([state["ubm"]] if "ubm" in state else []):
        info["lower_bound"] = _finite_or_none(info["lower_bound"])
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "audiogmm_version": _version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "feature_config": model.feature_config.to_dict(),
        "method": clf.method,
        "classifier": _json_safe_params(clf),
        **state,
        "training": _finite_json(model.summary),
    }
    why = _check_class_names(meta["classes"])
    if why:
        raise ModelFileError(f"cannot save model {str(path)!r}: {why}; rename the class (its label) and train again")
    # NaN/Infinity are not JSON (and load_model refuses them): written as null instead.
    arrays = {"metadata": np.frombuffer(json.dumps(meta, indent=1, allow_nan=False).encode("utf-8"), dtype=np.uint8)}
    arrays.update(members)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ModelFileError(f"cannot write model {str(path)!r}: folder {str(folder)!r} does not exist")
    try:
        write_atomically(path, lambda fh: np.savez(fh, **arrays))
    except OSError as exc:
        raise ModelFileError(f"cannot write model {str(path)!r}: {exc.strerror or exc}") from None
    return path


def _bad(path, why):
    return ModelFileError(f"{str(path)!r} is not a usable audiogmm model: {why}")


def _show(value, limit=60):
    """``repr(value)``, cut short so a hostile value cannot flood a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


# -- (a) reading the container safely ---------------------------------------------------------------

_FILE_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(path, mode):
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    return _bad(path, f"it is {kind}, not a regular file")


def _open_regular(path):
    """Open ``path`` for reading if it is a regular file of at most MAX_FILE_BYTES."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(f"model file {str(path)!r} does not exist: train one with 'audiogmm train'") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {str(path)!r}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(f"model file {str(path)!r} is a folder, not a model file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the open, a device never end
        raise _not_regular(path, st.st_mode)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {str(path)!r}: {exc.strerror or exc}") from None
    st = os.fstat(fd)  # again on what was opened: the name may have been swapped since the stat
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
        os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
        raise _bad(path, f"it holds {st.st_size} bytes, more than a model file may ({MAX_FILE_BYTES})")
    return os.fdopen(fd, "rb")


#: Member names (without ``.npy``) a model file may hold; indices are checked against the metadata.
_MEMBER_NAME = re.compile(r"(metadata|(weights|means|variances)_(0|[1-9][0-9]{0,8})|ubm_(weights|means|variances)"
                          rf"|{EXTRA_PREFIX}[A-Za-z0-9_]{{1,64}})\.npy")
#: What reading a damaged archive can raise (zipfile, zlib and numpy's header parser, whose
#: fallback tokenizer raises TokenError on an unbalanced header).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, TypeError,
                SyntaxError, RecursionError, OverflowError, NotImplementedError, RuntimeError, struct.error,
                KeyError, IndexError, MemoryError, tokenize.TokenError)


def _members(zf, path):
    """The archive's members by name, checked from the central directory before any is read."""
    infos = zf.infolist()
    if len(infos) > 1 + 3 * MAX_CLASSES + 3 + MAX_EXTRA_MEMBERS:
        raise _bad(path, f"its archive holds {len(infos)} members, more than a model file may")
    if "metadata.npy" not in {info.filename for info in infos}:
        raise _bad(path, "it has no audiogmm metadata (another .npz file?)")
    members = {}
    for info in infos:
        name = info.filename
        if not _MEMBER_NAME.fullmatch(name):
            raise _bad(path, f"its archive holds an unknown member {_show(name)} (another .npz file?)")
        if name in members:
            raise _bad(path, f"its archive holds member {name!r} twice")
        if info.flag_bits & 0x1:
            raise _bad(path, f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _bad(path, f"member {name!r} uses compression method {info.compress_type}; "
                             f"a model file is stored or deflated")
        members[name] = info
    return members


def _read_member(zf, info, path, *, dtypes, shape=None, max_bytes=None):
    """One ``.npy`` member, its size and header checked before its data is inflated.

    ``shape`` given: the member must have exactly that shape; otherwise any shape of at most
    ``max_bytes``. Never allocates more than the expected array (plus a 1 MiB read buffer).
    """
    name = info.filename
    itemsize = max(np.dtype(d).itemsize for d in dtypes)
    if shape is not None:
        max_bytes = math.prod(shape) * itemsize
    if info.file_size > max_bytes + _MAX_NPY_HEADER:  # checked before inflating anything
        raise _bad(path, f"member {name!r} declares {info.file_size} bytes uncompressed, more than its metadata "
                         f"allows ({max_bytes + _MAX_NPY_HEADER})")
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            got_shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            got_shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise _bad(path, f"member {name!r} is a .npy file of unknown version {version}")
        if not any(dtype == np.dtype(d) for d in dtypes):  # exact, byte order included; never object
            raise _bad(path, f"member {name!r} holds dtype {_show(str(dtype))}, expected "
                             f"{' or '.join(np.dtype(d).name for d in dtypes)}")
        got_shape = tuple(got_shape)
        if shape is not None and got_shape != tuple(shape):
            raise _bad(path, f"member {name!r} has shape {_show(got_shape)}, but the metadata implies {tuple(shape)}")
        if not all(isinstance(n, int) and n >= 0 for n in got_shape) or len(got_shape) > 8:
            raise _bad(path, f"member {name!r} declares an invalid shape {_show(got_shape)}")
        nbytes = math.prod(got_shape) * dtype.itemsize
        if nbytes > max_bytes:
            raise _bad(path, f"member {name!r} declares shape {_show(got_shape)} ({nbytes} bytes), more than its "
                             f"metadata allows ({max_bytes})")
        if info.file_size - fh.tell() != nbytes:
            raise _bad(path, f"member {name!r} holds {info.file_size - fh.tell()} bytes of data for shape "
                             f"{got_shape} ({nbytes} bytes)")
        flat = np.empty(math.prod(got_shape), dtype=dtype)
        view = memoryview(flat).cast("B")
        done = 0
        while done < nbytes:
            n = fh.readinto(view[done:done + (1 << 20)])
            if not n:
                raise _bad(path, f"member {name!r} is truncated")
            done += n
    return flat.reshape(got_shape, order="F" if fortran else "C")


def _read_container(path):
    """Read a model file safely: ``(meta, arrays)``, the metadata checked, every array of its implied shape.

    Raises
    ------
    ModelFileError
        Anything wrong with the file, the archive, a member or the metadata.
    """
    with _open_regular(path) as fh:
        try:
            zf = zipfile.ZipFile(fh)
        except _READ_ERRORS:
            raise _bad(path, "it is not an audiogmm model file (wrong format or damaged)") from None
        with zf:
            members = _members(zf, path)
            try:
                raw = _read_member(zf, members["metadata.npy"], path, dtypes=(np.uint8,), max_bytes=MAX_METADATA_BYTES)
            except _READ_ERRORS as exc:
                raise _bad(path, f"member 'metadata.npy' is damaged ({_show(str(exc), 200)})") from None
            if raw.ndim != 1:
                raise _bad(path, f"member 'metadata.npy' has shape {raw.shape}, expected a 1-D byte array")
            meta = _parse_metadata(raw.tobytes(), path)
            _check_metadata(meta, path)
            specs = _member_shapes(meta)
            missing = [name for name in specs if f"{name}.npy" not in members]
            if missing:
                raise _bad(path, f"its content is inconsistent: member {missing[0] + '.npy'!r} is missing "
                                 f"(the metadata describes it)")
            extra_bytes = 0
            arrays = {}
            for member, info in members.items():
                name = member[:-4]
                if name == "metadata":
                    continue
                if name not in specs and not name.startswith(EXTRA_PREFIX):
                    raise _bad(path, f"its archive holds member {member!r}, which the metadata does not describe")
                try:
                    if name in specs:
                        arrays[name] = _read_member(zf, info, path, dtypes=(np.float64,), shape=specs[name])
                    else:
                        arrays[name] = _read_member(zf, info, path, dtypes=(np.float64, np.uint8),
                                                    max_bytes=MAX_EXTRA_BYTES - extra_bytes)
                        extra_bytes += arrays[name].nbytes
                except _READ_ERRORS as exc:
                    raise _bad(path, f"member {member!r} is damaged ({_show(str(exc), 200)})") from None
    return meta, arrays


def _member_shapes(meta):
    """The shape of every array member the (checked) metadata describes, by member name."""
    d = meta["n_features"]
    shapes = {}
    for i, info in enumerate(meta["gmms"]):
        k = info["n_components"]
        shapes.update({f"weights_{i}": (k,), f"means_{i}": (k, d), f"variances_{i}": (k, d)})
    if meta.get("method", "per-class") == "ubm":
        k = meta["classifier"]["n_components"]
        shapes.update({"ubm_weights": (k,), "ubm_means": (k, d), "ubm_variances": (k, d)})
    return shapes


# -- (b) the metadata: JSON, then the schema --------------------------------------------------------

#: A JSON string (escapes included), removed before the bracket scan that bounds the nesting depth.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class _Refused:
    """Stands in the parsed metadata for a number that cannot be used (NaN, inf, a 5,000-digit int)."""

    def __init__(self, what):
        self.what = what

    def __repr__(self):
        return self.what


class _DuplicateKey(ValueError):
    pass


def _json_depth(raw):
    """Deepest nesting of ``[``/``{`` outside strings (JSON's own parser recurses, so check first)."""
    codes = np.frombuffer(_JSON_STRING.sub(b'""', raw), dtype=np.uint8)
    opening = (codes == ord("[")) | (codes == ord("{"))
    where = np.flatnonzero(opening | (codes == ord("]")) | (codes == ord("}")))
    if where.size == 0:
        return 0
    return int(np.cumsum(np.where(opening[where], 1, -1).astype(np.int32)).max())


def _parse_int(text):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return _Refused(f"a {len(text.lstrip('-'))}-digit number")
    return int(text)


def _parse_float(text):
    value = float(text)
    return value if math.isfinite(value) else _Refused(f"{_show(text, 30)} (not a finite float64)")


def _unique_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(f"its metadata holds the key {_show(key)} twice")
        seen[key] = value
    return seen


def _parse_metadata(raw, path):
    """The metadata bytes as a dict, by a JSON parse bounded in size, depth and numbers."""
    if len(raw) > MAX_METADATA_BYTES:
        raise _bad(path, f"its metadata holds {len(raw)} bytes, more than {MAX_METADATA_BYTES}")
    depth = _json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise _bad(path, f"its metadata is nested {depth} deep, more than {MAX_JSON_DEPTH}")
    try:
        meta = json.loads(raw.decode("utf-8"), parse_int=_parse_int, parse_float=_parse_float,
                          parse_constant=lambda text: _Refused(f"{text} (not a finite number)"),
                          object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as exc:
        raise _bad(path, f"its metadata is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except _DuplicateKey as exc:
        raise _bad(path, str(exc)) from None
    except ValueError as exc:
        raise _bad(path, f"its metadata is damaged ({_show(str(exc), 200)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise _bad(path, "its metadata does not describe an audiogmm model")
    if isinstance(meta.get("training"), (dict, list)):  # free-form, only shown: unusable numbers become null
        meta["training"] = _replace_refused(meta["training"])
    mixtures = meta["gmms"] if isinstance(meta.get("gmms"), list) else []
    for info in [*mixtures, meta.get("ubm")]:
        if isinstance(info, dict) and isinstance(info.get("lower_bound"), _Refused):
            info["lower_bound"] = None  # older files wrote NaN for a mixture without an EM bound
    where = _find_refused(meta, "")
    if where is not None:
        field_name, value = where
        raise _bad(path, f"metadata field {field_name!r} must be a usable number, got {value!r}")
    return meta


def _replace_refused(obj):
    if isinstance(obj, _Refused):
        return None
    if isinstance(obj, dict):
        return {k: _replace_refused(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_refused(v) for v in obj]
    return obj


def _find_refused(obj, where):
    if isinstance(obj, _Refused):
        return where, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        found = _find_refused(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
        if found is not None:
            return found
    return None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_class_names(names):
    """None when every class name is a safe single folder name, else why not (``sort`` makes folders of them)."""
    for i, name in enumerate(names):
        if not isinstance(name, str):
            return f"classes[{i}] must be a non-empty str, got {_show(name)}"
    try:
        check_class_names(names)
    except ParameterError as exc:
        return f"'classes': {exc}"
    return None


def _check_feature_config(d, path):
    """The feature configuration, refused before FeatureConfig builds a filterbank too large to allocate."""
    if not isinstance(d, dict):
        raise _bad(path, f"metadata field 'feature_config' must be an object, got {_show(d)}")
    default = FeatureConfig()
    sr, win_ms, n_mels = (d.get(k, getattr(default, k)) for k in ("sample_rate", "win_ms", "n_mels"))
    if _is_real(sr) and _is_real(win_ms) and _is_real(n_mels) and sr > 0 and win_ms > 0 and n_mels > 0:
        n_fft = 1 << max(0, int(min(round(sr * win_ms / 1000.0), 2**40)) - 1).bit_length()
        if n_mels * (n_fft // 2 + 1) > MAX_FILTERBANK:
            raise _bad(path, f"metadata field 'feature_config' asks for a {n_mels} x {n_fft // 2 + 1} mel "
                             f"filterbank (n_mels={n_mels!r}, sample_rate={sr!r}, win_ms={win_ms!r}), more "
                             f"than {MAX_FILTERBANK} entries")
    try:
        return FeatureConfig.from_dict(d)
    except (ParameterError, TypeError) as exc:
        raise _bad(path, f"metadata field 'feature_config' is invalid: {exc}") from None


def _is_float_dtype_name(value):
    try:
        return isinstance(value, str) and np.dtype(value) in (np.dtype(np.float32), np.dtype(np.float64))
    except TypeError:
        return False


def _check_classifier(params, method, n_classes, path):
    cls = METHODS[method]
    if not isinstance(params, dict):
        raise _bad(path, f"metadata field 'classifier' must be an object, got {_show(params)}")
    unknown = sorted(set(params) - set(cls._param_names))
    if unknown:
        raise _bad(path, f"metadata field 'classifier' holds unknown parameter(s) {', '.join(map(repr, unknown))} "
                         f"for {cls.__name__} (known: {', '.join(cls._param_names)})")
    priors = params.get("priors")
    if isinstance(priors, list) and (len(priors) != n_classes or not all(_is_real(p) and p > 0 for p in priors)):
        raise _bad(path, f"metadata field 'classifier.priors' must be {n_classes} finite numbers > 0, "
                         f"got {_show(priors)}")
    if "dtype" in params and not _is_float_dtype_name(params["dtype"]):
        # Checked here too: the classifier's own check lets a value numpy cannot read through
        # (np.dtype(None) is float64, so None compares equal to it).
        raise _bad(path, f"metadata field 'classifier.dtype' must be 'float32' or 'float64', "
                         f"got {_show(params['dtype'])}")
    try:
        clf = cls(**params)
        clf.validate_params()
    except (ParameterError, TypeError) as exc:
        raise _bad(path, f"metadata field 'classifier' is invalid: {exc}") from None
    return clf


def _check_mixture_info(info, field_name, path):
    if not isinstance(info, dict):
        raise _bad(path, f"metadata field {field_name!r} must be an object, got {_show(info)}")
    k = info.get("n_components")
    if not _is_int(k) or not 1 <= k <= MAX_COMPONENTS:
        raise _bad(path, f"metadata field '{field_name}.n_components' must be an int from 1 to {MAX_COMPONENTS}, "
                         f"got {_show(k)}")
    if not isinstance(info.get("converged"), bool):
        raise _bad(path, f"metadata field '{field_name}.converged' must be true or false, "
                         f"got {_show(info.get('converged'))}")
    n = info.get("n_iter")
    if not _is_int(n) or not 0 <= n <= 2**31:
        raise _bad(path, f"metadata field '{field_name}.n_iter' must be an int >= 0, got {_show(n)}")
    bound = info.get("lower_bound")
    if not (bound is None or _is_real(bound)):
        raise _bad(path, f"metadata field '{field_name}.lower_bound' must be a finite number or null, "
                         f"got {_show(bound)}")
    return k


def _check_counts(meta, key, n_classes, path):
    values = meta.get(key)
    if not isinstance(values, list) or len(values) != n_classes or not all(
            _is_int(v) and 0 <= v < 2**63 for v in values):
        raise _bad(path, f"metadata field {key!r} must be {n_classes} ints >= 0 (one per class), got {_show(values)}")


def _check_metadata(meta, path):
    """Check every field of parsed metadata for type, range and consistency.

    Raises
    ------
    ModelFileError
        Naming the file and the first field that is wrong.
    """
    version = meta.get("format_version")
    if not _is_int(version) or not 1 <= version <= MAX_FORMAT_VERSION:
        raise _bad(path, f"metadata field 'format_version' must be an int from 1 to {MAX_FORMAT_VERSION}, "
                         f"got {_show(version)} (unknown format version)")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} uses model format {version}, newer than this audiogmm "
            f"({_version()}, format {FORMAT_VERSION}) reads: upgrade audiogmm"
        )
    for key in ("audiogmm_version", "created"):
        if key in meta and not (isinstance(meta[key], str) and len(meta[key]) <= 100):
            raise _bad(path, f"metadata field {key!r} must be a short str, got {_show(meta[key])}")
    method = meta.get("method", "per-class")
    if not isinstance(method, str) or method not in METHODS:
        raise _bad(path, f"unknown method {_show(method)} (this audiogmm knows {', '.join(METHODS)}): "
                         f"upgrade audiogmm")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES:
        raise _bad(path, f"metadata field 'classes' must be a list of 1 to {MAX_CLASSES} names, got {_show(classes)}")
    why = _check_class_names(classes)
    if why:
        raise _bad(path, f"metadata field {why}")
    n = len(classes)
    config = _check_feature_config(meta.get("feature_config"), path)
    clf = _check_classifier(meta.get("classifier"), method, n, path)
    d = meta.get("n_features")
    if not _is_int(d) or not 1 <= d <= MAX_FEATURES:
        raise _bad(path, f"metadata field 'n_features' must be an int from 1 to {MAX_FEATURES}, got {_show(d)}")
    if d != config.n_features:
        raise _bad(path, f"metadata field 'n_features' is {d}, but the feature config gives {config.n_features}")
    prior = meta.get("class_prior")
    if not isinstance(prior, list) or len(prior) != n or not all(_is_real(p) and p > 0 for p in prior):
        raise _bad(path, f"metadata field 'class_prior' must be {n} finite numbers > 0 (one per class), "
                         f"got {_show(prior)}")
    if abs(math.fsum(prior) - 1.0) > 1e-6:
        raise _bad(path, f"metadata field 'class_prior' must sum to 1, got {math.fsum(prior):.6g}")
    _check_counts(meta, "n_recordings", n, path)
    _check_counts(meta, "n_frames", n, path)
    gmms = meta.get("gmms")
    if not isinstance(gmms, list) or len(gmms) != n:
        raise _bad(path, f"metadata field 'gmms' must be a list of {n} objects (one per class), got {_show(gmms)}")
    ks = [_check_mixture_info(info, f"gmms[{i}]", path) for i, info in enumerate(gmms)]
    if method == "ubm":
        k = clf.n_components
        if k > MAX_COMPONENTS:
            raise _bad(path, f"metadata field 'classifier.n_components' must be at most {MAX_COMPONENTS}, got {k}")
        if "ubm" in meta and _check_mixture_info(meta["ubm"], "ubm", path) != k:
            raise _bad(path, f"metadata field 'ubm.n_components' is {meta['ubm']['n_components']}, but "
                             f"'classifier.n_components' is {k}")
        wrong = next((i for i, ki in enumerate(ks) if ki != k), None)
        if wrong is not None:
            raise _bad(path, f"metadata field 'gmms[{wrong}].n_components' is {ks[wrong]}, but a UBM model's "
                             f"class mixtures all have the UBM's {k} components")
        ks.append(k)
    total = sum(k * (2 * d + 1) for k in ks) * 8
    if total > MAX_FILE_BYTES:
        raise _bad(path, f"metadata fields 'gmms' and 'n_features' describe {total} bytes of arrays, more than "
                         f"a model file may hold ({MAX_FILE_BYTES})")
    if meta.get("training") is not None and not isinstance(meta["training"], dict):
        raise _bad(path, f"metadata field 'training' must be an object, got {_show(meta['training'])}")


# -- (c) the arrays ---------------------------------------------------------------------------------

def _check_mixture(w, mu, var, where, path):
    if mu.shape != (w.shape[0],) + mu.shape[1:] or var.shape != mu.shape or w.ndim != 1 or mu.ndim != 2:
        raise _bad(path, f"{where}: arrays of shapes {w.shape}, {mu.shape}, {var.shape} do not fit together")
    if not np.all(np.isfinite(mu)) or np.any(np.abs(mu) > MAX_ABS_MEAN):
        raise _bad(path, f"{where}: means must be finite and at most {MAX_ABS_MEAN:g} in size")
    lo, hi = VARIANCE_RANGE
    if not np.all((var >= lo) & (var <= hi)):  # also False for NaN
        bad = float(var[~((var >= lo) & (var <= hi))][0])
        raise _bad(path, f"{where}: variances must be > 0, finite and within [{lo:g}, {hi:g}], got {bad!r}")
    if not np.all(w >= 0) or not np.all(np.isfinite(w)):
        raise _bad(path, f"{where}: weights must be finite and >= 0")
    if abs(math.fsum(w.tolist()) - 1.0) > 1e-6:
        raise _bad(path, f"{where}: weights must sum to 1, got {math.fsum(w.tolist()):.6g}")


def _check_arrays(meta, arrays, path):
    """Check the arrays against each other and the metadata: shapes, finiteness, ranges, sums.

    Raises
    ------
    ModelFileError
        Naming the file and the class (or the UBM) whose arrays are wrong.
    """
    classes = meta["classes"]
    d = meta["n_features"]
    for i, label in enumerate(classes):
        w, mu, var = (arrays[f"{name}_{i}"] for name in ("weights", "means", "variances"))
        _check_mixture(w, mu, var, f"the mixture of class {i} ({_show(label)})", path)
        if mu.shape[1] != d:
            raise _bad(path, f"class {i}: means have {mu.shape[1]} features, metadata field 'n_features' says {d}")
    if meta.get("method", "per-class") == "ubm":
        w, mu, var = (arrays[f"ubm_{name}"] for name in ("weights", "means", "variances"))
        _check_mixture(w, mu, var, "the UBM", path)
        if mu.shape[1] != d or any(arrays[f"weights_{i}"].shape != w.shape for i in range(len(classes))):
            raise _bad(path, f"the class mixtures must have the UBM's shape {mu.shape}")


def load_model(path):
    """Read a model written by :func:`save_model`. Never unpickles anything.

    Every check of the module docstring ("Loading a file from an untrusted source") runs
    before the classifier is built, so a hostile file costs at most the memory its
    (bounded) metadata describes.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    model : TrainedModel

    Raises
    ------
    ModelFileError
        The file is missing, not a regular file, damaged, of another format, from a newer
        format version, or holds a value out of range; the message names the file and the
        field or member.
    """
    path = Path(path)
    meta, arrays = _read_container(path)
    _check_arrays(meta, arrays, path)
    try:
        return _rebuild(meta, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"its content is inconsistent ({exc})") from None


def _rebuild(meta, arrays):
    """The TrainedModel of checked metadata and arrays, through the method's ``from_arrays``."""
    classes = meta["classes"]
    if not isinstance(classes, list) or not classes:
        raise ValueError("no classes")
    feature_config = FeatureConfig.from_dict(meta["feature_config"])
    if feature_config.n_features != int(meta["n_features"]):
        raise ValueError(f"feature config gives {feature_config.n_features} features, mixtures have "
                         f"{meta['n_features']}")
    clf = METHODS[meta.get("method", "per-class")].from_arrays(dict(meta["classifier"]), meta, arrays)
    meta_only = {k: meta[k] for k in ("format", "format_version", "audiogmm_version", "created") if k in meta}
    return TrainedModel(clf, feature_config, dict(meta.get("training") or {}), meta_only)
