"""Finding recordings: folder-per-label datasets, manifests, and files to classify.

A *labelled dataset* is either

- a folder with one sub-folder per class: ``DATA/<label>/**/*.wav`` (the label is the
  sub-folder's name; audio is found recursively inside it; files directly in ``DATA``,
  hidden folders and sub-folders holding no audio file at all, such as ``LICENSES/``, are
  passed over; an *empty* sub-folder is an empty class, which is an error), or
- a manifest file (``.csv``, ``.tsv`` or ``.txt``) whose header names a ``path`` and a
  ``label`` column (other columns are ignored). Paths are relative to the manifest's folder
  unless absolute. A headerless manifest with exactly two columns is read as ``path,label``.
  The delimiter is a tab for ``.tsv`` and otherwise sniffed (comma, tab or semicolon).

Manifests are read by one reader, :func:`read_manifest` (used by :func:`discover` and by
:func:`audiogmm.evaluation.group_keys` for extra columns such as a speaker). Lines that are
blank or start with ``#`` are comments. A line longer than :data:`MAX_MANIFEST_LINE`
characters, a quoted field holding a line break, or a row without a path and a label is a
:class:`~audiogmm.exceptions.ParameterError` naming the manifest and the line.

Folders are walked without recursion (any depth) and without following symbolic links to
folders (so a link loop cannot trap the walk); a folder that cannot be read is named, never
taken for an empty one. File names need not be UTF-8: they are kept as Python keeps them
(``os.fsdecode``) and shown with :func:`display_path`.

``include`` / ``exclude`` glob patterns (:mod:`fnmatch`, ``*`` also matches ``/``) filter
rows by their path relative to the dataset root, e.g. ``exclude=["*_[0-4].wav"]``.

Audio files are recognised by their ending (:func:`audiogmm.audio.is_audio_path`).
This module only reads folder listings and manifests; it never decodes audio.
"""

import csv
import fnmatch
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from .audio import display_path, is_audio_path
from .exceptions import DatasetWarning, ParameterError, TrainingError

__all__ = ["Recording", "discover", "find_audio", "kept", "unique_paths", "read_manifest", "display_path", "MANIFEST_SUFFIXES",
           "MAX_MANIFEST_LINE"]

#: Endings of files read as manifests.
MANIFEST_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})

#: Longest manifest line accepted (characters). Far above any path (Linux's PATH_MAX is 4096)
#: plus label, and below the csv module's own field limit (131072), which would otherwise
#: end the read with a bare ``_csv.Error``.
MAX_MANIFEST_LINE = 65536


@dataclass(frozen=True)
class Recording:
    """One labelled recording: its ``path``, its ``label`` and ``name``, the path shown to users."""

    path: Path
    label: str
    name: str


