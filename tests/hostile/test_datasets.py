"""Hostile datasets and manifests: any depth, link loops, unreadable folders, odd names,
huge or multi-line manifest fields. Each either works or fails with an error naming the
folder, the manifest and the line; never RecursionError, _csv.Error or a silent empty class.
"""

import json
import os

import pytest

from audiogmm import dataset
from audiogmm.dataset import discover, display_path, find_audio, read_manifest
from audiogmm.evaluation import group_keys
from audiogmm.exceptions import DatasetWarning, ParameterError, TrainingError


def touch(path, data=b""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def deep(tmp_path):
    """Build a folder ``depth`` levels below a root; removed again without recursion.

    (shutil.rmtree, and so pytest's own tmp_path clean-up, recurses one frame per level.)
    """
    made = []

    def build(root, depth):
        cwd = os.getcwd()
        os.makedirs(root, exist_ok=True)
        os.chdir(root)  # relative steps keep every call under PATH_MAX
        try:
            for _ in range(depth):
                os.mkdir("d")
                os.chdir("d")
            with open("deep.wav", "wb"):
                pass
        finally:
            os.chdir(cwd)
        made.append((root, depth))

    yield build
    cwd = os.getcwd()
    for root, depth in made:
        os.chdir(root)
        try:
            for _ in range(depth):
                os.chdir("d")
            os.remove("deep.wav")
            for _ in range(depth):
                os.chdir("..")
                os.rmdir("d")
        finally:
            os.chdir(cwd)


# -- folder walks ---------------------------------------------------------------------------


def test_folder_1200_levels_deep(tmp_path, deep):
    """os.walk and Path.rglob raise RecursionError about 1,000 levels down; the walk does not."""
    deep(tmp_path / "data" / "deepclass", 1200)
    touch(tmp_path / "data" / "flat" / "a.wav")
    rows = discover(tmp_path / "data")
    assert [r.label for r in rows] == ["deepclass", "flat"]
    assert rows[0].name.count("/") == 1201 and rows[0].name.endswith("/deep.wav")
    audio, n_other = find_audio([tmp_path / "data"])
    assert len(audio) == 2 and n_other == 0


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_symlink_loops_are_not_followed(tmp_path):
    root = tmp_path / "data"
    touch(root / "a" / "x.wav")
    touch(root / "b" / "y.wav")
    os.symlink(root, root / "a" / "loop")  # a -> data -> a -> ...
    os.symlink(root / "b", root / "b" / "self")
    os.symlink(root / "b" / "y.wav", root / "a" / "link.wav")  # a link to a file is a file
    rows = discover(root)
    assert [r.name for r in rows] == ["a/link.wav", "a/x.wav", "b/y.wav"]
    assert find_audio([root])[0] == [root / "a" / "link.wav", root / "a" / "x.wav", root / "b" / "y.wav"]


def _deny(monkeypatch, denied):
    real = os.scandir

    def scandir(path="."):
        if os.path.abspath(path) in {os.path.abspath(d) for d in denied}:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(dataset.os, "scandir", scandir)


def test_unreadable_class_folder_is_named_not_called_empty(tmp_path, monkeypatch):
    """As chmod 000 does for a user who is not root (simulated, so it runs as root too)."""
    touch(tmp_path / "a" / "x.wav")
    (tmp_path / "locked").mkdir()
    _deny(monkeypatch, [tmp_path / "locked"])
    with pytest.raises(TrainingError, match=r"'.*locked' \(permission denied\).* cannot be read") as info:
        discover(tmp_path)
    assert "empty" not in str(info.value)


def test_unreadable_folder_inside_a_class_is_an_error_too(tmp_path, monkeypatch):
    touch(tmp_path / "a" / "x.wav")
    touch(tmp_path / "a" / "more" / "y.wav")
    _deny(monkeypatch, [tmp_path / "a" / "more"])
    with pytest.raises(TrainingError, match=r"more' \(permission denied\)"):
        discover(tmp_path)


def test_unreadable_dataset_root(tmp_path, monkeypatch):
    touch(tmp_path / "a" / "x.wav")
    _deny(monkeypatch, [tmp_path])
    with pytest.raises(ParameterError, match="cannot read dataset folder .*: permission denied"):
        discover(tmp_path)


def test_find_audio_passes_over_an_unreadable_folder_by_name(tmp_path, monkeypatch):
    a = touch(tmp_path / "lib" / "a.wav")
    touch(tmp_path / "lib" / "private" / "b.wav")
    _deny(monkeypatch, [tmp_path / "lib" / "private"])
    with pytest.warns(DatasetWarning, match=r"passed over folder .*private.*: it cannot be read \(permission denied\)"):
        audio, _ = find_audio([tmp_path / "lib"])
    assert audio == [a]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores permissions, so chmod 000 proves nothing")
def test_chmod_000_class_folder(tmp_path):
    touch(tmp_path / "a" / "x.wav")
    locked = tmp_path / "locked"
    touch(locked / "y.wav")
    locked.chmod(0)
    try:
        with pytest.raises(TrainingError, match=r"locked' \(permission denied\)"):
            discover(tmp_path)
    finally:
        locked.chmod(0o755)


def test_loose_files_beside_class_folders_are_counted_in_a_warning(tmp_path):
    touch(tmp_path / "a" / "x.wav")
    touch(tmp_path / "b" / "y.wav")
    for n in ("1.wav", "2.mp3", "3.flac"):
        touch(tmp_path / n)
    touch(tmp_path / "notes.txt")
    with pytest.warns(DatasetWarning, match=r"3 audio file\(s\) directly in .* are not used"):
        rows = discover(tmp_path)
    assert [r.name for r in rows] == ["a/x.wav", "b/y.wav"]


def test_one_class_dataset_is_discovered(tmp_path):
    """discover itself is fine with one class (training decides what to say about it)."""
    touch(tmp_path / "only" / "x.wav")
    assert [r.label for r in discover(tmp_path)] == ["only"]


# -- file names that are not UTF-8 ------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix" or os.fsencode("\udcff") != b"\xff",
                    reason="needs a POSIX file system with surrogateescape names")
