"""Hostile model files: every one is refused with a ModelFileError naming the file and the field.

Valid small models are fitted on random features; hostile variants are written with zipfile
and numpy.lib.format into tmp_path (central-directory fields patched in place where zipfile
cannot write them). Categories: file kinds, ZIP members, .npy headers, JSON, metadata fields,
arrays, memory, the CLI, and property tests over random mutations.
"""

import io
import json
import math
import os
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiogmm.classifier import GMMClassifier
from audiogmm.cli import main
from audiogmm.exceptions import ModelFileError
from audiogmm.features import FeatureConfig
from audiogmm.persistence import MAX_FILE_BYTES, TrainedModel, load_model, save_model
from audiogmm.ubm import UBMClassifier

D = FeatureConfig().n_features


# -- building valid and hostile files --------------------------------------------------------------

def _fit(method):
    rng = np.random.default_rng(0)
    X = [rng.normal(c, 1, (120, D)) for c in (0, 0, 2, 2, 4)]
    y = ["a", "a", "b", "b", "c"]
    if method == "ubm":
        clf = UBMClassifier(4, random_state=0).fit(X, y)
    else:
        clf = GMMClassifier(2, random_state=0, priors="empirical").fit(X, y)
    return TrainedModel(clf, FeatureConfig(), {"dataset": "here"})


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    """The bytes of a valid per-class and a valid UBM model file."""
    folder = tmp_path_factory.mktemp("valid")
    return {m: save_model(_fit(m), folder / f"{m}.agmm").read_bytes() for m in ("per-class", "ubm")}


def _contents(data):
    """``(meta, arrays)`` of a model file's bytes."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return json.loads(arrays.pop("metadata").tobytes()), arrays


def _npy(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=True)
    return buf.getvalue()


def _write(path, meta, arrays, *, compression=zipfile.ZIP_STORED):
    """A model file of ``meta`` (dict, str or bytes) and ``arrays`` (name -> array or raw .npy bytes)."""
    if isinstance(meta, dict):
        meta = json.dumps(meta)
    if isinstance(meta, str):
        meta = meta.encode("utf-8")
    members = {"metadata": _npy(np.frombuffer(meta, dtype=np.uint8)) if isinstance(meta, bytes) else _npy(meta)}
    members.update({k: v if isinstance(v, bytes) else _npy(v) for k, v in arrays.items()})
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name if name.endswith(".npy") or name.startswith("!") else f"{name}.npy", data)
    return path


def _patch_central(path, member, *, flags=None, method=None, size=None):
    """Set fields of ``member``'s central-directory entry in place (what zipfile will not write)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02" + b"\0" * 0, 0)
    while at != -1:
        n_name = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + n_name] == member.encode():
            if flags is not None:
                struct.pack_into("<H", data, at + 8, flags)
            if method is not None:
                struct.pack_into("<H", data, at + 10, method)
            if size is not None:
                struct.pack_into("<I", data, at + 24, size)
            path.write_bytes(bytes(data))
            return path
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{member} not in {path}")


def _refused(path, match):
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path)
    assert repr(str(path)) in str(info.value) or str(path) in str(info.value)
    return str(info.value)


def _peak_while_refused(path, match):
    """Peak bytes Python allocates while ``load_model(path)`` is refused with ``match``."""
    tracemalloc.start()
    try:
        _refused(path, match)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def per_class(valid_files):
    return _contents(valid_files["per-class"])


@pytest.fixture
def ubm(valid_files):
    return _contents(valid_files["ubm"])


# -- 1. only regular files, of bounded size --------------------------------------------------------

def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "m.agmm"
    os.mkfifo(fifo)
    _refused(fifo, r"named pipe \(FIFO\), not a regular file")
    link = tmp_path / "link.agmm"
    link.symlink_to(fifo)
    _refused(link, "named pipe")


def test_folders_devices_and_dangling_links(tmp_path):
    _refused(tmp_path, "is a folder")
    if os.path.exists("/dev/zero"):
        _refused("/dev/zero", "character device")
        (tmp_path / "dev.agmm").symlink_to("/dev/zero")
        _refused(tmp_path / "dev.agmm", "character device")
    (tmp_path / "dangling.agmm").symlink_to(tmp_path / "nowhere")
    _refused(tmp_path / "dangling.agmm", "does not exist")


