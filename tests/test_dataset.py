from pathlib import Path

import pytest

from audiogmm.dataset import discover, find_audio
from audiogmm.exceptions import ParameterError, TrainingError


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
    with pytest.raises(ParameterError, match="row 2"):
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
