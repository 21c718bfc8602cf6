"""Putting files into ``OUT_DIR/<label>/`` without ever losing or overwriting one.

This module only moves bytes; deciding the labels is :mod:`audiogmm.pipeline`'s job.

Guarantees
----------
- **No overwrite.** A file is placed under its own name, or ``name (1).ext``, ``name (2).ext``
  ... when that name is taken by *different* content. Placing is no-clobber at the system
  level (a hard link or symlink creation fails if the name exists), not a check followed by
  a write.
- **No half-written file under a final name.** Copies go to a hidden temporary file
  (``.audiogmm-part-*``) in the destination folder, are flushed to disk and checked (size and
  SHA-256 against the source) and only then linked under their final name. Temporaries left by
  a killed run are removed by the next run.
- **Move never deletes before the copy is safe.** Within one filesystem a move is a hard link
  followed by removing the source name (one inode, never two copies of data nor zero). Across
  filesystems it is copy, verify, then delete the source. On filesystems without hard links a
  move falls back to :func:`os.rename` after checking that the name is free.
- **Resumable.** Every step is journalled in ``OUT_DIR/.audiogmm-sort-journal.tsv`` (an
  *intent* line, flushed to disk, before a name is written; a *done* line after). A re-run
  finds, for each source, where an earlier run put (or was putting) it: if that name already
  holds the source's bytes (or, in ``link`` mode, a link to it) nothing is written again, and a
  ``move`` cut short after its copy removes the source left behind. Distinct files with equal
  bytes are still all kept. So re-running after an interruption, or after a finished run, ends
  in the same state as one uninterrupted run, and the report of a resumed ``move`` still lists
  the files moved before the interruption.
- **Dry run** touches nothing: no folder, no file, no journal, no report.
"""

import csv
import errno
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._files import write_atomically
from .exceptions import AudiogmmError, ParameterError

__all__ = ["SortError", "SortEntry", "MODES", "check_locations", "place", "Sorter"]

MODES = ("copy", "link", "move")
_PART_PREFIX = ".audiogmm-part-"
JOURNAL_NAME = ".audiogmm-sort-journal.tsv"
REPORT_FIELDS = ("source", "decision", "confidence", "action", "destination", "note")


class SortError(AudiogmmError):
    """The destination cannot be used, or a file could not be placed safely."""


@dataclass
class SortEntry:
    """One line of the sort report: what was decided for ``source`` and what was done."""

    source: str
    decision: str  # a label, "unknown", "unreadable" or "not-audio"
    confidence: float | None = None
    action: str = ""  # copied, linked, moved, already-there, left, would-copy, ...
    destination: str = ""
    note: str = ""

    def row(self):
        conf = "" if self.confidence is None else f"{self.confidence:.4f}"
        return [self.source, self.decision, conf, self.action, self.destination, self.note]


def safe_folder_name(label):
    """``label`` as one folder name that cannot escape its parent (no separators, not ``..``)."""
    name = "".join("_" if c in '/\\\0' else c for c in str(label)).strip()
    return name if name not in ("", ".", "..") else "_" + name


def check_locations(source_dir, into):
    """Refuse a destination that is the source folder or lies inside it.

    Raises
    ------
    ParameterError
    """
    src = Path(source_dir).resolve()
    dst = Path(into).resolve()
    if dst == src:
        raise ParameterError(f"--into {str(into)!r} is the music folder itself: choose a folder outside it")
    if src in dst.parents:
        raise ParameterError(
            f"--into {str(into)!r} lies inside the music folder {str(source_dir)!r}: "
            "choose a folder outside it, or sorted files would be found again as sources"
        )


def ensure_writable(into):
    """Create ``into`` if needed and prove a file can be written there, before any file moves.

    Raises
    ------
    SortError
    """
    into = Path(into)
    try:
        into.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=_PART_PREFIX + "probe-", dir=into)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SortError(
            f"cannot write into {str(into)!r}: {exc.strerror or exc}; choose a writable destination"
        ) from None


def clean_partials(into):
    """Remove temporary files a killed run left in ``into`` and ``into/<label>/``; returns how many."""
    into = Path(into)
    if not into.is_dir():
        return 0
    folders = [into, *(sub for sub in into.iterdir() if sub.is_dir() and not sub.is_symlink())]
    n = 0
    for folder in folders:
        for f in folder.glob(_PART_PREFIX + "*"):
            try:
                f.unlink()
                n += 1
            except OSError:
                pass
    return n