def test_a_file_over_the_size_cap_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.agmm"
    with open(path, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    assert _peak_while_refused(path, f"more than a model file may \\({MAX_FILE_BYTES}\\)") < 1 << 20


@pytest.mark.parametrize("content", [b"", b"PK\x05\x06" + b"\0" * 18, b"garbage" * 100, b"PK\x03\x04" * 50])
def test_junk_files(tmp_path, content):
    path = tmp_path / "junk.agmm"
    path.write_bytes(content)
    _refused(path, "not an audiogmm model file|no audiogmm metadata")


# -- 2. ZIP members, checked from the central directory before reading ------------------------------

def test_unknown_and_duplicate_members(tmp_path, per_class):
    meta, arrays = per_class
    _refused(_write(tmp_path / "a.agmm", meta, {**arrays, "evil": np.zeros(3)}), "unknown member 'evil.npy'")
    _refused(_write(tmp_path / "b.agmm", meta, {**arrays, "!../../x": b"x"}), "unknown member")
    _refused(_write(tmp_path / "c.agmm", meta, {**arrays, "weights_3": arrays["weights_0"]}),
             "member 'weights_3.npy', which the metadata does not describe")
    _refused(_write(tmp_path / "d.agmm", meta, {**arrays, "ubm_means": arrays["means_0"]}),
             "metadata does not describe")
    path = _write(tmp_path / "e.agmm", meta, arrays)
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("means_0.npy", _npy(arrays["means_0"]))
    _refused(path, "member 'means_0.npy' twice")
    arrays.pop("variances_2")
    _refused(_write(tmp_path / "f.agmm", meta, arrays), "member 'variances_2.npy' is missing")


def test_calibration_members_are_allowed_within_a_bound(tmp_path, per_class):
    meta, arrays = per_class
    model = load_model(_write(tmp_path / "a.agmm", meta, {**arrays, "calibration_a": np.ones((3, 2))}))
    assert model.classes == ["a", "b", "c"]
    _refused(_write(tmp_path / "b.agmm", meta, {**arrays, "calibration_a": np.zeros(3, dtype=np.int64)}),
             "dtype 'int64'")
    path = _write(tmp_path / "c.agmm", meta, {**arrays, "calibration_a": np.ones(3)})
    _refused(_patch_central(path, "calibration_a.npy", size=2**31), "declares 2147483648 bytes uncompressed")


@pytest.mark.parametrize("flags, method, match", [
    (0x1, None, "'means_0.npy' is encrypted"),
    (0x41, None, "encrypted"),
    (None, 99, "compression method 99"),  # AES
    (None, 12, "compression method 12"),  # bzip2: readable by zipfile, not ours
    (None, 1, "compression method 1"),
])
def test_encrypted_or_unknown_compression(tmp_path, per_class, flags, method, match):
    path = _write(tmp_path / "m.agmm", *per_class)
    _refused(_patch_central(path, "means_0.npy", flags=flags, method=method), match)


def test_a_real_zip_bomb_is_refused_without_inflating(tmp_path, per_class):
    meta, arrays = per_class
    path = _write(tmp_path / "bomb.agmm", meta, {k: v for k, v in arrays.items() if k != "means_0"},
                  compression=zipfile.ZIP_DEFLATED)
    header = _npy(arrays["means_0"])[:128]
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("means_0.npy", "w", force_zip64=True) as fh:
        fh.write(header)
        block = bytes(1 << 20)
        for _ in range(256):  # 256 MiB of zeros, about 250 KB deflated
            fh.write(block)
    assert path.stat().st_size < 2 << 20
    assert _peak_while_refused(path, "member 'means_0.npy' declares 268435584 bytes uncompressed, more than its "
                                     "metadata") < 4 << 20


@pytest.mark.parametrize("size", [2**31, 2**32 - 1])
def test_a_declared_huge_member_is_refused(tmp_path, per_class, size):
    path = _write(tmp_path / "m.agmm", *per_class, compression=zipfile.ZIP_DEFLATED)
    _refused(_patch_central(path, "variances_1.npy", size=size), f"declares {size} bytes uncompressed")


def test_a_lying_size_fails_the_crc(tmp_path, per_class):
    meta, arrays = per_class
    path = _write(tmp_path / "m.agmm", meta, arrays, compression=zipfile.ZIP_DEFLATED)
    real = len(_npy(arrays["means_0"]))
    _refused(_patch_central(path, "means_0.npy", size=real - 8), "holds .* bytes of data|damaged")


# -- .npy headers: parsed before the data ------------------------------------------------------------

def _header(descr, shape, fortran=False, version=(1, 0)):
    h = {"descr": descr, "fortran_order": fortran, "shape": shape}
    buf = io.BytesIO()
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, h)
    else:
        np.lib.format.write_array_header_2_0(buf, h)
    return buf.getvalue()


