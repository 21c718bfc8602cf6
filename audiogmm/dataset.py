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

``include`` / ``exclude`` glob patterns (:mod:`fnmatch`, ``*`` also matches ``/``) filter
rows by their path relative to the dataset root, e.g. ``exclude=["*_[0-4].wav"]``.

Audio files are recognised by their ending (:func:`audiogmm.audio.is_audio_path`).
This module only reads folder listings and manifests; it never decodes audio.
"""

import csv
import fnmatch
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from .audio import is_audio_path
from .exceptions import ParameterError, TrainingError

__all__ = ["Recording", "discover", "find_audio", "MANIFEST_SUFFIXES"]

#: Endings of files read as manifests.
MANIFEST_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})


@dataclass(frozen=True)
class Recording:
    """One labelled recording: its ``path``, its ``label`` and ``name``, the path shown to users."""

    path: Path
    label: str
    name: str


def _is_hidden(path, root):
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


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
        raise ParameterError(f"dataset {str(source)!r} does not exist: give a folder with one sub-folder per label, or a manifest file")
    if source.is_dir():
        rows = _discover_folder(source)
        kind = f"folder {str(source)!r}"
        hint = "put recordings in one sub-folder per label, e.g. DATA/<label>/clip.wav"
    elif source.suffix.lower() in MANIFEST_SUFFIXES:
        rows = _read_manifest(source)
        kind = f"manifest {str(source)!r}"
        hint = "list one 'path,label' row per recording"
    else:
        raise ParameterError(
            f"dataset {str(source)!r} is neither a folder nor a manifest (.csv, .tsv, .txt)"
        )
    if not rows:
        raise ParameterError(f"{kind} holds no labelled audio file: {hint}")
    if include:
        rows = [r for r in rows if _matches(r.name, include)]
    if exclude:
        rows = [r for r in rows if not _matches(r.name, exclude)]
    if not rows:
        raise ParameterError(f"no recording of {kind} is left after --include/--exclude: check the patterns")
    return sorted(rows, key=lambda r: (r.label, r.name))


def _discover_folder(root):
    rows, empty = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = [p for p in sorted(sub.rglob("*")) if p.is_file() and not _is_hidden(p, root)]
        found = [Recording(p, sub.name, p.relative_to(root).as_posix()) for p in files if is_audio_path(p)]
        if files and not found:
            warnings.warn(
                f"passed over folder {str(sub)!r}: it holds {len(files)} file(s) but no audio, so it is not a class",
                UserWarning, stacklevel=3,
            )
        elif not found:
            empty.append(sub)
        rows.extend(found)
    if rows and empty:
        raise TrainingError(
            f"class folder(s) {', '.join(repr(str(e)) for e in empty)} are empty: add recordings "
            f"(.wav, .flac, .ogg, .mp3, ...) to them or remove them from {str(root)!r}"
        )
    return rows


def _sniff_dialect(path, sample):
    if path.suffix.lower() == ".tsv":
        return "excel-tab"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;")
    except csv.Error:
        return "excel"


def _read_manifest(path):
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"cannot read manifest {str(path)!r}: {exc}") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    reader = csv.reader(lines, dialect=_sniff_dialect(path, "\n".join(lines[:20])))
    table = [[cell.strip() for cell in row] for row in reader]
    header = [cell.lower() for cell in table[0]]
    if "path" in header and "label" in header:
        ip, il = header.index("path"), header.index("label")
        body, first_line = table[1:], 2
    elif len(header) == 2:
        ip, il = 0, 1
        body, first_line = table, 1
    else:
        raise ParameterError(
            f"manifest {str(path)!r} needs a header with 'path' and 'label' columns "
            f"(got {table[0]!r}), or exactly two columns path,label"
        )
    base = path.parent
    rows = []
    for lineno, row in enumerate(body, start=first_line):
        if len(row) <= max(ip, il) or not row[ip] or not row[il]:
            raise ParameterError(f"manifest {str(path)!r}, row {lineno}: expected a path and a label, got {row!r}")
        rel = Path(row[ip])
        rows.append(Recording(rel if rel.is_absolute() else base / rel, row[il], rel.as_posix()))
    return rows


def find_audio(paths, *, with_other=False):
    """Expand files and folders into the audio files to classify.

    Folders are walked recursively in sorted order, without following symbolic links to
    folders (so a link loop cannot trap the walk) and passing over hidden entries; symbolic
    links to files are listed like files. Files given explicitly are kept whatever their ending.

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
    audio, other, seen = [], [], set()
    for p in map(Path, paths):
        if not p.exists():
            raise ParameterError(f"path {str(p)!r} does not exist")
        found = [p]
        if p.is_dir():
            found = []
            for folder, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    f = Path(folder) / name
                    (found if is_audio_path(f) else other).append(f)
        for f in found:
            key = os.path.abspath(f)
            if key not in seen:
                seen.add(key)
                audio.append(f)
    return audio, (other if with_other else len(other))
