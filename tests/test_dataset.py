from pathlib import Path

import pytest

from audiogmm.dataset import MAX_MANIFEST_LINE, discover, find_audio, read_manifest
from audiogmm.exceptions import DatasetWarning, ParameterError, TrainingError


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_folder_per_label(tmp_path):
    touch(tmp_path / "rock" / "a.wav")
    touch(tmp_path / "rock" / "live" / "b.FLAC")
    touch(tmp_path / "jazz" / "c.ogg")
    touch(tmp_path / "jazz" / "cover.jpg")
    touch(tmp_path / "jazz" / ".hidden" / "d.wav")
    touch(tmp_path / "loose.wav")
    touch(tmp_path / "README.txt")
    with pytest.warns(DatasetWarning, match=r"1 audio file\(s\) directly in .* are not used"):
        rows = discover(tmp_path)
    assert [(r.label, r.name) for r in rows] == [
        ("jazz", "jazz/c.ogg"),
        ("rock", "rock/a.wav"),
        ("rock", "rock/live/b.FLAC"),
    ]
    assert rows[0].path == tmp_path / "jazz" / "c.ogg"


def test_include_exclude(tmp_path):
    for i in range(6):
        touch(tmp_path / "s1" / f"0_s1_{i}.wav")
    assert [r.name for r in discover(tmp_path, exclude=["*_[0-4].wav"])] == ["s1/0_s1_5.wav"]
    assert len(discover(tmp_path, include=["*_[0-4].wav"])) == 5
    with pytest.raises(ParameterError, match="include/--exclude"):
        discover(tmp_path, include=["*.mp3"])


def test_empty_class_folder_is_an_error(tmp_path):
    touch(tmp_path / "a" / "x.wav")
    (tmp_path / "b").mkdir()
    with pytest.raises(TrainingError, match=r"'.*b'.* are empty"):
        discover(tmp_path)


def test_folder_without_audio_is_not_a_class(tmp_path):
    touch(tmp_path / "a" / "x.wav")
    touch(tmp_path / "LICENSES" / "CC-BY.txt")
    with pytest.warns(UserWarning, match="passed over folder .*LICENSES.* not a class"):
        rows = discover(tmp_path)
    assert {r.label for r in rows} == {"a"}


def test_missing_or_empty_dataset(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(ParameterError, match="holds no labelled audio"):
        discover(tmp_path)
    touch(tmp_path / "x.json")
    with pytest.raises(ParameterError, match="neither a folder nor a manifest"):
        discover(tmp_path / "x.json")


@pytest.mark.parametrize(
    "name, text",
    [
        ("m.csv", "path,label\nclips/0_a.wav,zero\n/abs/1_a.wav,one\n"),
        ("m.tsv", "path\tlabel\tduration\nclips/0_a.wav\tzero\t1.0\n/abs/1_a.wav\tone\t2\n"),
        ("m.txt", "clips/0_a.wav;zero\n/abs/1_a.wav;one\n"),
        ("m.csv", "# a comment\nlabel,path\nzero,clips/0_a.wav\none,/abs/1_a.wav\n"),
    ],
)
def test_manifest(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    rows = discover(tmp_path / name)
    assert [(r.label, r.path) for r in rows] == [("one", Path("/abs/1_a.wav")), ("zero", tmp_path / "clips" / "0_a.wav")]


def test_bad_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ParameterError, match="'path' and 'label'"):
        discover(tmp_path / "m.csv")
    (tmp_path / "n.csv").write_text("path,label\nx.wav,\n")
    with pytest.raises(ParameterError, match="line 2: expected a path and a label"):
        discover(tmp_path / "n.csv")


def test_find_audio(tmp_path):
    a = touch(tmp_path / "lib" / "x" / "a.mp3")
    b = touch(tmp_path / "lib" / "b.wav")
    touch(tmp_path / "lib" / "cover.jpg")
    touch(tmp_path / "lib" / "list.m3u")
    odd = touch(tmp_path / "odd.bin")
    audio, n_other = find_audio([tmp_path / "lib", b, odd])
    assert audio == [b, a, odd]
    assert n_other == 2
    with pytest.raises(ParameterError, match="does not exist"):
        find_audio([tmp_path / "missing.wav"])


def test_read_manifest_returns_extra_columns_and_skips_comments(tmp_path):
    (tmp_path / "m.tsv").write_text(
        "# recorded 2024\n\nPath\tlabel\tspeaker\n# a comment between rows\na.wav\tzero\ttheo\nb.wav\tone\n")
    rows, columns, cells = read_manifest(tmp_path / "m.tsv")
    assert [(r.path, r.label) for r in rows] == [(tmp_path / "a.wav", "zero"), (tmp_path / "b.wav", "one")]
    assert columns == ["Path", "label", "speaker"]
    assert cells == [{"Path": "a.wav", "label": "zero", "speaker": "theo"}, {"Path": "b.wav", "label": "one"}]
    (tmp_path / "h.csv").write_text("a.wav,zero\n")
    assert read_manifest(tmp_path / "h.csv")[1:] == ([], [{}])


def test_manifest_errors_give_the_real_line_number(tmp_path):
    (tmp_path / "m.csv").write_text("# c1\n# c2\npath,label\n\nx.wav,a\ny.wav,\n")
    with pytest.raises(ParameterError, match=r"m\.csv', line 6: expected a path and a label"):
        discover(tmp_path / "m.csv")


def test_manifest_paths_may_hold_unicode_line_separators(tmp_path):
    """str.splitlines() would cut a path at U+2028 or \\x85; only \\n, \\r\\n and \\r end a line."""
    (tmp_path / "m.csv").write_text("path,label\r\nodd\u2028name\x85.wav,a\r\nb.wav,b\r\n", encoding="utf-8")
    rows = discover(tmp_path / "m.csv")
    assert [r.name for r in rows] == ["odd\u2028name\x85.wav", "b.wav"]


def test_manifest_line_bound_is_documented():
    assert 4096 < MAX_MANIFEST_LINE < 131072  # above PATH_MAX, below csv's own field limit


def test_find_audio_order_matches_a_sorted_walk(tmp_path):
    import os

    for rel in ["b/z.wav", "b/a/y.wav", "a.wav", "c/d/e/x.wav", "c/w.wav", ".h/v.wav", "b/.u.wav"]:
        touch(tmp_path / rel)
    expected = []
    for folder, dirs, files in os.walk(tmp_path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        expected += [Path(folder) / n for n in sorted(files) if not n.startswith(".")]
    assert find_audio([tmp_path])[0] == expected