@pytest.mark.parametrize("member, raw, match", [
    ("means_0", _header("<f8", (2**40,)) + bytes(64), r"shape \(1099511627776,\), but the metadata implies"),
    ("means_0", _header("<f8", (2**20, 2**20)) + bytes(64), "but the metadata implies"),
    ("metadata", _header("|u1", (2**40,)) + bytes(64), "declares shape"),
    ("metadata", _header("|u1", (-5,)), "invalid shape|damaged"),
    ("means_0", _header("|O", (2, D)) + bytes(64), "dtype 'object'"),
    ("means_0", _header("<f4", (2, D)) + bytes(8 * D), "dtype 'float32'"),
    ("means_0", _header(">f8", (2, D)) + bytes(16 * D), "dtype '>f8'"),
    ("means_0", _header("<c16", (2, D)) + bytes(32 * D), "dtype 'complex128'"),
    ("means_0", _header([("a", "<f8")], (2, D)) + bytes(16 * D), "dtype"),
    ("means_0", _header("<f8", (2, D)) + bytes(16 * D - 8), "holds .* bytes of data"),
    ("means_0", _header("<f8", (2, D)) + bytes(16 * D + 8), "holds .* bytes of data"),
    ("means_0", b"\x93NUMPY\x03\x00" + bytes(100), "unknown version"),
    ("means_0", b"\x93NUMPY\x01\x00\xff\xff" + b"(" * 65535, "declares 65545 bytes uncompressed"),
    ("means_0", b"\x93NUMPY\x01\x00\x88\x13" + b"(" * 5000, "damaged"),
    ("means_0", b"\x93NUMPY\x01\x00\x20\x00{'descr': __import__('os')}   \n", "damaged"),
    ("means_0", b"not a npy", "damaged"),
    ("means_0", b"", "damaged"),
])
def test_npy_headers(tmp_path, per_class, member, raw, match):
    meta, arrays = per_class
    if member == "metadata":
        path = tmp_path / "m.agmm"
        _write(path, meta, arrays)
        with zipfile.ZipFile(path, "w") as zf:  # rewrite with the raw metadata member
            zf.writestr("metadata.npy", raw)
            for k, v in arrays.items():
                zf.writestr(f"{k}.npy", _npy(v))
    else:
        path = _write(tmp_path / "m.agmm", meta, {**arrays, member: raw})
    _refused(path, match)


def test_pickled_metadata_is_refused_unread(tmp_path, per_class):
    meta, arrays = per_class
    path = tmp_path / "m.agmm"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.npy", _npy(np.array([{"a": 1}], dtype=object)))
    _refused(path, "dtype 'object'")


def test_fortran_order_arrays_load_as_written(tmp_path, per_class):
    meta, arrays = per_class
    arrays["means_1"] = np.asfortranarray(arrays["means_1"])
    loaded = load_model(_write(tmp_path / "m.agmm", meta, arrays))
    np.testing.assert_array_equal(loaded.classifier.gmms_[1].means_, arrays["means_1"])


# -- 3. JSON metadata ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, match", [
    (b"\x00\x01junk\xff", "not UTF-8"),
    (b"\xef\xbb\xbf{}", "damaged"),
    ("{\"format\": \"audiogmm-model\"".encode(), "damaged"),
    ("[" * 100_000 + "]" * 100_000, "nested 100000 deep, more than 64"),
    ("{\"a\":" * 100_000 + "1" + "}" * 100_000, "nested 100000 deep"),
    ("[" * 100_000, "nested 100000 deep"),
    ("\"" + "[" * 100_000 + "\"", "does not describe an audiogmm model"),  # brackets in a string: fine
    ("[1, 2]", "does not describe"),
    ("null", "does not describe"),
    ("\"audiogmm-model\"", "does not describe"),
])
def test_json_that_cannot_be_parsed(tmp_path, per_class, text, match):
    _refused(_write(tmp_path / "m.agmm", text, per_class[1]), match)


def _with(meta, text_edit):
    """The metadata's JSON text with ``"n_features": 60`` replaced by ``text_edit``."""
    text = json.dumps(meta)
    assert f'"n_features": {D}' in text
    return text.replace(f'"n_features": {D}', text_edit)


@pytest.mark.parametrize("value, match", [
    ("1" * 5000, "'n_features' must be a usable number, got a 5000-digit number"),
    ("-" + "9" * 5000, "5000-digit"),
    ("1e999", "'n_features' must be a usable number, got '1e999'"),
    ("-1e999", "not a finite float64"),
    ("NaN", "NaN"),
    ("Infinity", "Infinity"),
    ("-Infinity", "-Infinity"),
    ("0." + "1" * 5000, "'n_features' must be an int"),
    ("[" * 60 + "]" * 60, "nested 61 deep|must be an int"),
])
def test_numbers_json_would_choke_on(tmp_path, per_class, value, match):
    meta, arrays = per_class
    _refused(_write(tmp_path / "m.agmm", _with(meta, f'"n_features": {value}'), arrays), match)


