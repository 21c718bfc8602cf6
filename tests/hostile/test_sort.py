"""Hostile input for `sort`: forged or broken journals, destinations meeting the music folder,
unremovable sources, full disks, odd names, SIGKILL at random moments. Nothing may be lost,
duplicated or half-written, and the CLI never shows a traceback."""

import collections
import errno
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiogmm import pipeline, sorting
from audiogmm.cli import main
from audiogmm.features import FeatureConfig
from audiogmm.sorting import JOURNAL_NAME, SortError

SR = 8000
REPORT = "audiogmm-sort-report.csv"


def tone(kind, seed, seconds=0.25):
    r = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    if kind == "noise":
        y = np.convolve(r.standard_normal(t.size), np.ones(4) / 4, mode="same")
    else:
        f0 = {"low": 220.0, "high": 1760.0}[kind] * (1 + 0.02 * r.standard_normal())
        y = np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(4 * np.pi * f0 * t) + 0.05 * r.standard_normal(t.size)
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    for kind in ("low", "high", "noise"):
        for i in range(2):
            p = root / kind / f"{i}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, tone(kind, 1000 + 10 * i + len(kind)), SR)
    model = pipeline.train(root, n_components=1, feature_config=FeatureConfig(cmvn="none"))
    return model.save(tmp_path_factory.mktemp("model") / "tiny.agmm")


@pytest.fixture(scope="module")
def model(model_path):
    from audiogmm.persistence import load_model

    return load_model(model_path)


def make_lib(root, n=6, *, names=None):
    """``n`` tiny tracks of three kinds in two folders, plus a same-content pair."""
    kinds = ("low", "high", "noise")
    paths = []
    for i in range(n):
        name = names[i] if names else f"t{i}.wav"
        p = root / ("a" if i % 2 else "b") / name
        p.parent.mkdir(parents=True, exist_ok=True)
        plain = p.with_name(f".writing-{i}.wav")  # libsndfile cannot open names that are not UTF-8
        sf.write(plain, tone(kinds[i % 3], i), SR)
        os.rename(plain, p)
        paths.append(p)
    return paths


def files_under(root, *, skip=(REPORT, JOURNAL_NAME)):
    out = []
    for folder, _dirs, names in os.walk(root):
        out += [Path(folder) / n for n in names if n not in skip]
    return out


def contents(*roots):
    """The multiset of SHA-256 of every regular file under ``roots`` (report and journal aside)."""
    c = collections.Counter()
    for root in roots:
        for p in files_under(root):
            if not p.is_symlink():
                c[hashlib.sha256(p.read_bytes()).hexdigest()] += 1
    return c


def assert_clean(into):
    """No temporary file, and every file under a final name in a label folder is a whole track."""
    leftovers = [p for p in files_under(into) if p.name.startswith(".audiogmm-part-")]
    assert leftovers == []
    for p in files_under(into):
        if not p.is_symlink():
            assert sf.info(p).frames > 0, p


def sort(model, lib, into, **kw):
    return pipeline.sort_library(model, lib, into, **kw)


def journal_line(*fields):
    """A journal record: fields escaped as the inside of a JSON string, tab-separated."""
    return "\t".join(json.dumps(f)[1:-1] for f in fields) + "\n"


def one_track(model, tmp_path):
    """A library of one track; returns it, its label, the destination and the track's name there."""
    lib = tmp_path / "lib"
    (src,) = make_lib(lib, 1)
    label = pipeline.predict(model, [src])[0][0].label
    into = tmp_path / "out"
    (into / label).mkdir(parents=True)
    return lib, src, label, into, into / label / src.name


