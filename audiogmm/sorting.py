"""Putting files into ``OUT_DIR/<label>/`` without ever losing, overwriting or duplicating one.

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
  a killed run are removed by the next run (never those of a run still going).
- **A source is deleted only after its destination is verified at that moment**: within one
  filesystem a move is a hard link followed by removing the source name once both names are
  seen to be one inode (never two copies of data nor zero); across filesystems it is copy,
  verify, place, verify the placed file again (size and SHA-256, the source unchanged since it
  was read), then delete the source. On filesystems without hard links a move falls back to
  :func:`os.rename` after checking that the name is free.
- **Resumable, and never on the journal's word alone.** Every step is journalled in
  ``OUT_DIR/.audiogmm-sort-journal.tsv``: an *intent* line, flushed to disk, before a name is
  written (it names the inode that will appear there), a *done* line after. A re-run finds, for
  each source, where an earlier run put (or was putting) it. A ``move`` removes the source left
  behind only if that name still holds the very inode the journal names (or the source's own)
  *and* its content equals the source now; a file the user had there, even with equal bytes, is
  left alone and the source is placed under a free name. A ``copy`` or ``link`` finds its
  earlier copy (equal bytes) or link and writes nothing again. So re-running after an
  interruption, or after a finished run, ends in the same state as one uninterrupted run, and the
  report of a resumed ``move`` lists every file moved before the interruption, including one
  whose *done* line the interruption cut off.
- **Refused before any work**: a destination that is, lies inside, or (through a label's folder)
  is or contains the music folder (for a manifest's recordings: a destination that holds one of
  them, or a label folder that is or contains one's folder; :func:`check_listed_locations`);
  labels that are not safe folder names; a ``move`` whose sources cannot be removed (a folder
  that is not writable); a journal with a bad line.
- **A full disk or quota** (``ENOSPC``, ``EDQUOT``, ``EFBIG``) stops the run with a
  :class:`SortError`; nothing half-written is left under a final name and the journal stays
  consistent, so the same command run again resumes.
- **Dry run** touches nothing: no folder, no file, no journal, no report.

Permissions of copies: like ``cp`` without ``-p``, a copy gets the source's permission bits less
the umask (a private source stays private; the umask can only narrow them); its modification
time is the source's. The report gets the permissions any new file gets (see
:mod:`audiogmm._files`).

Names that are not UTF-8 are handled as the bytes they are: the journal escapes them (it is
ASCII), the CSV report holds their exact bytes, and :func:`display_path` shows them readably.

Journal format: one record a line, eight tab-separated fields (``kind``, then the six report
fields, then the placed inode as ``dev:ino``), each escaped as the inside of a JSON string
(ASCII; tabs, newlines, backslashes and undecodable bytes escaped). Lines of seven fields (from
before the inode was recorded) are read too; their placements are never trusted for a move.
"""

import csv
import errno
import hashlib
import json
import math
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .audio import display_path
from ._files import (check_class_names, create_temporary, is_stale_temporary, write_atomically)
from .exceptions import AudiogmmError, ParameterError

__all__ = [
    "SortError", "SortEntry", "MODES", "JOURNAL_NAME", "REPORT_FIELDS", "safe_folder_name", "check_labels",
    "check_locations", "check_listed_locations", "check_removable", "display_path", "place", "Sorter",
]

MODES = ("copy", "link", "move")
_PART_PREFIX = ".audiogmm-part-"
JOURNAL_NAME = ".audiogmm-sort-journal.tsv"
REPORT_FIELDS = ("source", "decision", "confidence", "action", "destination", "note")
_ACTIONS = ("copied", "linked", "moved", "already-there", "left", "failed")
# decisions that leave the file where it is (any other decision is a label folder)
_LEFT = ("unreadable", "not-audio", "excluded")
# a full disk or quota, or a file larger than the destination takes: every later file would fail too
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_MAX_JOURNAL_LINE = 1 << 20


class SortError(AudiogmmError):
    """The destination cannot be used, or a file could not be placed safely."""