def test_nan_in_a_nested_field_is_named(tmp_path, per_class):
    meta, arrays = per_class
    text = json.dumps(meta).replace('"class_prior": [', '"class_prior": [NaN, ', 1)
    _refused(_write(tmp_path / "m.agmm", text, arrays), r"'class_prior\[0\]' must be a usable number, got NaN")


def test_duplicate_keys_are_refused(tmp_path, per_class):
    meta, arrays = per_class
    _refused(_write(tmp_path / "m.agmm", _with(meta, f'"n_features": {D}, "n_features": 3'), arrays),
             "key 'n_features' twice")


def test_oversized_metadata(tmp_path, per_class):
    meta, arrays = per_class
    meta["training"] = {"pad": "x" * (16 * 1024**2)}
    _refused(_write(tmp_path / "m.agmm", meta, arrays), "'metadata.npy' declares shape .* more than its metadata allows \\(16777216\\)")


def test_nonfinite_numbers_in_training_and_lower_bound_are_read_as_null(tmp_path, per_class):
    meta, arrays = per_class
    text = json.dumps(meta).replace('"dataset": "here"', '"dataset": "here", "secs": NaN, "n": 1e999')
    text = text.replace('"lower_bound": ', '"lower_bound": NaN, "x": ', 1)
    path = _write(tmp_path / "m.agmm", text, arrays)
    model = load_model(path)
    assert model.summary == {"dataset": "here", "secs": None, "n": None}
    assert math.isnan(model.classifier.gmms_[0].lower_bound_)


# -- 4. metadata fields ---------------------------------------------------------------------------------

def _set(key, value):
    def edit(meta):
        meta[key] = value
    return edit


def _sub(key, sub, value):
    def edit(meta):
        meta[key][sub] = value
    return edit


def _gmm(i, sub, value):
    def edit(meta):
        meta["gmms"][i][sub] = value
    return edit


def _delete(key):
    return lambda meta: meta.pop(key)