def _why(exc):
    """An OSError in a user's words: "permission denied", else its strerror."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or str(exc)).lower()


def _walk(top, unreadable):
    """Every non-folder entry below ``top``, depth first, each folder's entries sorted by name.

    The same order as ``os.walk(top)`` with sorted names (a folder's files before its
    sub-folders'), but with an explicit stack, so any depth works (``os.walk`` and
    ``Path.rglob`` recurse and raise RecursionError about 1,000 levels down). Hidden entries
    are passed over, symbolic links to folders are not followed (no loop can trap the walk),
    and links to files are listed like files. A folder that cannot be listed is appended to
    ``unreadable`` as ``(folder, reason)``.
    """
    stack = [Path(top)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            unreadable.append((folder, _why(exc)))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
                is_link = is_dir and entry.is_symlink()
            except OSError:
                is_dir = is_link = False
            if not is_dir:
                yield Path(entry.path)
            elif not is_link:
                subfolders.append(Path(entry.path))
        stack.extend(reversed(subfolders))


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def kept(name, include=(), exclude=()):
    """Whether a recording named ``name`` (its path relative to its folder or manifest) passes
    ``--include`` (any pattern, when given) and ``--exclude`` (none): the one rule of every command.

    Examples
    --------
    >>> kept("rock/a.wav", include=["rock/*"]), kept("rock/a_1.wav", exclude=["*_1.wav"])
    (True, False)
    """
    return (not include or _matches(name, include)) and not _matches(name, exclude)


def discover(source, *, include=(), exclude=()):
    """List the labelled recordings of a dataset folder or manifest.

    Parameters
    ----------
    source : str or Path
        A folder with one sub-folder per label, or a ``.csv``/``.tsv``/``.txt`` manifest.
    include : sequence of str, default=()
        Keep only rows whose relative path matches one of these glob patterns (all if empty).
    exclude : sequence of str, default=()
        Drop rows whose relative path matches one of these glob patterns.

    Returns
    -------
    recordings : list of Recording
        Sorted by label, then path. Files listed in a manifest are not checked for existence
        here: a missing one fails (and is reported) when it is decoded.

    Raises
    ------
    ParameterError
        ``source`` does not exist, is neither a folder nor a manifest, has no labelled
        recording, or a manifest is malformed.
    TrainingError
        A label sub-folder is empty (an empty class). A sub-folder holding files but no audio
        (licences, artwork) is not a class: it is passed over with a warning.

    Examples
    --------
    >>> rows = discover("SONGS/", exclude=["*/live/*"])  # doctest: +SKIP
    >>> rows[0].label, rows[0].path  # doctest: +SKIP
    ('blues', PosixPath('SONGS/blues/track01.mp3'))
    """
    source = Path(source)
    if not source.exists():
        raise ParameterError(f"dataset {display_path(source)!r} does not exist: give a folder with one sub-folder per label, or a manifest file")
    if source.is_dir():
        rows = _discover_folder(source)
        kind = f"folder {display_path(source)!r}"
        hint = "put recordings in one sub-folder per label, e.g. DATA/<label>/clip.wav"
    elif source.suffix.lower() in MANIFEST_SUFFIXES:
        rows = read_manifest(source)[0]
        kind = f"manifest {display_path(source)!r}"
        hint = "list one 'path,label' row per recording"
    else:
        raise ParameterError(
            f"dataset {display_path(source)!r} is neither a folder nor a manifest (.csv, .tsv, .txt)"
        )
    if not rows:
        raise ParameterError(f"{kind} holds no labelled audio file: {hint}")
    rows = [r for r in rows if kept(r.name, include, exclude)]
    if not rows:
        raise ParameterError(f"no recording of {kind} is left after --include/--exclude: check the patterns")
    return sorted(rows, key=lambda r: (r.label, r.name))


def _discover_folder(root):
    rows, empty, unreadable, loose = [], [], [], []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise ParameterError(f"cannot read dataset folder {display_path(root)!r}: {_why(exc)}") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if not is_dir:
            if is_audio_path(entry.name):
                loose.append(entry.name)
            continue
        sub = Path(entry.path)
        bad = []
        files = [p for p in _walk(sub, bad) if p.is_file()]
        unreadable += bad
        found = [Recording(p, sub.name, p.relative_to(root).as_posix()) for p in files if is_audio_path(p)]
        if files and not found:
            warnings.warn(
                f"passed over folder {display_path(sub)!r}: it holds {len(files)} file(s) but no audio, so it is "
                "not a class", DatasetWarning, stacklevel=3,
            )
        elif not found and not bad:
            empty.append(sub)
        rows.extend(found)
    if unreadable:
        raise TrainingError(
            f"folder(s) {', '.join(f'{display_path(f)!r} ({why})' for f, why in unreadable)} of dataset "
            f"{display_path(root)!r} cannot be read: fix their permissions or move them out of the dataset"
        )
    if rows and empty:
        raise TrainingError(
            f"class folder(s) {', '.join(repr(display_path(e)) for e in empty)} are empty: add recordings "
            f"(.wav, .flac, .ogg, .mp3, ...) to them or remove them from {display_path(root)!r}"
        )
    if rows and loose:
        warnings.warn(
            f"{len(loose)} audio file(s) directly in {display_path(root)!r} are not used ("
            f"{', '.join(display_path(n) for n in sorted(loose)[:5])}{', ...' if len(loose) > 5 else ''}): only its "
            "sub-folders are classes (DATA/<label>/clip.wav); move them into the sub-folder of their label",
            DatasetWarning, stacklevel=3,
        )
    return rows


def _sniff_dialect(path, sample):
    if path.suffix.lower() == ".tsv":
        return "excel-tab"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;")
    except csv.Error:
        return "excel"


def _parse_line(path, lineno, line, dialect):
    """One manifest line as stripped cells; a quote left open (a line break in a field) is an error."""
    where = f"manifest {display_path(path)!r}, line {lineno}"
    try:
        (row,) = csv.reader([line], dialect, strict=True)
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise ParameterError(
                f"{where}: a quoted field is not closed on its line (a path or label holding a line break "
                "is not supported): close the quote or rename the file"
            ) from None
        try:
            (row,) = csv.reader([line], dialect)  # other oddities are read as before (lenient)
        except csv.Error as exc2:
            raise ParameterError(f"{where}: cannot be read as a row ({exc2}): fix or remove the line") from None
    return [cell.strip() for cell in row]


def read_manifest(path):
    """Read a manifest: its recordings, its header, and every row's cells by column.

    The one manifest reader of the package (see the module notes for the format).

    Parameters
    ----------
    path : str or Path
        A ``.csv``, ``.tsv`` or ``.txt`` file.

    Returns
    -------
    rows : list of Recording
        In file order; paths relative to the manifest's folder unless absolute.
    columns : list of str
        The header's column names as written (stripped), or ``[]`` for a headerless
        two-column manifest.
    cells : list of dict
        For each row, ``{column: value}`` over the header's columns that the row has
        (empty dicts without a header).

    Raises
    ------
    ParameterError
        The file cannot be read or is not UTF-8, has no usable header, a line is longer
        than :data:`MAX_MANIFEST_LINE`, a quoted field spans lines, or a row lacks a path or
        a label; the message names the manifest and the line.

    Examples
    --------
    >>> rows, columns, cells = read_manifest("DATA.tsv")  # doctest: +SKIP
    >>> columns, cells[0]["speaker"]  # doctest: +SKIP
    (['path', 'label', 'speaker'], 'theo')
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"cannot read manifest {display_path(path)!r}: {exc}") from None
    # Universal newlines, but only \n, \r\n and \r: str.splitlines() would also split at
    # characters a file name may hold (\x1c-\x1e, \x85, \u2028...).
    numbered = []
    for lineno, line in enumerate(io.StringIO(text, newline=None).read().split("\n"), start=1):
        if len(line) > MAX_MANIFEST_LINE:
            raise ParameterError(
                f"manifest {display_path(path)!r}, line {lineno}: {len(line)} characters, more than the "
                f"{MAX_MANIFEST_LINE} allowed; no path and label are that long: fix or remove the line"
            )
        if line.strip() and not line.lstrip().startswith("#"):
            numbered.append((lineno, line))
    if not numbered:
        return [], [], []
    dialect = _sniff_dialect(path, "\n".join(line for _, line in numbered[:20]))
    first_line, head = numbered[0][0], _parse_line(path, numbered[0][0], numbered[0][1], dialect)
    header = [cell.lower() for cell in head]
    if "path" in header and "label" in header:
        ip, il = header.index("path"), header.index("label")
        body, columns = numbered[1:], head
    elif len(header) == 2:
        ip, il = 0, 1
        body, columns = numbered, []
    else:
        raise ParameterError(
            f"manifest {display_path(path)!r} needs a header with 'path' and 'label' columns "
            f"(got {head!r} on line {first_line}), or exactly two columns path,label"
        )
    base = path.parent
    rows, cells = [], []
    for lineno, line in body:
        row = head if lineno == first_line else _parse_line(path, lineno, line, dialect)
        if len(row) <= max(ip, il) or not row[ip] or not row[il]:
            raise ParameterError(
                f"manifest {display_path(path)!r}, line {lineno}: expected a path and a label, got {row!r}"
            )
        if "\x00" in row[ip]:
            raise ParameterError(
                f"manifest {display_path(path)!r}, line {lineno}: the path holds a NUL character, which no "
                "file name can: fix the line"
            )
        rel = Path(row[ip])
        rows.append(Recording(rel if rel.is_absolute() else base / rel, row[il], rel.as_posix()))
        cells.append(dict(zip(columns, row)))
    return rows, columns, cells