@dataclass
class SortEntry:
    """One line of the sort report: what was decided for ``source`` and what was done."""

    source: str
    decision: str  # a label, "unknown", "unreadable", "not-audio" or "excluded" (by --include/--exclude)
    confidence: float | None = None
    action: str = ""  # copied, linked, moved, already-there, left, failed, missing, would-copy, ...
    destination: str = ""
    note: str = ""

    def row(self):
        conf = "" if self.confidence is None else f"{self.confidence:.4f}"
        return [self.source, self.decision, conf, self.action, self.destination, self.note]


def check_labels(labels):
    """Refuse labels that cannot each be one safe folder name (see :func:`audiogmm._files.check_class_names`).

    Also refuse the decisions sort gives files it leaves in place (``unreadable``, ``not-audio``,
    ``excluded``): a class of that name could not be told from them.

    Raises
    ------
    SortError
    """
    try:
        labels = check_class_names(labels, what="label")
    except ParameterError as exc:
        raise SortError(f"{exc} (labels come from the model file: retrain with other class names)") from None
    reserved = [lab for lab in labels if lab in _LEFT]
    if reserved:  # the report's decision column would not tell the class from the reason a file was left
        raise SortError(f"the model has class(es) {', '.join(map(repr, reserved))}, a name sort uses for files it "
                        f"leaves in place ({', '.join(_LEFT)}): retrain with other class names")
    return labels


def safe_folder_name(label):
    """``label`` itself, checked to be one folder name that cannot escape its parent nor hide.

    Raises
    ------
    SortError
        ``label`` is empty, ``.`` or ``..``, holds a separator, NUL or control character, or
        starts with a dot.
    """
    return check_labels([label])[0]


def _ancestors_and_self(path):
    return [path, *path.parents]