FIELD_CASES = [
    (_set("format", "other"), "does not describe an audiogmm model"),
    (_delete("format"), "does not describe"),
    (_set("format_version", "1"), "'format_version' must be an int"),
    (_set("format_version", 1.0), "'format_version' must be an int"),
    (_set("format_version", True), "'format_version' must be an int"),
    (_set("format_version", 0), "'format_version' must be an int from 1"),
    (_set("format_version", -1), "unknown format version"),
    (_set("format_version", 10**30), "'format_version' must be an int from 1 to 10000"),
    (_set("format_version", 2), "newer than this audiogmm"),
    (_set("audiogmm_version", ["x"]), "'audiogmm_version' must be a short str"),
    (_set("created", "x" * 1000), "'created' must be a short str"),
    (_set("method", "i-vector"), "unknown method 'i-vector'"),
    (_set("method", 5), "unknown method 5"),
    (_set("method", "ubm"), "inconsistent: member 'ubm_weights.npy' is missing"),
    (_set("classes", []), "'classes' must be a list of 1 to"),
    (_set("classes", "abc"), "'classes' must be a list"),
    (_set("classes", {"a": 1}), "'classes' must be a list"),
    (_set("classes", ["a", "b", 3]), r"classes\[2\] must be a non-empty str, got 3"),
    (_set("classes", ["a", "b", ""]), r"class name '' is empty"),
    (_set("classes", ["a", "b", "a"]), r"'a' and 'a' differ only in case"),
    (_set("classes", ["a", "B", "b"]), "differ only in case"),
    (_set("classes", ["a", "Straße", "STRASSE"]), "differ only in case"),
    (_set("classes", ["a", "b", "../../../x"]), "'../../../x' holds a path separator"),
    (_set("classes", ["a", "b", "c/d"]), "holds a path separator"),
    (_set("classes", ["a", "b", "c\\d"]), "holds a path separator"),
    (_set("classes", ["a", "b", "c\x00"]), "holds a control character"),
    (_set("classes", ["a", "b", "c\nd"]), "holds a control character"),
    (_set("classes", ["a", "b", "c\x7f"]), "holds a control character"),
    (_set("classes", ["a", "b", "c\x85"]), "holds a control character"),
    (_set("classes", ["a", "b", "\ud800"]), "not valid text"),
    (_set("classes", ["a", "b", "."]), "relative folder reference"),
    (_set("classes", ["a", "b", ".."]), "relative folder reference"),
    (_set("classes", ["a", "b", ".audiogmm-journal"]), "starts with a dot"),
    (_set("classes", ["a", "b", "é" * 200]), "longer than 200 bytes"),
    (_set("classes", ["a", "b"]), "'class_prior' must be 2|'n_recordings'|'gmms' must be a list of 2"),
    (_set("classes", ["a", "b", "c", "d"]), "must be 4"),
    (_set("feature_config", "speech"), "'feature_config' must be an object"),
    (_sub("feature_config", "evil", 1), "'feature_config' is invalid: unknown FeatureConfig field"),
    (_sub("feature_config", "n_mels", 10**6), "'feature_config' asks for a 1000000 x 257 mel filterbank"),
    (_sub("feature_config", "win_ms", 1e5), "mel filterbank"),
    (_sub("feature_config", "sample_rate", 10**12), "mel filterbank"),
    (_sub("feature_config", "sample_rate", "16000"), "'feature_config' is invalid: sample_rate must be an int"),
    (_sub("feature_config", "n_mfcc", -1), "n_mfcc must be an int >= 1"),
    (_sub("feature_config", "cmvn", ["x"]), "cmvn must be one of"),
    (_sub("feature_config", "n_mfcc", 13), "'n_features' is 60, but the feature config gives 39"),
    (_set("classifier", None), "'classifier' must be an object"),
    (_sub("classifier", "evil", 1), "unknown parameter.*'evil'"),
    (_sub("classifier", "tol", "x"), "'classifier' is invalid"),
    (_sub("classifier", "n_components", 0), "'classifier' is invalid: n_components"),
    (_sub("classifier", "dtype", "int8"), "'classifier.dtype' must be 'float32' or 'float64', got 'int8'"),
    (_sub("classifier", "dtype", False), "'classifier.dtype' must be"),  # found by the property test
    (_sub("classifier", "dtype", "garbage"), "'classifier.dtype' must be"),
    (_sub("classifier", "dtype", None), "'classifier.dtype' must be"),
    (_sub("classifier", "priors", "mystery"), "priors must be"),
    (_sub("classifier", "priors", [0.5, 0.5]), r"'classifier.priors' must be 3 finite numbers > 0"),
    (_sub("classifier", "priors", [1, -1, 1]), "'classifier.priors'"),
    (_sub("classifier", "priors", [{"a": 1}, 1, 1]), "'classifier.priors'"),
    (_sub("classifier", "random_state", -1), "random_state"),
    (_sub("classifier", "n_jobs", 0), "n_jobs"),
    (_set("n_features", 0), "'n_features' must be an int from 1"),
    (_set("n_features", "60"), "'n_features' must be an int"),
    (_set("n_features", 59), "'n_features' is 59, but the feature config gives 60"),
    (_set("class_prior", [0.4, 0.4, -0.2, 0.4]), "'class_prior' must be 3"),
    (_set("class_prior", [1.2, -0.1, -0.1]), "'class_prior' must be 3 finite numbers > 0"),
    (_set("class_prior", [0.5, 0.5, 0.0]), "> 0"),
    (_set("class_prior", [0.3, 0.2, 0.2]), "'class_prior' must sum to 1, got 0.7"),
    (_set("class_prior", [0.5, 0.5, 0.5]), "must sum to 1, got 1.5"),
    (_set("class_prior", ["a", "b", "c"]), "'class_prior' must be"),
    (_set("class_prior", 1.0), "'class_prior' must be"),
    (_set("class_prior", [True, 0, 0]), "'class_prior' must be"),
    (_set("n_recordings", [1, 2]), "'n_recordings' must be 3 ints >= 0"),
    (_set("n_recordings", [1, -2, 1]), "'n_recordings'"),
    (_set("n_recordings", [1, 2.5, 1]), "'n_recordings'"),
    (_set("n_frames", [1, 2, 2**64]), "'n_frames'"),
    (_set("n_frames", None), "'n_frames'"),
    (_set("gmms", []), "'gmms' must be a list of 3"),
    (_set("gmms", "x"), "'gmms' must be a list"),
    (_gmm(1, "n_components", 3), r"member 'weights_1.npy' has shape \(2,\), but the metadata implies \(3,\)"),
    (_gmm(1, "n_components", 0), r"'gmms\[1\].n_components' must be an int from 1 to 65536"),
    (_gmm(1, "n_components", 2**40), r"'gmms\[1\].n_components' must be an int from 1 to 65536"),
    (_gmm(1, "n_components", "2"), r"'gmms\[1\].n_components'"),
    (_gmm(0, "converged", "yes"), r"'gmms\[0\].converged' must be true or false"),
    (_gmm(0, "converged", 1), r"'gmms\[0\].converged'"),
    (_gmm(0, "n_iter", -1), r"'gmms\[0\].n_iter' must be an int >= 0"),
    (_gmm(0, "n_iter", 1.5), r"'gmms\[0\].n_iter'"),
    (_gmm(0, "lower_bound", "x"), r"'gmms\[0\].lower_bound' must be a finite number or null"),
    (_gmm(0, "lower_bound", True), r"'gmms\[0\].lower_bound'"),
    (lambda m: m["gmms"].__setitem__(2, 7), r"'gmms\[2\]' must be an object"),
    (_set("training", [1, 2]), "'training' must be an object"),
    (_set("training", "x"), "'training' must be an object"),
]


