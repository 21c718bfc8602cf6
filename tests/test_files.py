"""audiogmm._files: atomic writes that honour the umask, stale temporaries, class names as folders."""

import os
import socket
import re
import stat
import subprocess
import sys

import pytest

from audiogmm import _files
from audiogmm._files import check_class_names, create_temporary, is_stale_temporary, write_atomically
from audiogmm.exceptions import ParameterError


@pytest.fixture
def umask():
    """Set the process umask for one test (and restore it)."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def dead_pid():
    """The id of a process that has ended (reuse within the test is vanishingly unlikely)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def host():
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:32]


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o027, 0o640)])
def test_new_file_gets_mode_from_umask(tmp_path, umask, mask, expected):
    umask(mask)
    path = write_atomically(tmp_path / "model.agmm", lambda fh: fh.write(b"x"))
    assert mode_of(path) == expected
    assert path.read_bytes() == b"x"
    assert os.listdir(tmp_path) == ["model.agmm"]


def test_replacing_keeps_the_existing_files_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "report.csv"
    path.write_text("old")
    path.chmod(0o600)  # made private by its owner: a rewrite must not widen it
    write_atomically(path, lambda fh: fh.write("new"), text=True)
    assert path.read_text() == "new" and mode_of(path) == 0o600
    path.chmod(0o664)
    write_atomically(path, lambda fh: fh.write("newer"), text=True)
    assert mode_of(path) == 0o664


def test_model_file_honours_umask(tmp_path, umask, tone_corpus):
    from audiogmm import pipeline

    model = pipeline.train(tone_corpus / "train", n_components=1)
    umask(0o022)
    assert mode_of(model.save(tmp_path / "a.agmm")) == 0o644
    umask(0o077)
    assert mode_of(model.save(tmp_path / "b.agmm")) == 0o600


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"keep me")

    def fail(fh):
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(path, fail)
    assert path.read_bytes() == b"keep me"
    assert os.listdir(tmp_path) == ["x.bin"]


def test_text_with_surrogateescape_writes_the_exact_bytes(tmp_path):
    name = os.fsdecode(b"caf\xe9.wav")
    path = write_atomically(tmp_path / "r.csv", lambda fh: fh.write(name), text=True, errors="surrogateescape")
    assert path.read_bytes() == b"caf\xe9.wav"
    with pytest.raises(UnicodeEncodeError):
        write_atomically(tmp_path / "s.csv", lambda fh: fh.write(name), text=True)
    assert not (tmp_path / "s.csv").exists() and sorted(os.listdir(tmp_path)) == ["r.csv"]


def test_temporary_name_is_recognisable(tmp_path):
    fd, tmp = create_temporary(tmp_path / "model.agmm")
    os.close(fd)
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(".model.agmm.tmp-") and f"-{os.getpid()}-" in tmp.name and tmp.name.endswith(".tmp")
    assert not is_stale_temporary(tmp.name)  # ours, and we are alive
    long_name = "x" * 250 + ".agmm"  # the tag must still fit in one file name
    fd, tmp = create_temporary(tmp_path / long_name)
    os.close(fd)
    assert len(os.fsencode(tmp.name)) <= 255


def test_stale_temporaries_of_the_target_are_removed(tmp_path):
    """A train killed after creating its temporary model file: the next write removes it."""
    target = tmp_path / "model.agmm"
    dead = dead_pid()
    stale = tmp_path / f".model.agmm.tmp-{host()}-{dead}-0123abcd.tmp"
    stale.write_bytes(b"half a model")
    live_child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = [
            tmp_path / f".model.agmm.tmp-{host()}-{live_child.pid}-0123abcd.tmp",  # a live process's
            tmp_path / f".model.agmm.tmp-{host()}-{os.getpid()}-0123abcd.tmp",  # this process's
            tmp_path / f".model.agmm.tmp-otherhost-{dead}-0123abcd.tmp",  # from another machine
            tmp_path / f".other.agmm.tmp-{host()}-{dead}-0123abcd.tmp",  # another target's
            tmp_path / ".model.agmm.notes",  # not ours at all
        ]
        for p in keep:
            p.write_bytes(b"not mine to remove")
        assert is_stale_temporary(stale.name)
        write_atomically(target, lambda fh: fh.write(b"model"))
        assert not stale.exists()
        assert all(p.exists() for p in keep)
        assert target.read_bytes() == b"model"
        assert _files.remove_stale_temporaries(tmp_path / "other.agmm") == 1
    finally:
        live_child.kill()
        live_child.wait()


@pytest.mark.parametrize("name, problem", [
    ("", "is empty"), ("  ", "is empty"), (".", "relative folder"), ("..", "relative folder"),
    ("../../../x", "path separator"), ("a\\b", "path separator"), ("a\0b", "control character"),
    ("a\tb", "control character"), ("a\x85b", "control character"), (".audiogmm-sort-journal.tsv", "starts with a dot"),
    (".hidden", "starts with a dot"), ("bad\udcffname", "not valid text"), (" padded", "white space"),
    ("x" * 201, "longer than 200 bytes"),
])
def test_check_class_names_refuses_unsafe_names(name, problem):
    with pytest.raises(ParameterError, match=re.escape(problem)):
        check_class_names(["fine", name])


def test_check_class_names_refuses_case_collisions_and_non_strings():
    with pytest.raises(ParameterError, match="'jazz' and 'JAZZ' differ only in case"):
        check_class_names(["jazz", "rock", "JAZZ"])
    with pytest.raises(ParameterError, match="is not a string"):
        check_class_names(["jazz", 3])
    names = ["jazz", "rock & roll", "Ünïcode", "a.b", "x (1)"]
    assert check_class_names(names) == names
