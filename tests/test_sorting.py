"""`audiogmm sort`: nothing is ever lost or overwritten (property and integration tests)."""

import collections
import errno
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiogmm import pipeline, sorting
from audiogmm._files import check_class_names
from audiogmm.cli import main
from audiogmm.exceptions import AudioSkippedWarning, ParameterError
from audiogmm.features import FeatureConfig

from conftest import synth_tone


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    seed = 100
    for kind in ("low", "high", "noise"):
        for i in range(3):
            seed += 1
            path = root / kind / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, synth_tone(kind, seconds=0.5, seed=seed), 16000)
    # no per-recording normalisation: steady synthetic tones are then told apart with certainty
    model = pipeline.train(root, n_components=2, feature_config=FeatureConfig(cmvn="none"))
    return model.save(tmp_path_factory.mktemp("model") / "tones.agmm")


def make_library(root):
    """Nested folders, name collisions (same and different content), non-audio, a symlink, a corrupt track."""
    files = {
        "a/song.wav": ("low", 1),
        "b/song.wav": ("high", 2),          # same name, other content -> numbered suffix
        "c/deep/song.wav": ("low", 1),      # same name, same content as a/song.wav
        "e/song.wav": ("low", 5),           # same name, same label, other content -> "song (1).wav"
        "c/tune.flac": ("noise", 3),
        "d/stereo.wav": ("high", 4),
    }
    for rel, (kind, seed) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        y = synth_tone(kind, seconds=0.6, sr=16000, seed=seed)
        if rel.endswith("stereo.wav"):
            sf.write(p, np.stack([y, y], axis=1), 16000)
        else:
            sf.write(p, y, 16000)
    (root / "a" / "cover.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "a" / "list.m3u").write_text("song.wav\n")
    (root / "b" / "broken.mp3").write_bytes(b"ID3 garbage" * 10)
    os.symlink(root / "c" / "tune.flac", root / "d" / "linked.flac")
    return root


def snapshot(root, *, skip=()):
    """{relative path: (kind, content hash or link target)} for everything under root."""
    out = {}
    if not root.exists():
        return out
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            p = Path(folder) / name
            rel = p.relative_to(root).as_posix()
            if name in skip:
                continue
            if p.is_symlink():  # link targets relative to the test's folder, to compare runs
                out[rel] = ("link", os.path.relpath(os.readlink(p), root))
            else:
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def contents(snap):
    return collections.Counter(v[1] for v in snap.values() if v[0] == "file")


REPORT_FILES = ("audiogmm-sort-report.csv", sorting.JOURNAL_NAME)


def run_sort(model_path, lib, into, *extra):
    result = CliRunner().invoke(main, ["sort", str(model_path), str(lib), "--into", str(into), "-f", "json", *extra])
    return result


@pytest.mark.parametrize("mode", ["copy", "link", "move"])
def test_sort_keeps_every_file(model_path, tmp_path, mode):
    lib = make_library(tmp_path / "lib")
    before = snapshot(lib)
    into = tmp_path / "out"
    result = run_sort(model_path, lib, into, "--mode", mode)
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    # every source file exactly once in the output and the CSV report
    assert sorted(e["source"] for e in entries) == sorted(str(lib / rel) for rel in before)
    report = (into / "audiogmm-sort-report.csv").read_text().splitlines()
    assert len(report) == 1 + len(before)
    by_name = {Path(e["source"]).relative_to(lib).as_posix(): e for e in entries}
    assert by_name["a/cover.jpg"]["action"] == "left" and by_name["a/cover.jpg"]["decision"] == "not-audio"
    assert by_name["b/broken.mp3"]["decision"] == "unreadable"
    assert by_name["a/song.wav"]["decision"] == "low" and by_name["b/song.wav"]["decision"] == "high"

    after_src, dest = snapshot(lib), snapshot(into, skip=REPORT_FILES)
    audio_ok = [rel for rel in before if rel.endswith((".wav", ".flac"))]
    if mode == "copy":
        assert after_src == before
        expected = collections.Counter(before[rel][1] for rel in audio_ok if before[rel][0] == "file")
        expected[before["c/tune.flac"][1]] += 1  # the symlinked track is copied as a file too
        assert contents(dest) == expected  # identical files (a/song.wav, c/deep/song.wav) both kept
    elif mode == "link":
        assert after_src == before
        assert all(v[0] == "link" for v in dest.values())
        targets = collections.Counter(os.path.normpath(into / v[1]) for v in dest.values())
        sources = collections.Counter(str((lib / rel).resolve()) for rel in audio_ok)
        assert targets == sources  # one link per readable track (the symlinked one to its target)
    else:  # move: source + destination hold exactly the original contents, nothing lost or duplicated
        together = contents(after_src) + contents(dest)
        assert together == contents(before)
        assert "b/broken.mp3" in after_src and "a/cover.jpg" in after_src  # left alone
        assert after_src["d/linked.flac"][0] == "link"  # symlinks are not moved
    # collisions with different content got a numbered suffix, nothing overwritten
    names = sorted(p for p in dest if p.endswith(".wav"))
    assert any(" (1).wav" in p for p in names) or mode == "link"


def test_dry_run_touches_nothing(model_path, tmp_path):
    lib = make_library(tmp_path / "lib")
    before = snapshot(lib)
    mtimes = {p: p.lstat().st_mtime_ns for p in lib.rglob("*")}
    into = tmp_path / "out"
    result = run_sort(model_path, lib, into, "--mode", "move", "--dry-run")
    assert result.exit_code == 0, result.output
    assert snapshot(lib) == before
    assert {p: p.lstat().st_mtime_ns for p in lib.rglob("*")} == mtimes
    assert not into.exists()
    entries = json.loads(result.stdout)
    assert {e["action"] for e in entries} == {"would-move", "left"}
    assert "dry run: nothing was changed" in result.stderr


@pytest.mark.parametrize("mode", ["copy", "move"])
def test_interrupted_run_resumes_to_same_state(model_path, tmp_path, monkeypatch, mode):
    ref_lib = make_library(tmp_path / "ref" / "lib")
    assert run_sort(model_path, ref_lib, tmp_path / "ref" / "out", "--mode", mode).exit_code == 0

    lib = make_library(tmp_path / "run" / "lib")
    into = tmp_path / "run" / "out"
    real_place, calls = sorting.place, []

    def dying_place(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed in the middle of the run
        return real_place(*args, **kwargs)

    monkeypatch.setattr(sorting, "place", dying_place)
    with pytest.raises(KeyboardInterrupt):
        pipeline.sort_library(pipeline_model(model_path), lib, into, mode=mode)
    monkeypatch.setattr(sorting, "place", real_place)
    # a hard kill in the middle of a copy leaves a temporary file behind: the re-run removes it
    (into / "high").mkdir(parents=True, exist_ok=True)
    (into / "high" / ".audiogmm-part-stale").write_bytes(b"half a song")

    result = run_sort(model_path, lib, into, "--mode", mode)
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    assert len(entries) == len(snapshot(tmp_path / "ref" / "lib")) if mode == "copy" else True
    assert snapshot(into, skip=REPORT_FILES) == snapshot(tmp_path / "ref" / "out", skip=REPORT_FILES)
    assert snapshot(lib) == snapshot(ref_lib)
    # the resumed move's report still lists the files moved before the interruption
    report = (into / "audiogmm-sort-report.csv").read_text().splitlines()
    ref_report = (tmp_path / "ref" / "out" / "audiogmm-sort-report.csv").read_text().splitlines()
    assert len(report) == len(ref_report)


def pipeline_model(path):
    from audiogmm.persistence import load_model

    return load_model(path)


def test_move_across_filesystems_copies_verifies_then_deletes(model_path, tmp_path, monkeypatch):
    lib = make_library(tmp_path / "lib")
    before = snapshot(lib)
    real_link = os.link

    def no_cross_device_link(src, dst, *a, **k):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(sorting.os, "link", no_cross_device_link)
    into = tmp_path / "out"
    with pytest.warns(AudioSkippedWarning, match="broken.mp3"):
        entries, _ = pipeline.sort_library(pipeline_model(model_path), lib, into, mode="move")
    monkeypatch.setattr(sorting.os, "link", real_link)
    moved = [e for e in entries if e.action == "moved"]
    assert len(moved) == 6
    assert contents(snapshot(lib)) + contents(snapshot(into, skip=REPORT_FILES)) == contents(before)
    assert not list(into.rglob(".audiogmm-part-*"))


def test_refusals(model_path, tmp_path):
    lib = make_library(tmp_path / "lib")
    for into in (lib, lib / "sorted"):
        result = run_sort(model_path, lib, into)
        assert result.exit_code == 2
        assert "music folder" in result.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    before = snapshot(lib)
    result = run_sort(model_path, lib, blocker / "out", "--mode", "move")
    assert result.exit_code == 1
    assert "cannot write into" in result.stderr
    assert snapshot(lib) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_destination(model_path, tmp_path):
    lib = make_library(tmp_path / "lib")
    into = tmp_path / "ro"
    into.mkdir()
    into.chmod(0o500)
    try:
        result = run_sort(model_path, lib, into, "--mode", "move")
    finally:
        into.chmod(0o700)
    assert result.exit_code == 1 and "cannot write into" in result.stderr


def test_min_confidence_sends_to_unknown(tone_corpus, tmp_path):
    # one Gaussian per class on normalised features: a deliberately unsure model
    model_path = pipeline.train(tone_corpus / "train", n_components=1).save(tmp_path / "unsure.agmm")
    lib = make_library(tmp_path / "lib")
    result = run_sort(model_path, lib, tmp_path / "out", "--dry-run")
    confidences = sorted(e["confidence"] for e in json.loads(result.stdout) if e["confidence"] is not None)
    threshold = (confidences[0] + confidences[-1]) / 2
    assert confidences[0] < threshold < confidences[-1]
    result = run_sort(model_path, lib, tmp_path / "out", "--min-confidence", str(threshold))
    entries = [e for e in json.loads(result.stdout) if e["confidence"] is not None]
    for e in entries:
        assert (e["decision"] == "unknown") == (e["confidence"] < threshold)
        assert ("/unknown/" in e["destination"]) == (e["confidence"] < threshold)


def test_place_never_overwrites(tmp_path):
    src = tmp_path / "s" / "x.wav"
    src.parent.mkdir()
    src.write_bytes(b"new")
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "x.wav").write_bytes(b"old")
    (dest / "x (1).wav").write_bytes(b"new")  # equal bytes, but another file: kept, not reused
    path, action = sorting.place(src, dest, "copy")
    assert (path.name, action) == ("x (2).wav", "copied")
    assert (dest / "x.wav").read_bytes() == b"old" and (dest / "x (1).wav").read_bytes() == b"new"
    assert sorting.place(src, dest, "copy", earlier=path) == (path, "already-there")
    with pytest.raises(ParameterError, match="mode must be one of"):
        sorting.place(src, dest, "shred")


def test_rerun_after_finished_run_changes_nothing(model_path, tmp_path):
    lib = make_library(tmp_path / "lib")
    into = tmp_path / "out"
    assert run_sort(model_path, lib, into).exit_code == 0
    first = snapshot(into, skip=REPORT_FILES)
    result = run_sort(model_path, lib, into)
    assert result.exit_code == 0
    assert snapshot(into, skip=REPORT_FILES) == first
    assert {e["action"] for e in json.loads(result.stdout)} == {"already-there", "left"}


@pytest.mark.parametrize("label", ["", " ", ".", "..", "../../etc", "a/b", "a\\b", "a\0b", "a\nb", "a\x7fb",
                                   ".audiogmm-sort-journal.tsv", ".hidden", " padded", "bad\udcff"])
def test_labels_cannot_escape_destination(label):
    with pytest.raises(sorting.SortError, match="label .* each class must be usable as one folder name"):
        sorting.safe_folder_name(label)
    assert sorting.safe_folder_name("rock & roll (live)") == "rock & roll (live)"


def test_labels_equal_under_case_folding_are_refused():
    with pytest.raises(ParameterError, match="'Rock' and 'ROCK' differ only in case"):
        check_class_names(["Rock", "jazz", "ROCK"])
    with pytest.raises(sorting.SortError, match="differ only in case"):
        sorting.check_labels(["Stra\u00dfe", "STRASSE"])
    assert check_class_names(["rock", "jazz"]) == ["rock", "jazz"]


@pytest.mark.parametrize("name", ["unreadable", "not-audio", "excluded"])
def test_a_class_named_like_a_left_file_decision_is_refused(name):
    # the report's decision column could not tell such a class from a file left in place
    with pytest.raises(sorting.SortError, match=f"class\\(es\\) '{name}'.*retrain with other class names"):
        sorting.check_labels(["rock", name])
    assert sorting.check_labels(["rock", "unknown-ish"]) == ["rock", "unknown-ish"]


def test_move_killed_after_copy_before_delete_resumes(model_path, tmp_path, monkeypatch):
    """Cross-filesystem move killed between placing the verified copy and deleting the source."""
    lib = make_library(tmp_path / "lib")
    before = snapshot(lib)
    into = tmp_path / "out"
    model = pipeline_model(model_path)

    def no_link(*a, **k):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    real_rename, n = sorting._rename_no_clobber, []

    def rename_then_die(src, cand):
        placed = real_rename(src, cand)
        n.append(cand)
        if len(n) == 2:
            raise KeyboardInterrupt
        return placed

    monkeypatch.setattr(sorting.os, "link", no_link)
    monkeypatch.setattr(sorting, "_rename_no_clobber", rename_then_die)
    with pytest.raises(KeyboardInterrupt), pytest.warns(AudioSkippedWarning, match="broken.mp3"):
        pipeline.sort_library(model, lib, into, mode="move")
    monkeypatch.undo()
    # the second file now exists twice (destination copy, source not yet deleted)
    assert sum(contents(snapshot(lib)).values()) + sum(contents(snapshot(into, skip=REPORT_FILES)).values()) == \
        sum(contents(before).values()) + 1
    with pytest.warns(AudioSkippedWarning, match="broken.mp3"):
        entries, _ = pipeline.sort_library(model, lib, into, mode="move")
    assert contents(snapshot(lib)) + contents(snapshot(into, skip=REPORT_FILES)) == contents(before)
    assert not any(" (1)" in p for p in snapshot(into) if "song" not in p)  # no duplicate made by the resume
    assert sum(e.action == "moved" for e in entries) == 6


# -- what is sorted: --include/--exclude on a folder, and a manifest's recordings ----------------
def by_rel(entries, root):
    return {Path(e["source"]).relative_to(root).as_posix(): e for e in entries}


def sort_filtered(model_path, tmp_path, *extra):
    """Sort a fresh library with ``extra`` options: still every file under it listed once."""
    lib = make_library(tmp_path / "lib")
    before = snapshot(lib)
    into = tmp_path / "out"
    result = run_sort(model_path, lib, into, *extra)
    assert result.exit_code == 0, result.output
    entries = by_rel(json.loads(result.stdout), lib)
    assert sorted(entries) == sorted(before)
    report = (into / "audiogmm-sort-report.csv").read_text().splitlines()
    assert len(report) == 1 + len(before)
    return lib, before, into, entries


def test_excluded_files_are_listed_and_left_in_place(model_path, tmp_path):
    lib, before, into, entries = sort_filtered(model_path, tmp_path, "--mode", "move", "--exclude", "b/*")
    for rel in ("b/song.wav", "b/broken.mp3"):  # audio the pattern leaves out: not even decoded
        assert (entries[rel]["decision"], entries[rel]["action"], entries[rel]["destination"]) == \
            ("excluded", "left", "")
    assert entries["a/cover.jpg"]["decision"] == "not-audio"
    assert {e["action"] for rel, e in entries.items() if not rel.startswith(("b/", "a/cover", "a/list"))} == \
        {"moved", "left"}  # moved, and the symlink d/linked.flac left as always
    after, dest = snapshot(lib), snapshot(into, skip=REPORT_FILES)
    assert after["b/song.wav"] == before["b/song.wav"] and after["b/broken.mp3"] == before["b/broken.mp3"]
    assert before["b/song.wav"][1] not in contents(dest)
    assert contents(after) + contents(dest) == contents(before)


def test_include_sorts_only_the_matching_files(model_path, tmp_path):
    lib, before, into, entries = sort_filtered(model_path, tmp_path, "--include", "a/*", "--include", "*/deep/*")
    placed = sorted(rel for rel, e in entries.items() if e["action"] == "copied")
    assert placed == ["a/song.wav", "c/deep/song.wav"]
    assert sorted(rel for rel, e in entries.items() if e["decision"] == "excluded") == \
        ["b/broken.mp3", "b/song.wav", "c/tune.flac", "d/linked.flac", "d/stereo.wav", "e/song.wav"]
    assert contents(snapshot(into, skip=REPORT_FILES)) == collections.Counter({before["a/song.wav"][1]: 2})
    assert snapshot(lib) == before


@pytest.mark.parametrize("source", ["folder", "manifest"])
def test_patterns_that_leave_nothing_are_refused(model_path, tmp_path, source):
    lib = make_library(tmp_path / "lib")
    if source == "manifest":
        (tmp_path / "list.csv").write_text("path,label\nlib/a/song.wav,x\n")
        lib = tmp_path / "list.csv"
    into = tmp_path / "out"
    result = run_sort(model_path, lib, into, "--include", "nothing/*")
    assert result.exit_code == 2
    assert "is left after --include/--exclude" in result.stderr and str(lib) in result.stderr
    assert not into.exists()  # refused before any work


def write_manifest(path, rows):
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return path


def test_manifest_sorts_exactly_the_listed_files(model_path, tmp_path):
    lib = make_library(tmp_path / "lib")
    before = snapshot(lib)
    # relative to the manifest's folder, absolute, listed twice, left out by a pattern, missing
    manifest = write_manifest(lib / "new.csv", [("a/song.wav", "x"), (str(lib / "c" / "tune.flac"), "y"),
                                                ("a/song.wav", "z"), ("d/stereo.wav", "x"), ("gone.wav", "x")])
    into = lib / "sorted"  # beside the recordings: only the listed files are sources
    result = run_sort(model_path, manifest, into, "--exclude", "d/*")
    assert result.exit_code == 0, result.output
    assert "gone.wav" in result.stderr  # the skipped file is warned about, as any unreadable one
    entries = by_rel(json.loads(result.stdout), lib)
    assert sorted(entries) == ["a/song.wav", "c/tune.flac", "d/stereo.wav", "gone.wav"]  # each once
    assert entries["a/song.wav"]["decision"] == "low" and entries["a/song.wav"]["action"] == "copied"
    assert entries["c/tune.flac"]["decision"] == "noise" and entries["c/tune.flac"]["action"] == "copied"
    assert (entries["d/stereo.wav"]["decision"], entries["d/stereo.wav"]["action"]) == ("excluded", "left")
    assert (entries["gone.wav"]["decision"], entries["gone.wav"]["action"]) == ("unreadable", "left")
    assert "not found" in entries["gone.wav"]["note"]
    assert contents(snapshot(into, skip=REPORT_FILES)) == \
        collections.Counter([before["a/song.wav"][1], before["c/tune.flac"][1]])
    assert {rel: v for rel, v in snapshot(lib).items() if not rel.startswith("sorted/")} == \
        {**before, "new.csv": snapshot(lib)["new.csv"]}  # nothing else in the folder touched
    report = (into / "audiogmm-sort-report.csv").read_text().splitlines()
    assert len(report) == 1 + 4
    result = run_sort(model_path, manifest, into, "--exclude", "d/*")  # the folder is not refused on a re-run
    assert result.exit_code == 0, result.output
    assert {e["action"] for e in json.loads(result.stdout)} == {"already-there", "left"}


def test_manifest_move_resumes_after_an_interruption(model_path, tmp_path, monkeypatch):
    lib = make_library(tmp_path / "lib")
    before = snapshot(lib)
    listed = ["a/song.wav", "b/song.wav", "c/tune.flac", "d/stereo.wav"]
    manifest = write_manifest(tmp_path / "list.tsv", [(f"lib/{rel}", "x") for rel in listed])
    manifest.write_text(manifest.read_text().replace(",", "\t"))
    into = tmp_path / "out"
    model = pipeline_model(model_path)
    real_place, calls = sorting.place, []

    def place_then_die(*args, **kwargs):  # killed after placing the second file, before its done line
        calls.append(args)
        placed = real_place(*args, **kwargs)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return placed

    monkeypatch.setattr(sorting, "place", place_then_die)
    with pytest.raises(KeyboardInterrupt):
        pipeline.sort_library(model, manifest, into, mode="move")
    monkeypatch.undo()
    assert sum(not (lib / rel).exists() for rel in listed) == 2
    for _ in range(2):  # the resumed run, then a run after a finished one
        with warnings.catch_warnings():
            warnings.simplefilter("error", AudioSkippedWarning)  # moved files are not "unreadable"
            entries, report = pipeline.sort_library(model, manifest, into, mode="move")
        assert sorted(Path(e.source).relative_to(lib).as_posix() for e in entries) == listed
        assert {e.action for e in entries} == {"moved"}
        assert sum("interrupted run" in e.note for e in entries) == 1
        assert len(report.read_text().splitlines()) == 1 + len(listed)
        assert contents(snapshot(lib)) + contents(snapshot(into, skip=REPORT_FILES)) == contents(before)
        assert all(not (lib / rel).exists() for rel in listed) and (lib / "e" / "song.wav").exists()


def test_manifest_destination_holding_a_listed_file_is_refused(model_path, tmp_path):
    lib = make_library(tmp_path / "lib")
    manifest = write_manifest(tmp_path / "list.csv", [("lib/a/song.wav", "x"), ("lib/c/deep/song.wav", "x")])
    before = snapshot(lib)
    for into in (lib, lib / "c", lib / "a"):
        result = run_sort(model_path, manifest, into, "--mode", "move")
        assert result.exit_code == 2, result.output
        assert "a recording to sort" in result.stderr and "song.wav" in result.stderr
    # a label folder that is a recording's folder (through a link): refused too
    into = tmp_path / "out"
    into.mkdir()
    os.symlink(lib / "a", into / "low")
    result = run_sort(model_path, manifest, into, "--mode", "move")
    assert result.exit_code == 1
    assert "the folder for label 'low'" in result.stderr and "a recording to sort" in result.stderr
    assert snapshot(lib) == before
    assert sorted(p.name for p in into.iterdir()) == ["low"]  # no journal, no report: refused before any work
    with pytest.raises(ParameterError, match="exactly one of source_dir"):
        sorting.Sorter(None, into)