UBM_FIELD_CASES = [
    (_sub("classifier", "n_components", 5), "'ubm.n_components' is 4, but 'classifier.n_components' is 5"),
    (lambda m: (m.pop("ubm"), m["classifier"].update(n_components=5)),
     r"'gmms\[0\].n_components' is 4, but a UBM model's class mixtures all have the UBM's 5"),
    (_sub("classifier", "n_components", 2**40), "'classifier.n_components' must be at most 65536"),
    (_sub("classifier", "top_c", 0), "top_c must be None or an int >= 1"),
    (_sub("classifier", "relevance_factor", -1), "relevance_factor"),
    (_sub("classifier", "adapt", "everything"), "adapt must be"),
    (_sub("ubm", "n_components", 5), "'ubm.n_components' is 5, but 'classifier.n_components' is 4"),
    (_sub("ubm", "converged", None), "'ubm.converged'"),
    (_set("ubm", []), "'ubm' must be an object"),
    (_set("method", "per-class"), "unknown parameter"),
    (_gmm(2, "n_components", 3), r"'gmms\[2\].n_components' is 3"),
]


# -- 5. arrays ----------------------------------------------------------------------------------------

def _arr(name, fn):
    def edit(arrays):
        arrays[name] = fn(arrays[name].copy())
    return edit


def _put(index, value):
    def fn(a):
        a[index] = value
        return a
    return fn


ARRAY_CASES = [
    (_arr("means_0", _put((0, 0), np.nan)), r"class 0 \('a'\): means must be finite"),
    (_arr("means_1", _put((1, 3), np.inf)), r"class 1 \('b'\): means must be finite"),
    (_arr("means_1", _put((1, 3), 1e300)), "means must be finite and at most 1e\\+08"),
    (_arr("variances_2", _put((0, 0), np.inf)), r"class 2 \('c'\): variances must be > 0, finite .* got inf"),
    (_arr("variances_2", _put((0, 0), np.nan)), "variances must be > 0.*got nan"),
    (_arr("variances_2", _put((0, 0), 0.0)), "variances must be > 0"),
    (_arr("variances_2", _put((0, 0), -1.0)), "variances must be > 0"),
    (_arr("variances_2", _put((0, 0), 1e-300)), "variances must be > 0.*1e-300"),
    (_arr("variances_2", lambda a: -a), "variances must be > 0"),
    (_arr("weights_0", lambda a: np.array([1.5, -0.5])), r"class 0 \('a'\): weights must be finite and >= 0"),
    (_arr("weights_0", lambda a: np.array([np.nan, 1.0])), "weights must be finite and >= 0"),
    (_arr("weights_0", lambda a: np.array([np.inf, 1.0])), "weights must be finite"),
    (_arr("weights_0", lambda a: a / 2), "weights must sum to 1, got 0.5"),
    (_arr("weights_0", lambda a: np.zeros(2)), "weights must sum to 1, got 0"),
    (_arr("means_0", lambda a: a[:, :-1]), r"member 'means_0.npy' has shape \(2, 59\)"),
    (_arr("means_0", lambda a: a.T), "member 'means_0.npy' has shape"),
    (_arr("weights_0", lambda a: a[None]), "member 'weights_0.npy' has shape"),
    (_arr("means_0", lambda a: a.astype(np.float32)), "dtype 'float32'"),
    (_arr("means_0", lambda a: a.astype(">f8")), "dtype '>f8'"),
    (_arr("weights_0", lambda a: np.array(["0.5", "0.5"])), "dtype '<U3'"),
]


UBM_ARRAY_CASES = [
    (_arr("ubm_variances", _put((0, 0), np.inf)), "the UBM: variances must be > 0"),
    (_arr("ubm_means", _put((0, 0), np.nan)), "the UBM: means must be finite"),
    (_arr("ubm_weights", lambda a: -a), "the UBM: weights must be finite and >= 0"),
    (_arr("ubm_means", lambda a: a[:2]), r"member 'ubm_means.npy' has shape \(2, 60\)"),
    (_arr("weights_1", lambda a: a[::-1] * 2), r"class 1 \('b'\): weights must sum to 1, got 2"),
]


