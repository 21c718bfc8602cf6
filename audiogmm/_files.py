"""Writing a file atomically: a temporary file in the destination folder, then a rename.

Shared by the model file, the feature cache and the sort report, so that a crash or a full
disk never leaves a half-written file under its final name, nor a stray temporary file.
"""

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path, write, *, text=False, fsync=True, prefix=None, suffix=".tmp"):
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it over ``path``.

    Parameters
    ----------
    path : str or Path
    write : callable(file object)
        Writes the content.
    text : bool, default=False
        Open the temporary file as UTF-8 text (newline="") instead of binary.
    fsync : bool, default=True
        Flush the content to disk before the rename (durability across a power loss).
    prefix, suffix : str, optional
        Of the temporary file's name (default prefix: ``.<name>.``).

    Raises
    ------
    Whatever ``write`` or the file system raises; the temporary file is removed first.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=prefix if prefix is not None else f".{path.name}.", suffix=suffix, dir=folder)
    try:
        with (os.fdopen(fd, "w", newline="", encoding="utf-8") if text else os.fdopen(fd, "wb")) as fh:
            write(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