def _same_dir(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside_or_equal(inner, outer):
    """Whether folder ``inner`` (which may not exist yet) is ``outer`` or lies inside it.

    Checked on resolved paths and, for the parts that exist, by identity (bind mounts, links).
    """
    inner, outer = Path(os.path.realpath(inner)), Path(os.path.realpath(outer))
    if inner == outer or outer in inner.parents:
        return True
    return any(_same_dir(a, outer) for a in _ancestors_and_self(inner) if os.path.isdir(a))


def check_locations(source_dir, into, labels=()):
    """Refuse a destination that is the source folder, lies inside it, or meets it through a label.

    Parameters
    ----------
    source_dir, into : str or Path
    labels : iterable of str
        The folders that will be made in ``into`` (the model's classes and ``unknown``).

    Raises
    ------
    ParameterError
        ``into`` is the music folder or inside it.
    SortError
        A label's folder ``into/<label>`` is the music folder, inside it, or contains it (files
        would be written among the sources, and found again by every re-run).
    """
    if _inside_or_equal(into, source_dir):
        if _inside_or_equal(source_dir, into):
            raise ParameterError(f"--into {str(into)!r} is the music folder itself: choose a folder outside it")
        raise ParameterError(
            f"--into {str(into)!r} lies inside the music folder {str(source_dir)!r}: "
            "choose a folder outside it, or sorted files would be found again as sources"
        )
    for label in labels:
        folder = Path(into) / label
        if _inside_or_equal(folder, source_dir) or _inside_or_equal(source_dir, folder):
            raise SortError(
                f"--into {str(into)!r}: the folder for label {label!r}, {str(folder)!r}, is or contains the "
                f"music folder {str(source_dir)!r}; files would be sorted in among their sources: "
                "choose a destination apart from the music folder"
            )


def check_listed_locations(files, into, labels=()):
    """Refuse a destination that holds a recording to sort, or meets one's folder through a label.

    The check of a sort whose sources are listed (a manifest's recordings) rather than found
    under a folder (:func:`check_locations`): a destination *beside* the recordings, or inside
    their folder, is fine, since only the listed files are sources.

    Parameters
    ----------
    files : iterable of str or Path
        The recordings to sort (they need not exist).
    into : str or Path
    labels : iterable of str
        The folders that will be made in ``into``.

    Raises
    ------
    ParameterError
        A recording lies inside ``into``: a re-run would sort the sorted files again, and a copy
        could be placed beside its own source.
    SortError
        A label's folder ``into/<label>`` is, or contains, a recording's folder (through a
        link or a mount): files would be placed in among their sources.
    """
    folders = {}  # each recording's folder, once, with one of its recordings to name
    for f in files:
        folders.setdefault(Path(os.path.abspath(f)).parent, f)
    for folder, f in folders.items():
        if _inside_or_equal(folder, into):
            raise ParameterError(
                f"--into {str(into)!r} holds {display_path(f)!r}, a recording to sort: choose a folder that "
                "holds none of them, or a re-run would sort the sorted files again"
            )
    for label in labels:
        target = Path(into) / label
        if not os.path.lexists(target):
            continue  # made inside ``into``, which holds no recording (checked above)
        for folder, f in folders.items():
            if _inside_or_equal(folder, target):
                raise SortError(
                    f"--into {str(into)!r}: the folder for label {label!r}, {str(target)!r}, is or contains the "
                    f"folder of {display_path(f)!r}, a recording to sort; files would be sorted in among their "
                    "sources: choose a destination apart from the recordings"
                )


def check_removable(paths):
    """Refuse a ``move`` whose sources could not be removed, before anything is placed.

    A file can be removed when its folder is writable and searchable, and, in a sticky folder
    (like ``/tmp``), when the file or the folder is ours.

    Raises
    ------
    SortError
        Naming how many files, the first such folder, and what to do.
    """
    bad, checked = [], {}
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    for p in map(Path, paths):
        if p.is_symlink():
            continue  # links are not moved
        folder = p.parent
        if folder not in checked:
            ok = os.access(folder, os.W_OK | os.X_OK)
            sticky = False
            if ok and euid not in (None, 0):
                try:
                    st = os.stat(folder)
                    sticky = bool(st.st_mode & stat.S_ISVTX) and st.st_uid != euid
                except OSError:
                    ok = False
            checked[folder] = (ok, sticky)
        ok, sticky = checked[folder]
        if ok and sticky:
            try:
                ok = os.lstat(p).st_uid == euid
            except OSError:
                ok = False
        if not ok:
            bad.append(p)
    if bad:
        raise SortError(
            f"--mode move cannot remove {len(bad)} file(s) from their folder (first: "
            f"{display_path(bad[0].parent)!r} is not writable for you): nothing was placed; make the "
            "folders writable, or use --mode copy"
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
    """Remove temporary files killed runs left in ``into`` and ``into/<label>/``; returns how many.

    Temporaries of a run still going (its process alive) are kept.
    """
    into = Path(into)
    if not into.is_dir():
        return 0
    folders = [into, *(sub for sub in into.iterdir() if sub.is_dir() and not sub.is_symlink())]
    n = 0
    for folder in folders:
        for f in folder.glob(_PART_PREFIX + "*"):
            if ".tmp-" in f.name and not is_stale_temporary(f.name):
                continue  # a live run's (a name without the tag is from an older version: stale)
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


def _identity(path):
    st = os.lstat(path)
    return f"{st.st_dev}:{st.st_ino}"


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
    """Whether ``dest`` already holds ``src`` as ``copy`` or ``link`` would have put it there."""
    if not os.path.lexists(dest):
        return False
    if mode == "link":
        return _is_our_link(dest, src)
    return not dest.is_symlink() and _same_content(src, dest)


def _ours(dest, src, identity):
    """Whether ``dest`` is the file an earlier run placed for ``src``: the inode it journalled, or src's own."""
    try:
        st = os.lstat(dest)
        if not stat.S_ISREG(st.st_mode):
            return False
        if os.path.samefile(src, dest):
            return True
    except OSError:
        return False
    return identity is not None and f"{st.st_dev}:{st.st_ino}" == identity


def _source_state(src):
    st = os.stat(src)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _copy_verified(src, dest_dir):
    """Copy ``src`` to a temporary file in ``dest_dir``, fsync it and check it.

    Returns the temporary's path, the source's SHA-256 and the source's state when it was read.
    """
    before = _source_state(src)
    st = os.stat(src)
    fd, tmp = create_temporary(dest_dir / src.name, prefix=_PART_PREFIX, suffix="", mode=stat.S_IMODE(st.st_mode) & 0o777)
    try:
        h = hashlib.sha256()
        with open(src, "rb") as fi, os.fdopen(fd, "wb") as fo:
            while chunk := fi.read(1 << 20):
                h.update(chunk)
                fo.write(chunk)
            fo.flush()
            os.fsync(fo.fileno())
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        digest = h.digest()
        if os.path.getsize(tmp) != before[2] or _sha256(tmp) != digest or _source_state(src) != before:
            raise SortError(f"copy of {display_path(src)!r} does not match the original (size or SHA-256, "
                            "or it changed while being copied): source left in place")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest, before


def _verify_before_delete(src, dest, identity, digest=None, state=None):
    """Check, just before ``src`` is deleted, that ``dest`` holds it; raise SortError if not.

    ``dest`` must be the inode we placed (``identity``) or src's own; unless it is src's own, its
    size and SHA-256 must equal the source's, now (``digest``/``state``: the source's hash and
    state when it was copied, reused when the source is unchanged since).
    """
    ok = _ours(dest, src, identity)
    if ok and not os.path.samefile(src, dest):
        if state is not None and _source_state(src) == state:
            ok = os.path.getsize(dest) == state[2] and _sha256(dest) == digest
        else:
            ok = _same_content(src, dest)
    if not ok:
        raise SortError(f"{display_path(dest)!r} does not hold {display_path(src)!r} as expected "
                        "(changed by someone else?): source left in place")


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


def place(src, dest_dir, mode, *, earlier=None, identity=None, intent=None):
    """Put ``src`` into ``dest_dir`` by ``mode`` without overwriting anything.

    Parameters
    ----------
    src : Path
        A regular file (or, in copy/link mode, a symlink to one).
    dest_dir : Path
        Created if missing.
    mode : {"copy", "link", "move"}
    earlier : Path, optional
        Where an earlier, possibly interrupted, run put (or was putting) ``src``. In copy/link
        mode, if it holds ``src`` already nothing is written again. In move mode, if it is the
        file that run placed (``identity``, or src's own inode) and its content equals the source
        now, the source name left behind is removed; otherwise it is left alone.
    identity : str, optional
        The inode (``"dev:ino"``) the earlier run journalled for ``earlier``.
    intent : callable(Path, str or None), optional
        Called with the chosen name and the inode about to appear there, just before anything
        is written there (the journal).

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
    intent = intent or (lambda cand, ident: None)
    if earlier is not None:
        earlier = Path(earlier)
        if mode == "move":
            if _ours(earlier, src, identity) and _same_content(src, earlier):
                src.unlink()
                return earlier, "moved"
        elif _holds(earlier, src, mode):
            return earlier, "already-there"
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        for cand in _candidates(dest_dir, src.name):
            if os.path.lexists(cand):
                continue
            if mode == "link":
                intent(cand, None)
                try:
                    os.symlink(src.resolve(), cand)
                except FileExistsError:
                    continue
                return cand, "linked"
            if mode == "move" and tmp is None:
                try:
                    intent(cand, _identity(src))
                    if not _link_no_clobber(src, cand):
                        continue
                    _verify_before_delete(src, cand, _identity(src))
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
                tmp, digest, state = _copy_verified(src, dest_dir)
                tmp_identity = _identity(tmp)
            intent(cand, tmp_identity)
            try:
                placed = _link_no_clobber(tmp, cand)
            except OSError as exc:
                if exc.errno not in _NO_HARDLINK:
                    raise
                placed = _rename_no_clobber(tmp, cand)
            if not placed:
                continue
            if mode == "move":
                _verify_before_delete(src, cand, tmp_identity, digest, state)
                src.unlink()
                return cand, "moved"
            return cand, "copied"
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    raise AssertionError("unreachable")  # pragma: no cover


# -- the journal ------------------------------------------------------------------------------
def _escape(text):
    return json.dumps(text, ensure_ascii=True)[1:-1]


def _unescape(field):
    if '"' in field:
        raise ValueError("an unescaped quote")
    return json.loads('"' + field + '"')


def _journal_line(kind, entry, identity):
    return ("\t".join(_escape(f) for f in [kind, *entry.row(), identity or ""]) + "\n").encode("ascii")


_IDENTITY = re.compile(r"[0-9]{1,20}:[0-9]{1,20}")


def _check_record(fields, into):
    """The problem with one journal record's fields, or None; ``into`` is absolute."""
    kind, source, decision, conf, action, dest, _note = fields[:7]
    identity = fields[7] if len(fields) == 8 else ""
    if any("\0" in f for f in fields):
        return "a field holds a NUL character"
    if kind not in ("intent", "done"):
        return f"the record kind {kind!r} is neither 'intent' nor 'done'"
    if not os.path.isabs(source) or os.path.normpath(source) != source:
        return f"the source {display_path(source)!r} is not an absolute, normalised path"
    try:
        check_class_names([decision], what="decision")
    except ParameterError as exc:
        return str(exc)
    if conf:
        try:
            value = float(conf)
        except ValueError:
            return f"the confidence {conf!r} is not a number"
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            return f"the confidence {conf!r} is not within [0, 1]"
    if kind == "intent" and action not in ("", *MODES):
        return f"the intent's mode {action!r} is not one of {', '.join(MODES)}"
    if kind == "done" and action not in _ACTIONS:
        return f"the action {action!r} is not one of {', '.join(_ACTIONS)}"
    if dest:
        p = Path(dest)
        if (not os.path.isabs(dest) or os.path.normpath(dest) != dest or p.parent.parent != into
                or p.name in ("", ".", "..")):
            return f"the destination {display_path(dest)!r} is not a file in a label folder of {str(into)!r}"
    elif kind == "intent" or action in ("copied", "linked", "moved", "already-there"):
        return "the destination is missing"
    if identity and not _IDENTITY.fullmatch(identity):
        return f"the inode {identity!r} is not of the form dev:ino"
    return None


def _read_journal(into):
    """Read and check the journal of ``into``.

    Returns
    -------
    last : dict
        ``{source: (SortEntry, identity or None)}``: the last record for each source. An intent
        record has the mode in its ``action``.
    good_end : int or None
        The byte offset just after the last complete line (a line cut short by a kill is
        ignored, and cut off before appending), or None without a journal.

    Raises
    ------
    SortError
        A complete line is not a valid record: names the journal and the line number.
    """
    into = Path(into)
    path = into / JOURNAL_NAME
    last = {}
    try:
        fh = open(path, "rb")
    except (FileNotFoundError, NotADirectoryError):
        return last, None
    except OSError as exc:
        raise SortError(f"cannot read the sort journal {str(path)!r}: {exc.strerror or exc}") from None
    good_end, n = 0, 0
    with fh:
        while raw := fh.readline(_MAX_JOURNAL_LINE + 1):
            n += 1
            if not raw.endswith(b"\n"):
                if len(raw) > _MAX_JOURNAL_LINE:
                    problem = f"the line is longer than {_MAX_JOURNAL_LINE} bytes"
                else:
                    break  # the last line, cut short by a kill: its step had not begun
            else:
                problem, rec = _parse_line(raw[:-1], into)
            if problem is None:
                entry, identity = rec
                last[entry.source] = (entry, identity)
                good_end += len(raw)
                continue
            raise SortError(
                f"sort journal {str(path)!r}, line {n}: {problem}. Nothing was moved. Fix or delete that line "
                "(or move the journal away to start afresh: files it records are then placed again under new "
                "names, none is lost) and run the command again"
            )
    return last, good_end


def _parse_line(raw, into):
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return "the line holds bytes that are not ASCII (the journal escapes every other character)", None
    fields = text.split("\t")
    if len(fields) not in (1 + len(REPORT_FIELDS), 2 + len(REPORT_FIELDS)):
        return f"{len(fields)} fields instead of {2 + len(REPORT_FIELDS)}", None
    try:
        fields = [_unescape(f) for f in fields]
    except ValueError as exc:
        return f"a field is not validly escaped ({exc})", None
    problem = _check_record(fields, into)
    if problem:
        return problem, None
    kind, source, decision, conf, action, dest, note = fields[:7]
    identity = (fields[7] if len(fields) == 8 else "") or None
    entry = SortEntry(source, decision, float(conf) if conf else None, action, dest, note)
    return None, (entry, identity)


class Sorter:
    """Carry out (or, with ``dry_run``, describe) a sort of ``source_dir`` (or of ``sources``) into ``into``.

    Call :meth:`start`, then :meth:`apply` for each decided file, then :meth:`finish` to write
    the report (and :meth:`close` in any case). Every step is recorded in the journal
    ``into/.audiogmm-sort-journal.tsv`` (an *intent* line before a file is written under a name,
    a *done* line after), which is how a re-run recognises finished and half-finished work. See
    the module docstring.

    Parameters
    ----------
    source_dir : str, Path or None
        The folder sorted: the report also lists the files under it that an earlier run moved
        away. None when ``sources`` is given.
    into : str or Path
    mode : {"copy", "link", "move"}, default="copy"
    dry_run : bool, default=False
    sources : iterable of str or Path, optional
        The files sorted, when they are listed (a manifest's recordings) rather than found under
        a folder: the report lists earlier-moved files only among these.
    """

    def __init__(self, source_dir, into, *, mode="copy", dry_run=False, sources=None):
        if mode not in MODES:
            raise ParameterError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if (source_dir is None) == (sources is None):
            raise ParameterError("give the Sorter exactly one of source_dir (a folder) and sources (listed files), "
                                 f"got source_dir={source_dir!r} and sources={'None' if sources is None else '...'}")
        self.source_dir = None if source_dir is None else Path(os.path.abspath(source_dir))
        self.sources = None if sources is None else frozenset(os.path.abspath(f) for f in sources)
        self.into = Path(os.path.abspath(into))
        self.mode = mode
        self.dry_run = dry_run
        self.entries = []
        self.report_path = None
        self._journal = None
        self._earlier = {}

    def start(self):
        """Check the journal, that the destination is writable, and clean up after a killed run.

        In a dry run only the journal is read (if there is one).

        Raises
        ------
        SortError
            The destination is not writable, or the journal holds a bad line.
        """
        self._earlier, good_end = _read_journal(self.into)
        if self.dry_run:
            return
        ensure_writable(self.into)
        clean_partials(self.into)
        path = self.into / JOURNAL_NAME
        try:
            self._journal = open(path, "ab")
            if good_end is not None and good_end < os.fstat(self._journal.fileno()).st_size:
                self._journal.truncate(good_end)  # a line cut short: appending would glue onto it
        except OSError as exc:
            self.close()
            raise self._error(exc, f"the journal {str(path)!r}") from None

    def close(self):
        """Close the journal (after :meth:`finish`, or when the run stops early)."""
        if self._journal is not None:
            try:
                self._journal.close()
            except OSError:
                pass  # its lines were fsynced one by one; a failing close loses nothing
            self._journal = None

    def _error(self, exc, what):
        if exc.errno in _FULL:
            return SortError(
                f"cannot write {what} in {str(self.into)!r}: {exc.strerror or exc}. The run stopped with nothing "
                "half-written; free some space (or choose a destination that takes files this large) and run "
                "the same command again: it resumes where it stopped"
            )
        return SortError(f"cannot write {what} in {str(self.into)!r}: {exc.strerror or exc}")

    def _record(self, kind, entry, identity=None):
        if self._journal is not None:
            self._journal.write(_journal_line(kind, entry, identity))
            self._journal.flush()
            os.fsync(self._journal.fileno())

    def apply(self, source, decision, confidence=None, note=""):
        """Place one file according to ``decision`` (a label or "unknown") or record why not.

        Raises
        ------
        SortError
            The destination is full (or over quota): the run must stop; see the module docstring.
        """
        source = Path(os.path.abspath(source))
        entry = SortEntry(str(source), decision, confidence, note=note)
        if decision in _LEFT:
            entry.action = "left"
        elif self.mode == "move" and source.is_symlink():
            entry.action, entry.note = "left", "a symbolic link: not moved (its target may be elsewhere)"
        elif self.dry_run:
            entry.action = f"would-{self.mode}"
            entry.destination = str(self.into / safe_folder_name(decision) / source.name)
        else:
            before, identity = self._earlier.get(str(source), (None, None))

            def intent(cand, ident):
                self._record("intent", SortEntry(str(source), decision, confidence, self.mode, str(cand)), ident)

            try:
                dest, entry.action = place(
                    source, self.into / safe_folder_name(decision), self.mode,
                    earlier=Path(before.destination) if before and before.destination else None,
                    identity=identity, intent=intent,
                )
                entry.destination = str(dest)
            except OSError as exc:
                if exc.errno in _FULL:
                    raise self._error(exc, f"{display_path(source.name)!r}") from None
                entry.action = "failed"
                entry.note = str(exc)
            except SortError as exc:
                entry.action = "failed"
                entry.note = str(exc)
        self.entries.append(entry)
        try:
            self._record("done", entry)
        except OSError as exc:
            raise self._error(exc, "the journal") from None
        return entry

    def moved_earlier(self, source):
        """Whether ``source`` is gone because an earlier run moved it (or was moving it when cut short).

        :meth:`all_entries` lists such a source from the journal: it is not to be classified nor
        :meth:`apply`-ed again (a listed recording that a resumed ``move`` no longer finds).
        Needs :meth:`start` first.
        """
        source = os.path.abspath(source)
        record = self._earlier.get(source)
        return record is not None and record[0].action in ("moved", "move") and not os.path.lexists(source)

    def _ours_to_list(self, src):
        if self.sources is not None:
            return src in self.sources
        return self.source_dir in Path(src).parents

    def all_entries(self):
        """This run's entries, plus files of ``source_dir`` (or of ``sources``) that an earlier run moved away.

        A source whose last record is a ``move`` intent and which is gone was moved by a run cut
        short before its *done* line: listed as moved if the journalled inode is at its
        destination, else as ``missing``.
        """
        seen = {e.source for e in self.entries}
        earlier = []
        for src, (e, identity) in self._earlier.items():
            if src in seen or not self.moved_earlier(src) or not self._ours_to_list(src):
                continue
            if e.action == "moved":
                earlier.append(e)
            elif e.action == "move":  # an intent
                dest = Path(e.destination)
                try:
                    placed = identity is not None and _identity(dest) == identity
                except OSError:
                    placed = False
                if placed:
                    earlier.append(SortEntry(src, e.decision, e.confidence, "moved", e.destination,
                                             "moved by an interrupted run"))
                else:
                    earlier.append(SortEntry(src, e.decision, e.confidence, "missing", e.destination,
                                             "an interrupted run was moving it there; it is in neither place"))
        return sorted([*earlier, *self.entries], key=lambda e: e.source)

    def finish(self, report_path=None):
        """Write the CSV report atomically (not in dry run); returns the entries.

        File names that are not UTF-8 are written as the bytes they are.
        """
        entries = self.all_entries()
        if self.dry_run:
            return entries
        self.close()
        report = Path(report_path) if report_path else self.into / "audiogmm-sort-report.csv"

        def write(fh):
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(REPORT_FIELDS)
            w.writerows(e.row() for e in entries)

        try:
            write_atomically(report, write, text=True, errors="surrogateescape", prefix=_PART_PREFIX, suffix="")
        except OSError as exc:
            raise self._error(exc, f"the report {str(report)!r}") from None
        self.report_path = report
        return entries