CONTENT_CASES = ([("per-class", "metadata", *c) for c in FIELD_CASES] + [("ubm", "metadata", *c) for c in UBM_FIELD_CASES]
                 + [("per-class", "arrays", *c) for c in ARRAY_CASES] + [("ubm", "arrays", *c) for c in UBM_ARRAY_CASES])


@pytest.mark.parametrize("method, part, edit, match", CONTENT_CASES)
def test_metadata_fields_and_arrays(tmp_path, valid_files, method, part, edit, match):
    """Sections 4 and 5: each field or array out of type, range or agreement, refused by name."""
    meta, arrays = _contents(valid_files[method])
    edit(meta if part == "metadata" else arrays)
    _refused(_write(tmp_path / "m.agmm", meta, arrays), match)


def test_swapped_members_are_refused_or_harmless(tmp_path, per_class, rng):
    meta, arrays = per_class
    swapped = {**arrays, "weights_0": arrays["means_0"], "means_0": arrays["weights_0"]}
    _refused(_write(tmp_path / "a.agmm", meta, swapped), "member '(weights|means)_0.npy' has shape")
    swapped = {**arrays, "means_0": arrays["variances_0"], "variances_0": arrays["means_0"]}
    _refused(_write(tmp_path / "b.agmm", meta, swapped), "variances must be > 0")
    # Two classes' mixtures swapped whole: a valid (other) model, whose scores are finite.
    swapped = {**arrays, **{f"{n}_0": arrays[f"{n}_1"] for n in ("weights", "means", "variances")},
               **{f"{n}_1": arrays[f"{n}_0"] for n in ("weights", "means", "variances")}}
    model = load_model(_write(tmp_path / "c.agmm", meta, swapped))
    assert np.all(np.isfinite(model.classifier.predict_proba([rng.normal(0, 1, (20, D))])))


# -- compatibility: files written before this validation still load -----------------------------------

def test_files_written_the_old_way_still_load(tmp_path, ubm, rng):
    """Older save_model wrote NaN for a missing EM bound and no strictness on the JSON."""
    meta, arrays = ubm
    meta["ubm"]["lower_bound"] = float("nan")
    path = tmp_path / "old.agmm"
    with open(path, "wb") as fh:
        np.savez(fh, metadata=np.frombuffer(json.dumps(meta, indent=1).encode(), dtype=np.uint8), **arrays)
    model = load_model(path)
    assert math.isnan(model.classifier.ubm_.lower_bound_)
    X = [rng.normal(2, 1, (30, D))]
    expected = _fit("ubm").classifier.predict_proba(X)
    np.testing.assert_array_equal(model.classifier.predict_proba(X), expected)


def test_save_refuses_class_names_load_would_refuse(tmp_path, rng):
    X = [rng.normal(c, 1, (60, D)) for c in (0, 3)]
    clf = GMMClassifier(1, random_state=0).fit(X, ["../up", "ok"])
    with pytest.raises(ModelFileError, match=r"cannot save model .*'\.\./up' holds a path separator"):
        save_model(TrainedModel(clf, FeatureConfig()), tmp_path / "m.agmm")
    assert list(tmp_path.iterdir()) == []


# -- 6. the CLI: exit 1, the message, no traceback ------------------------------------------------------

@pytest.mark.parametrize("command", ["info", "predict"])
def test_cli_reports_a_hostile_model_and_exits_1(tmp_path, per_class, command, write_wav, rng):
    meta, arrays = per_class
    meta["class_prior"] = [0.3, 0.2, 0.2]
    path = _write(tmp_path / "m.agmm", meta, arrays)
    args = [command, str(path)] + ([str(write_wav("x.wav", rng.normal(0, 0.1, 8000).astype(np.float32)))]
                                   if command == "predict" else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "is not a usable audiogmm model: metadata field 'class_prior' must sum to 1, got 0.7" in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, ModelFileError) or result.exit_code == 1


def test_cli_info_on_a_fifo_exits_1(tmp_path):
    fifo = tmp_path / "m.agmm"
    os.mkfifo(fifo)
    result = CliRunner().invoke(main, ["info", str(fifo)])
    assert result.exit_code == 1 and "named pipe" in result.output and "Traceback" not in result.output


# -- 8. memory: bounded by what the metadata describes ------------------------------------------------

@pytest.mark.parametrize("member, raw", [
    ("means_0", _header("<f8", (2**40,))),
    ("metadata", _header("|u1", (2**40,))),
    ("variances_0", _header("<f8", (1 << 20, D)) + bytes(1 << 16)),
])
def test_declared_huge_arrays_allocate_nothing(tmp_path, per_class, member, raw):
    meta, arrays = per_class
    members = {"metadata": json.dumps(meta).encode(), **arrays}
    path = tmp_path / "m.agmm"
    with zipfile.ZipFile(path, "w") as zf:
        for name, value in members.items():
            data = raw if name == member else (_npy(np.frombuffer(value, np.uint8)) if name == "metadata"
                                                else _npy(value))
            zf.writestr(f"{name}.npy", data)
    assert _peak_while_refused(path, member) < 4 << 20