def test_non_utf8_names_are_listed_and_displayable(tmp_path):
    cls = tmp_path / os.fsdecode(b"cl\xe9")
    f = touch(cls / os.fsdecode(b"\xff\xfe.wav"))
    rows = discover(tmp_path)
    assert [r.path for r in rows] == [f] and os.path.exists(rows[0].path)
    shown = display_path(rows[0].name)
    assert shown == "cl\\xe9/\\xff\\xfe.wav"
    json.dumps({"file": shown}, ensure_ascii=False).encode("utf-8")  # writable anywhere
    assert find_audio([tmp_path])[0] == [f]


# -- manifests ----------------------------------------------------------------------------------


def test_200_kb_field_is_rejected_with_its_line(tmp_path):
    """Used to raise _csv.Error (field larger than field limit)."""
    m = tmp_path / "m.csv"
    m.write_text("path,label\nok.wav,a\n" + "x" * 200_000 + ".wav,b\n")
    with pytest.raises(ParameterError, match=r"m\.csv', line 3: 200006 characters, more than the 65536 allowed"):
        discover(m)


def test_long_but_bounded_field_is_read(tmp_path):
    """A 20,000-character label is odd but within the bound (and within csv's own limit)."""
    m = tmp_path / "m.csv"
    m.write_text("path,label\nok.wav," + "l" * 20_000 + "\n")
    assert discover(m)[0].label == "l" * 20_000


@pytest.mark.parametrize("text,line", [
    ('path,label\n"a\nb.wav",x\n', 2),
    ('path,label\nok.wav,a\n"evil.wav\n/etc/passwd",b\n', 3),
    ('# c\npath,label\nok.wav,"never closed\n', 3),
])
def test_quoted_path_holding_a_newline_is_rejected(tmp_path, text, line):
    """Used to be read as another path."""
    m = tmp_path / "m.csv"
    m.write_text(text)
    with pytest.raises(ParameterError, match=rf"line {line}: a quoted field is not closed on its line"):
        discover(m)


@pytest.mark.parametrize("name,data,match", [
    ("latin1.csv", "path,label\ncaf\xe9.wav,a\n".encode("latin-1"), "cannot read manifest"),
    ("binary.csv", bytes(range(256)) * 4, "cannot read manifest"),
    ("nul.csv", b"path,label\na\x00.wav,x\n", "line 2: the path holds a NUL character"),
    ("short.csv", b"path,label,speaker\nonly_a_path.wav\n", "line 2: expected a path and a label"),
    ("nolabel.tsv", b"path\tlabel\na.wav\t \n", "line 2: expected a path and a label"),
    ("header.csv", b"file,class,x\na.wav,b,c\n", "'path' and 'label' columns"),
    ("comments.txt", b"# only\n#comments\n\n", "holds no labelled audio file"),
])
def test_malformed_manifests_name_the_manifest(tmp_path, name, data, match):
    m = tmp_path / name
    m.write_bytes(data)
    with pytest.raises(ParameterError, match=match) as info:
        discover(m)
    assert name in str(info.value)


def test_manifest_row_order_and_cells_survive_odd_but_valid_content(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text('path,label,speaker\n"with, comma.wav",a,s1\n"quote""d.wav",b,s2\n  spaced.wav , c ,s3\n')
    rows, columns, cells = read_manifest(m)
    assert [r.name for r in rows] == ["with, comma.wav", 'quote"d.wav', "spaced.wav"]
    assert group_keys(rows, "speaker", dataset=m) == ["s1", "s2", "s3"]