def _sha256(path, bufsize=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(bufsize):
            h.update(chunk)
    return h.digest()


def _same_content(a, b):
    try:
        if os.path.samefile(a, b):
            return True
        if os.path.getsize(a) != os.path.getsize(b):
            return False
    except OSError:
        return False
    return _sha256(a) == _sha256(b)


def _candidates(dest_dir, name):
    stem, suffix = os.path.splitext(name)
    yield dest_dir / name
    i = 1
    while True:
        yield dest_dir / f"{stem} ({i}){suffix}"
        i += 1


def _is_our_link(cand, src):
    return cand.is_symlink() and Path(os.readlink(cand)) == src.resolve()


def _holds(dest, src, mode):
    """Whether ``dest`` already holds ``src`` as ``mode`` would have put it there."""
    if not os.path.lexists(dest):
        return False
    if mode == "link":
        return _is_our_link(dest, src)
    return not dest.is_symlink() and _same_content(src, dest)


def _copy_verified(src, dest_dir):
    """Copy ``src`` to a temporary file in ``dest_dir``, fsync it and check it; return its path."""
    fd, tmp = tempfile.mkstemp(prefix=_PART_PREFIX, dir=dest_dir)
    os.close(fd)
    tmp = Path(tmp)
    try:
        shutil.copy2(src, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if os.path.getsize(tmp) != os.path.getsize(src) or _sha256(tmp) != _sha256(src):
            raise SortError(f"copy of {str(src)!r} does not match the original (size or SHA-256): source left in place")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _link_no_clobber(existing, cand):
    """Give ``existing``'s inode the name ``cand``; False if ``cand`` exists. Raises OSError otherwise."""
    try:
        os.link(existing, cand)
        return True
    except FileExistsError:
        return False


def _rename_no_clobber(src, cand):
    """Rename when hard links are not available: check, then rename (documented small race)."""
    if os.path.lexists(cand):
        return False
    os.rename(src, cand)
    return True


_NO_HARDLINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV}


def place(src, dest_dir, mode, *, earlier=None, intent=None):
    """Put ``src`` into ``dest_dir`` by ``mode`` without overwriting anything.

    Parameters
    ----------
    src : Path
        A regular file (or, in copy/link mode, a symlink to one).
    dest_dir : Path
        Created if missing.
    mode : {"copy", "link", "move"}
    earlier : Path, optional
        Where an earlier, possibly interrupted, run put (or was putting) ``src``. If it holds
        ``src`` already, nothing is copied again (for ``move``, the source name left behind is
        removed).
    intent : callable(Path), optional
        Called with the chosen name just before anything is written there (the journal).

    Returns
    -------
    destination : Path
    action : str
        ``"copied"``, ``"linked"``, ``"moved"`` or ``"already-there"``.
    """
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    src = Path(src)
    dest_dir = Path(dest_dir)
    if earlier is not None and Path(earlier).parent == dest_dir and _holds(Path(earlier), src, mode):
        if mode == "move":
            src.unlink()
            return Path(earlier), "moved"
        return Path(earlier), "already-there"
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        for cand in _candidates(dest_dir, src.name):
            if os.path.lexists(cand):
                continue
            if intent is not None:
                intent(cand)
            if mode == "link":
                try:
                    os.symlink(src.resolve(), cand)
                except FileExistsError:
                    continue
                return cand, "linked"
            if mode == "move" and tmp is None:
                try:
                    if not _link_no_clobber(src, cand):
                        continue
                    src.unlink()
                    return cand, "moved"
                except OSError as exc:
                    if exc.errno not in _NO_HARDLINK:
                        raise
                    if exc.errno != errno.EXDEV:  # same filesystem, no hard links: plain rename
                        if _rename_no_clobber(src, cand):
                            return cand, "moved"
                        continue
            if tmp is None:
                tmp = _copy_verified(src, dest_dir)
            try:
                placed = _link_no_clobber(tmp, cand)
            except OSError as exc:
                if exc.errno not in _NO_HARDLINK:
                    raise
                placed = _rename_no_clobber(tmp, cand)
            if not placed:
                continue
            if mode == "move":
                src.unlink()
                return cand, "moved"
            return cand, "copied"
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    raise AssertionError("unreachable")  # pragma: no cover


def _read_journal(into):
    """``{source: SortEntry}``: the last record for each source in the journal (intent or done)."""
    path = Path(into) / JOURNAL_NAME
    last = {}
    if not path.is_file():
        return last
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) != 1 + len(REPORT_FIELDS) or row[0] not in ("intent", "done"):
                continue  # a line cut short by a kill, or foreign text
            conf = float(row[3]) if row[3] else None
            last[row[1]] = SortEntry(row[1], row[2], conf, row[4] if row[0] == "done" else "", row[5], row[6])
    return last