# -- 7. property tests: random mutations load as a usable model or fail with a ModelFileError ---------

PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


def _outcome(path):
    """Load ``path``: a ModelFileError, or a model whose probabilities are finite."""
    try:
        model = load_model(path)
    except ModelFileError as exc:
        assert str(path) in str(exc)
        return "refused"
    X = [np.random.default_rng(1).normal(0, 3, (25, model.classifier.n_features_in_)) for _ in range(2)]
    proba = model.classifier.predict_proba(X)
    assert proba.shape == (2, len(model.classes)) and np.all(np.isfinite(proba))
    return "loaded"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("mutations")


_METHODS = st.sampled_from(["per-class", "ubm"])


@PROPERTY
@given(method=_METHODS, flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                                       min_size=1, max_size=8))
def test_property_byte_flips(valid_files, scratch, method, flips):
    data = bytearray(valid_files[method])
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    path = scratch / "flip.agmm"
    path.write_bytes(bytes(data))
    _outcome(path)


@PROPERTY
@given(method=_METHODS, cut=st.floats(0, 1, exclude_max=True), tail=st.binary(max_size=64))
def test_property_truncations(valid_files, scratch, method, cut, tail):
    data = valid_files[method]
    path = scratch / "cut.agmm"
    path.write_bytes(data[:int(cut * len(data))] + tail)
    assert _outcome(path) == "refused" or tail  # a cut file never loads; a tail may be zip padding


@PROPERTY
@given(method=_METHODS, data=st.data())
def test_property_member_swaps(valid_files, scratch, method, data):
    meta, arrays = _contents(valid_files[method])
    names = sorted(arrays)
    a = data.draw(st.sampled_from(names))
    b = data.draw(st.sampled_from(names))
    arrays[a], arrays[b] = arrays[b], arrays[a]
    _outcome(_write(scratch / "swap.agmm", meta, arrays))


_JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.just(10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["../x", ".", "", "a\x00", "A", "NaN", "1e999", "[[[[", "auto", "ubm"]),
)
_JSON_VALUE = st.recursive(_JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@PROPERTY
@given(method=_METHODS, data=st.data())
def test_property_metadata_mutations(valid_files, scratch, method, data):
    meta, arrays = _contents(valid_files[method])
    paths = [p for p in _paths(meta) if p]
    where = data.draw(st.sampled_from(paths))
    kind = data.draw(st.sampled_from(["value", "delete", "deep", "number-text"]))
    parent = meta
    for key in where[:-1]:
        parent = parent[key]
    if kind == "delete":
        del parent[where[-1]]
        text = json.dumps(meta)
    else:
        parent[where[-1]] = "\x00MARK\x00"
        if kind == "value":
            value = json.dumps(data.draw(_JSON_VALUE))
        elif kind == "deep":
            n = data.draw(st.integers(1, 200_000))
            value = "[" * n + "]" * n
        else:
            value = data.draw(st.sampled_from(["1" * 5000, "1e999", "-1e999", "NaN", "Infinity", "1e-400",
                                               "0." + "0" * 400 + "1", "-0", "1.0", "2", "0", "-1"]))
        text = json.dumps(meta).replace(json.dumps("\x00MARK\x00"), value)
    _outcome(_write(scratch / "meta.agmm", text, arrays))


_FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 1e300, -1e300, 1.0, 0.5, 1e-12, 1e16, 1e8]))


@PROPERTY
@given(method=_METHODS, data=st.data())
def test_property_array_mutations(valid_files, scratch, method, data):
    meta, arrays = _contents(valid_files[method])
    name = data.draw(st.sampled_from(sorted(arrays)))
    a = arrays[name].copy()
    kind = data.draw(st.sampled_from(["element", "scale", "reshape", "cut"]))
    if kind == "element":
        a.flat[data.draw(st.integers(0, a.size - 1))] = data.draw(_FLOAT)
    elif kind == "scale":
        with np.errstate(all="ignore"):  # inf and nan are what this mutation is after
            a = a * data.draw(_FLOAT)
    elif kind == "reshape":
        a = a.reshape(-1) if a.ndim == 2 else a.reshape(1, -1)
    else:
        a = a[: data.draw(st.integers(0, max(0, a.shape[0] - 1)))]
    arrays[name] = a
    _outcome(_write(scratch / "arr.agmm", meta, arrays))