# -- 1. a move deletes a source only after verifying its destination ----------------------
@pytest.mark.parametrize("record", ["legacy-intent", "intent-other-inode", "done-moved"])
def test_move_never_trusts_the_journal_over_the_users_identical_file(model, tmp_path, record):
    lib, src, label, into, users = one_track(model, tmp_path)
    users.write_bytes(src.read_bytes())  # the user's own file: same name, same bytes, another file
    before = contents(lib, into)
    conf = "0.9000"
    if record == "legacy-intent":  # seven fields: no inode recorded
        line = journal_line("intent", str(src), label, conf, "", str(users), "")
    elif record == "intent-other-inode":
        line = journal_line("intent", str(src), label, conf, "move", str(users), "", "1:2")
    else:
        line = journal_line("done", str(src), label, conf, "moved", str(users), "", "")
    (into / JOURNAL_NAME).write_text(line)
    entries, _ = sort(model, lib, into, mode="move")
    assert contents(lib, into) == before  # two files stay two files
    assert users.exists()
    (entry,) = entries
    assert entry.action == "moved" and entry.destination == str(into / label / "t0 (1).wav")
    assert not src.exists()


def test_move_resumed_after_the_hard_link_removes_the_source(model, tmp_path):
    """The journal's inode is at the destination: a kill between link and unlink is finished."""
    lib, src, label, into, dest = one_track(model, tmp_path)
    os.link(src, dest)
    st = os.stat(src)
    (into / JOURNAL_NAME).write_text(
        journal_line("intent", str(src), label, "0.9", "move", str(dest), "", f"{st.st_dev}:{st.st_ino}"))
    before = contents(lib, into)
    (entry,) = sort(model, lib, into, mode="move")[0]
    assert (entry.action, entry.destination) == ("moved", str(dest))
    assert not src.exists() and contents(into) == collections.Counter(set(before))


def test_move_verifies_the_destination_just_before_deleting(tmp_path, monkeypatch):
    """A destination changed between placing and deleting: the source stays."""
    src = tmp_path / "s" / "x.wav"
    src.parent.mkdir()
    src.write_bytes(b"original")
    real = sorting._link_no_clobber

    def link_then_tamper(existing, cand):
        ok = real(existing, cand)
        os.unlink(cand)
        cand.write_bytes(b"original")  # same bytes, but not the file we placed
        return ok

    monkeypatch.setattr(sorting, "_link_no_clobber", link_then_tamper)
    with pytest.raises(SortError, match="source left in place"):
        sorting.place(src, tmp_path / "d", "move")
    assert src.read_bytes() == b"original"