class Sorter:
    """Carry out (or, with ``dry_run``, describe) a sort of ``source_dir`` into ``into``.

    Call :meth:`start`, then :meth:`apply` for each decided file, then :meth:`finish` to write
    the report. Every step is recorded in the journal ``into/.audiogmm-sort-journal.tsv``
    (an *intent* line before a file is written under a name, a *done* line after), which is how a
    re-run recognises finished and half-finished work. See the module docstring.
    """

    def __init__(self, source_dir, into, *, mode="copy", dry_run=False):
        if mode not in MODES:
            raise ParameterError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.source_dir = Path(os.path.abspath(source_dir))
        self.into = Path(into)
        self.mode = mode
        self.dry_run = dry_run
        self.entries = []
        self.report_path = None
        self._journal = None
        self._earlier = {}

    def start(self):
        """Check the destination is writable and clean up after a killed run (not in dry run)."""
        if self.dry_run:
            return
        ensure_writable(self.into)
        clean_partials(self.into)
        self._earlier = _read_journal(self.into)
        self._journal = open(self.into / JOURNAL_NAME, "a", newline="", encoding="utf-8")

    def _record(self, kind, entry):
        if self._journal is not None:
            csv.writer(self._journal, delimiter="\t", lineterminator="\n").writerow([kind, *entry.row()])
            self._journal.flush()
            os.fsync(self._journal.fileno())

    def apply(self, source, decision, confidence=None, note=""):
        """Place one file according to ``decision`` (a label or "unknown") or record why not."""
        source = Path(os.path.abspath(source))
        entry = SortEntry(str(source), decision, confidence, note=note)
        if decision in ("unreadable", "not-audio"):
            entry.action = "left"
        elif self.mode == "move" and source.is_symlink():
            entry.action, entry.note = "left", "a symbolic link: not moved (its target may be elsewhere)"
        elif self.dry_run:
            entry.action = f"would-{self.mode}"
            entry.destination = str(self.into / safe_folder_name(decision) / source.name)
        else:
            before = self._earlier.get(str(source))

            def intent(cand):
                self._record("intent", SortEntry(str(source), decision, confidence, "", str(cand)))

            try:
                dest, entry.action = place(
                    source, self.into / safe_folder_name(decision), self.mode,
                    earlier=Path(before.destination) if before and before.destination else None, intent=intent,
                )
                entry.destination = str(dest)
            except (OSError, SortError) as exc:
                entry.action = "failed"
                entry.note = str(exc)
        self.entries.append(entry)
        self._record("done", entry)
        return entry

    def all_entries(self):
        """This run's entries, plus files of ``source_dir`` that an earlier run moved away."""
        seen = {e.source for e in self.entries}
        earlier = [
            e for src, e in self._earlier.items()
            if src not in seen and e.action == "moved" and not os.path.lexists(src)
            and self.source_dir in Path(src).parents
        ]
        return sorted([*earlier, *self.entries], key=lambda e: e.source)

    def finish(self, report_path=None):
        """Write the CSV report atomically (not in dry run); returns the entries."""
        entries = self.all_entries()
        if self.dry_run:
            return entries
        if self._journal is not None:
            self._journal.close()
        report = Path(report_path) if report_path else self.into / "audiogmm-sort-report.csv"
        def write(fh):
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(REPORT_FIELDS)
            w.writerows(e.row() for e in entries)

        write_atomically(report, write, text=True, prefix=_PART_PREFIX, suffix="")
        self.report_path = report
        return entries