def unique_paths(paths):
    """``paths`` without repeats of the same file (by absolute path), in their first order.

    Examples
    --------
    >>> unique_paths(["a.wav", "./a.wav", "b.wav"])
    [PosixPath('a.wav'), PosixPath('b.wav')]
    """
    out, seen = [], set()
    for p in paths:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            out.append(Path(p))
    return out


def find_audio(paths, *, with_other=False):
    """Expand files and folders into the audio files to classify.

    Folders are walked at any depth in sorted order, without following symbolic links to
    folders (so a link loop cannot trap the walk) and passing over hidden entries; symbolic
    links to files are listed like files. Files given explicitly are kept whatever their ending.
    A folder that cannot be read is passed over with a
    :class:`~audiogmm.exceptions.DatasetWarning` naming it.

    Parameters
    ----------
    paths : sequence of str or Path
    with_other : bool, default=False
        Return the non-audio files themselves instead of their count.

    Returns
    -------
    audio : list of Path
        Audio files, in the order given (each folder's files sorted), without duplicates.
    other : int or list of Path
        Non-audio files inside the folders that were passed over (cover art, playlists...):
        their number, or the files when ``with_other`` is true.

    Raises
    ------
    ParameterError
        A path does not exist.
    """
    audio, other = [], []
    for p in map(Path, paths):
        if not p.exists():
            raise ParameterError(f"path {str(p)!r} does not exist")
        found = [p]
        if p.is_dir():
            found, unreadable = [], []
            for f in _walk(p, unreadable):
                (found if is_audio_path(f) else other).append(f)
            for folder, why in unreadable:
                warnings.warn(f"passed over folder {display_path(folder)!r}: it cannot be read ({why})",
                              DatasetWarning, stacklevel=2)
        audio += found
    return unique_paths(audio), (other if with_other else len(other))