# -- 2. a resumed move lists a file whose done line is missing ------------------------------
def test_resumed_move_reports_a_file_whose_done_line_was_cut(model, tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    paths = make_lib(lib, 4)
    into = tmp_path / "out"
    real, n = sorting.Sorter._record, []

    def die_before_second_done(self, kind, entry, identity=None):
        if kind == "done":
            n.append(entry)
            if len(n) == 2:
                raise KeyboardInterrupt  # killed after the move, before its done line
        return real(self, kind, entry, identity)

    monkeypatch.setattr(sorting.Sorter, "_record", die_before_second_done)
    with pytest.raises(KeyboardInterrupt):
        sort(model, lib, into, mode="move")
    monkeypatch.undo()
    assert not Path(n[1].source).exists()  # it was moved, but the journal does not say so
    entries, report = sort(model, lib, into, mode="move")
    assert sorted(e.source for e in entries) == sorted(map(str, paths))
    assert all(e.action == "moved" for e in entries)
    cut = next(e for e in entries if e.source == n[1].source)
    assert cut.destination == n[1].destination and Path(cut.destination).exists()
    assert len(report.read_text().splitlines()) == 1 + len(paths)


# -- 3. the journal is validated ------------------------------------------------------------
def bad_lines(lib, into):
    src, dest = str(lib / "b" / "t0.wav"), str(into / "low" / "t0.wav")
    ok = journal_line("done", src, "low", "0.5", "copied", dest, "", "")
    return {
        "field count": ok.replace("\tcopied", ""),
        "kind": journal_line("maybe", src, "low", "0.5", "copied", dest, "", ""),
        "confidence not a number": journal_line("done", src, "low", "high", "copied", dest, "", ""),
        "confidence above 1": journal_line("done", src, "low", "2", "copied", dest, "", ""),
        "confidence nan": journal_line("done", src, "low", "nan", "copied", dest, "", ""),
        "action": journal_line("done", src, "low", "0.5", "shredded", dest, "", ""),
        "intent mode": journal_line("intent", src, "low", "0.5", "burn", dest, "", ""),
        "undecodable bytes": "done\t" + src + "\t\xff\xfe\n",
        "raw quote": ok.replace("low\t", 'lo"w\t', 1),
        "destination outside": journal_line("done", src, "low", "0.5", "moved", "/etc/passwd", "", ""),
        "destination escapes": journal_line("done", src, "low", "0.5", "moved", str(into / "low" / ".." / ".." / "x"), "", ""),
        "destination too deep": journal_line("done", src, "low", "0.5", "moved", str(into / "low" / "x" / "y"), "", ""),
        "destination missing": journal_line("intent", src, "low", "0.5", "move", "", "", ""),
        "relative source": journal_line("done", "t0.wav", "low", "0.5", "copied", dest, "", ""),
        "decision unsafe": journal_line("done", src, "../x", "0.5", "copied", str(into / "low" / "t0.wav"), "", ""),
        "NUL": journal_line("done", src + "\0", "low", "0.5", "copied", dest, "", ""),
        "inode": journal_line("done", src, "low", "0.5", "copied", dest, "", "one:two"),
        "empty line": "\n",
        "huge line": journal_line("done", src, "low", "0.5", "left", "", "x" * (1 << 20 + 1), ""),
    }


@pytest.mark.parametrize("case", list(bad_lines(Path("/l"), Path("/o"))))
def test_bad_journal_line_is_refused_before_anything_moves(model, tmp_path, case):
    lib = tmp_path / "lib"
    make_lib(lib, 2)
    into = tmp_path / "out"
    into.mkdir()
    good = journal_line("done", str(lib / "a" / "t1.wav"), "high", "", "left", "", "a note\twith a tab", "")
    text = good + bad_lines(lib, into)[case]
    (into / JOURNAL_NAME).write_bytes(text.encode("latin-1"))
    before = contents(lib)
    with pytest.raises(SortError, match=rf"sort journal '.*{JOURNAL_NAME}', line 2: .*Nothing was moved"):
        sort(model, lib, into, mode="move")
    assert contents(lib) == before and sorted(os.listdir(into)) == [JOURNAL_NAME]


def test_bad_journal_at_the_cli_exits_1_without_traceback(model_path, tmp_path):
    lib = tmp_path / "lib"
    make_lib(lib, 2)
    into = tmp_path / "out"
    into.mkdir()
    (into / JOURNAL_NAME).write_bytes(b"\x00\xff garbage\n")
    result = CliRunner().invoke(main, ["sort", str(model_path), str(lib), "--into", str(into), "--mode", "move"])
    assert result.exit_code == 1
    assert "line 1" in result.stderr and JOURNAL_NAME in result.stderr and "Traceback" not in result.output


def test_line_cut_short_by_a_kill_is_dropped_and_the_journal_stays_valid(model, tmp_path):
    lib = tmp_path / "lib"
    make_lib(lib, 2)
    into = tmp_path / "out"
    into.mkdir()
    (into / JOURNAL_NAME).write_text(journal_line("intent", str(lib / "b" / "t0.wav"), "low", "", "mo"))  # no newline
    (into / JOURNAL_NAME).write_bytes((into / JOURNAL_NAME).read_bytes()[:-1])
    sort(model, lib, into, mode="copy")
    sort(model, lib, into, mode="copy")  # the journal written after the cut line reads back
    last, _ = sorting._read_journal(into)
    assert set(last) == {str(p) for p in lib.rglob("*.wav")}


# -- 4. the destination may not meet the music folder ---------------------------------------
@pytest.mark.parametrize("where", ["label-is-music", "label-contains-music", "via-symlink"])
def test_destination_meeting_the_music_folder_through_a_label_is_refused(model_path, model, tmp_path, where):
    parent = tmp_path / "music"
    label = model.classes[0]
    if where == "label-is-music":
        lib, into = parent / label, parent
    elif where == "label-contains-music":
        lib, into = parent / label / "unsorted", parent
    else:
        lib, into = parent / label, tmp_path / "link-to-music"
        os.symlink(parent, into)
    make_lib(lib, 2)
    before = sorted(p for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(main, ["sort", str(model_path), str(lib), "--into", str(into)])
    assert result.exit_code == 1, result.output
    assert "is or contains the music folder" in result.stderr and "Traceback" not in result.output
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_destination_beside_the_music_folder_is_fine(model, tmp_path):
    lib = tmp_path / "music" / "unsorted"
    make_lib(lib, 2)
    entries, _ = sort(model, lib, tmp_path / "music", mode="copy")
    assert {e.action for e in entries} == {"copied"}


# -- 5. a move whose sources cannot be removed is refused up front ---------------------------
def test_move_from_unremovable_folder_refused_before_placing(model, tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    make_lib(lib, 4)
    into = tmp_path / "out"
    real_access = os.access
    monkeypatch.setattr(sorting.os, "access", lambda p, m, **k: Path(p) != lib / "a" and real_access(p, m, **k))
    before = contents(lib)
    with pytest.raises(SortError, match=r"cannot remove 2 file\(s\).*/lib/a.*nothing was placed.*--mode copy"):
        sort(model, lib, into, mode="move")
    assert contents(lib) == before and contents(into) == collections.Counter()
    entries, _ = sort(model, lib, into, mode="copy")  # copying needs no write access to the sources
    assert {e.action for e in entries} == {"copied"}


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_move_from_read_only_folder_refused(model_path, tmp_path):  # pragma: no cover - CI runs as root
    lib = tmp_path / "lib"
    make_lib(lib, 4)
    (lib / "a").chmod(0o555)
    try:
        result = CliRunner().invoke(main, ["sort", str(model_path), str(lib), "--into", str(tmp_path / "o"),
                                           "--mode", "move"])
    finally:
        (lib / "a").chmod(0o755)
    assert result.exit_code == 1 and "nothing was placed" in result.stderr


# -- 6. a full disk or quota ends the run cleanly, and a re-run resumes ---------------------
class _FillingFile:
    """A file object whose write fails once the disk is 'full'."""

    def __init__(self, fh, fail):
        self.fh, self.fail = fh, fail

    def write(self, data):
        if self.fail:
            self.fh.write(data[: len(data) // 2])  # half the data reached the disk
            raise OSError(self.fail[0], self.fail[1])
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


FULL = [(errno.ENOSPC, "No space left on device"), (errno.EDQUOT, "Disk quota exceeded"),
        (errno.EFBIG, "File too large")]


@pytest.mark.parametrize("err", FULL, ids=["ENOSPC", "EDQUOT", "EFBIG"])
@pytest.mark.parametrize("where", ["copy", "journal", "report"])
@pytest.mark.parametrize("mode", ["copy", "move"])
def test_full_disk_stops_the_run_and_a_rerun_resumes(model_path, model, tmp_path, monkeypatch, err, where, mode):
    lib = tmp_path / "lib"
    make_lib(lib, 5)
    into = tmp_path / "out"
    original = contents(lib)
    nth = 3
    if mode == "move":  # across filesystems: the move is a copy, then a delete
        monkeypatch.setattr(sorting.os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "x")))
    calls = []
    if where == "copy":
        real_fdopen = os.fdopen

        def fdopen(fd, *a, **k):
            calls.append(fd)
            return _FillingFile(real_fdopen(fd, *a, **k), err if len(calls) == nth else None)

        monkeypatch.setattr(sorting.os, "fdopen", fdopen)
    elif where == "journal":
        real_fsync = os.fsync

        def fsync(fd):
            calls.append(fd)
            if len(calls) == 2 * nth:
                raise OSError(*err)
            return real_fsync(fd)

        monkeypatch.setattr(sorting.os, "fsync", fsync)
    else:
        def no_room(*a, **k):
            raise OSError(*err)

        monkeypatch.setattr(sorting, "write_atomically", no_room)
    result = CliRunner().invoke(main, ["sort", str(model_path), str(lib), "--into", str(into), "--mode", mode])
    assert result.exit_code == 1, result.output
    assert err[1] in result.stderr and "run the same command again" in result.stderr
    assert "Traceback" not in result.output
    assert_clean(into)
    assert contents(lib, into) - original == collections.Counter() or mode == "copy"
    if mode == "move":
        assert set(contents(lib, into)) == set(original)  # nothing lost
    monkeypatch.undo()
    sorting._read_journal(into)  # still a valid journal
    entries, report = sort(model, lib, into, mode=mode)
    assert {e.action for e in entries} <= ({"copied", "already-there"} if mode == "copy" else {"moved"})
    assert len(entries) == 5 and report.exists()
    assert_clean(into)
    if mode == "copy":
        assert contents(into) == original and contents(lib) == original
    else:
        assert contents(into) == original and contents(lib) == collections.Counter()


# -- 7. names that are not UTF-8 -----------------------------------------------------------
ODD = [os.fsdecode(b"caf\xe9.wav"), os.fsdecode(b"\xff\xfe.wav"), "new\nline.wav", "tab\there.wav", "ok.wav"]


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses names that are not UTF-8")
@pytest.mark.parametrize("mode", ["copy", "move"])
def test_names_that_are_not_utf8_are_placed_journalled_and_reported(tmp_path, mode):
    lib = tmp_path / "lib"
    paths = make_lib(lib, len(ODD), names=ODD)
    original = contents(lib)
    into = tmp_path / "out"
    for _ in range(2):  # the second run finds everything in place through the journal
        sorter = sorting.Sorter(lib, into, mode=mode)
        sorter.start()
        for p in paths:
            if p.exists() or mode == "copy":
                sorter.apply(p, "low", 0.9)
        entries = sorter.finish()
        assert contents(into) == original
    assert sorted(e.source for e in entries) == sorted(map(str, paths))
    assert {e.action for e in entries} == {"already-there" if mode == "copy" else "moved"}
    raw = sorter.report_path.read_bytes()
    assert b"caf\xe9.wav" in raw and b"\xff\xfe.wav" in raw  # the exact bytes, as a file list must
    assert sorting._read_journal(into)[0].keys() == {str(p) for p in paths}
    assert all(b < 128 for b in (into / JOURNAL_NAME).read_bytes())  # the journal escapes them
    assert sorting.display_path(paths[0]).endswith("caf\\xe9.wav")


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses names that are not UTF-8")
@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_names_that_are_not_utf8_through_the_cli(model_path, tmp_path, fmt):
    lib = tmp_path / "lib"
    paths = make_lib(lib, len(ODD), names=ODD)
    into = tmp_path / "out"
    result = CliRunner().invoke(main, ["sort", str(model_path), str(lib), "--into", str(into), "-f", fmt])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    report = (into / REPORT).read_bytes()
    assert all(os.fsencode(p) in report for p in paths)
    for entry, _ in sorting._read_journal(into)[0].values():
        name = os.fsencode(Path(entry.source).name)
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            # audio.py cannot open these yet (soundfile encodes names strictly): left, but listed
            assert entry.action in ("copied", "left"), entry
        else:
            assert entry.action == "copied", entry


# -- 8. class names that cannot be folder names ----------------------------------------------
@pytest.mark.parametrize("bad", ["../../../x", ".audiogmm-sort-journal.tsv", "", "a/b", "LOW"])
def test_model_with_unsafe_class_names_is_refused_before_any_work(model, tmp_path, bad):
    import copy

    hostile = copy.deepcopy(model)
    classes = np.array(list(model.classes), dtype=object)
    classes[1] = bad if bad != "LOW" else classes[0].upper()
    hostile.classifier.classes_ = classes
    lib = tmp_path / "lib"
    make_lib(lib, 2)
    with pytest.raises(SortError, match="labels? .*(folder name|differ only in case)"):
        sort(hostile, lib, tmp_path / "out", mode="move")
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


# -- 9. permissions of what sort writes ----------------------------------------------------
def test_copies_keep_source_bits_less_umask_and_report_follows_umask(model, tmp_path):
    lib = tmp_path / "lib"
    paths = make_lib(lib, 2)
    paths[0].chmod(0o640)
    paths[1].chmod(0o666)
    old = os.umask(0o027)
    try:
        entries, report = sort(model, lib, tmp_path / "out", mode="copy")
    finally:
        os.umask(old)
    modes = {e.source: stat.S_IMODE(os.stat(e.destination).st_mode) for e in entries}
    assert modes == {str(paths[0]): 0o640, str(paths[1]): 0o640}
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o640
    assert all(os.stat(e.destination).st_mtime_ns == os.stat(e.source).st_mtime_ns for e in entries)


# -- 11. SIGKILL at random moments -----------------------------------------------------------
def _start_cli(model_path, lib, into, mode):
    return subprocess.Popen(
        [sys.executable, "-m", "audiogmm", "sort", str(model_path), str(lib), "--into", str(into), "--mode", mode,
         "-f", "csv"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )


def _wait_for(proc, prefix):
    """Block until the child writes a line starting with ``prefix`` (placing starts right after)."""
    for line in proc.stderr:
        if line.startswith(prefix):
            return True
    return False


def _is_temporary(name):
    """The tool's own temporaries (partial copies, atomic-write files): the next run removes them."""
    return name.startswith(".audiogmm-part-") or ".tmp-" in name


def _check_after_kill(lib, into, original, mode, what):
    """Whatever the moment of the kill: nothing lost, no file half-written under a final name."""
    if mode.startswith("move"):
        final = collections.Counter()
        for root in (lib, into):
            for p in files_under(root):
                if not p.is_symlink() and not _is_temporary(p.name):
                    final[hashlib.sha256(p.read_bytes()).hexdigest()] += 1
        assert set(final) == set(original), what
    else:
        assert contents(lib) == original, what
    for p in files_under(into):
        if not _is_temporary(p.name) and not p.is_symlink():
            assert sf.info(p).frames > 0, (what, p)


def _check_finished(lib, into, original, mode, n_sources, what):
    """After a run to completion: every original exactly once, and every source in the report once."""
    assert_clean(into)
    if mode == "link":
        links = files_under(into)
        assert all(p.is_symlink() for p in links), what
        assert sorted(os.path.realpath(p) for p in links) == sorted(str(p) for p in lib.rglob("*.wav")), what
    else:
        assert contents(into) == original, what
        assert contents(lib) == (original if mode == "copy" else collections.Counter()), what
    report = (into / REPORT).read_text(encoding="utf-8").splitlines()
    assert len(report) == 1 + n_sources, what


def _kill_library(root, n_files):
    lib = root / "lib"
    make_lib(lib, n_files)
    (lib / "a" / "dup.wav").write_bytes((lib / "b" / "t0.wav").read_bytes())  # equal bytes, two files
    return lib, root / "out", contents(lib)


def test_sigkill_of_the_cli_then_rerun(model_path, model, tmp_path):
    """`python -m audiogmm sort` killed during placing (a few trials: each costs a start-up)."""
    rng = random.Random(7)
    for trial, mode in enumerate(["move", "copy", "link"]):
        lib, into, original = _kill_library(tmp_path / f"t{trial}", 8)
        proc = _start_cli(model_path, lib, into, mode)
        assert _wait_for(proc, "classifying:")
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        _check_after_kill(lib, into, original, mode, trial)
        if trial == 0:  # the re-run through the CLI once; in-process (same code, no start-up) after
            proc = _start_cli(model_path, lib, into, mode)
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        else:
            sort(model, lib, into, mode=mode)
        _check_finished(lib, into, original, mode, 9, trial)


# the placing stage alone, in a child that imports only audiogmm.sorting (cheap to start), so that
# many random moments can be tried; "move-cross" makes hard links fail as across filesystems
_DRIVER = """
import errno, json, os, sys
from audiogmm import sorting
plan = json.loads(sys.argv[1])
if plan["mode"] == "move-cross":
    def no_link(*a, **k):
        raise OSError(errno.EXDEV, "Invalid cross-device link")
    sorting.os.link = no_link
sorter = sorting.Sorter(plan["lib"], plan["into"], mode=plan["mode"].split("-")[0])
sorter.start()
print("placing", file=sys.stderr, flush=True)
for path, label in plan["decisions"]:
    if os.path.lexists(path):
        sorter.apply(path, label, 0.9)
sorter.finish()
sorter.close()
"""


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(20261201)
    labels = ("low", "high", "noise")

    def run(lib, into, mode, kill_after=None):
        decisions = [[str(p), labels[i % 3]] for i, p in enumerate(sorted(lib.rglob("*.wav")))]
        plan = json.dumps({"lib": str(lib), "into": str(into), "mode": mode, "decisions": decisions})
        proc = subprocess.Popen([sys.executable, "-c", _DRIVER, plan], stderr=subprocess.PIPE, text=True)
        _wait_for(proc, "placing")
        t0 = time.monotonic()
        if kill_after is None:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            return time.monotonic() - t0
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        return time.monotonic() - t0

    # how long placing takes here, so that kills are spread over it
    lib, into, _ = _kill_library(tmp_path / "probe", 12)
    span = max(run(lib, into, "move-cross"), 0.01)
    modes = ("move", "move-cross", "copy", "link")
    for trial in range(20):
        mode = modes[trial % 4]
        lib, into, original = _kill_library(tmp_path / f"t{trial}", 12)
        for kill in range(1 + (trial % 6 == 5)):  # some libraries are killed twice before finishing
            run(lib, into, mode, kill_after=rng.uniform(0.0, 1.1) * span)
            _check_after_kill(lib, into, original, mode, (trial, kill))
        # run to completion (in this process: the same code, without a child's start-up)
        plain = mode.split("-")[0]
        sorter = sorting.Sorter(lib, into, mode=plain)
        sorter.start()
        for i, p in enumerate(sorted(lib.rglob("*.wav"))):
            sorter.apply(p, labels[i % 3], 0.9)
        sorter.finish()
        sorter.close()
        _check_finished(lib, into, original, "move" if mode == "move-cross" else mode, 13, trial)


# -- 12. copy and link re-runs duplicate nothing ---------------------------------------------
@pytest.mark.parametrize("mode", ["copy", "link"])
def test_reruns_of_copy_and_link_add_nothing(model, tmp_path, mode):
    lib = tmp_path / "lib"
    make_lib(lib, 4)
    (lib / "b" / "same.wav").write_bytes((lib / "b" / "t0.wav").read_bytes())  # equal bytes, two files
    original = contents(lib)
    into = tmp_path / "out"
    for _ in range(3):
        sort(model, lib, into, mode=mode)
        assert contents(lib) == original
        if mode == "copy":
            assert contents(into) == original
        else:
            assert sorted(os.path.realpath(p) for p in files_under(into)) == sorted(str(p) for p in lib.rglob("*.wav"))
