"""Writing files atomically, with the permissions any new file gets, checking folder names, and
reading a stretch of a file whole (:func:`pread_into`, for the feature store and the EM's
per-frame state file).

Shared by the model file, the feature cache, the sort report and sort's copies, so that a crash
or a full disk never leaves a half-written file under its final name, and a temporary file a
killed process left behind is recognised and removed by the next write of the same file.

Permissions
-----------
A temporary file is created with ``os.open(..., 0o666)`` (or the mode a caller asks for), so the
kernel applies the process's umask and the folder's default ACL exactly as for any file a program
creates: under the usual umask ``022`` a new model file is ``0644``, under ``077`` it is ``0600``.
(:func:`tempfile.mkstemp` would always give ``0600``.) Reading the umask is not needed, and so
not racy. When the write *replaces* an existing file, the new file takes the old one's
permission bits, as an in-place ``open(path, "w")`` would: a file a user made private stays
private, and one they shared stays shared.

Temporary names
---------------
``<prefix><name>.tmp-<host>-<pid>-<token><suffix>`` in the target's folder: recognisable, tied to
the target, and to the process that writes it. A temporary is *stale* when it carries this
machine's host name and a process id that is no longer alive; only stale ones are ever removed
(never a live process's, nor one written from another machine sharing the folder). A process id
reused by a new process keeps its old temporary until that process ends: a leftover, never a loss.
"""

import os
import re
import secrets
import socket
import stat
from pathlib import Path

from .exceptions import ParameterError

__all__ = [
    "write_atomically", "create_temporary", "remove_stale_temporaries", "is_stale_temporary",
    "check_class_names", "pread_into",
]

# the target's name is cut to this many bytes in a temporary's name, so that the tag still fits
# in the 255 bytes most file systems allow for one name
_NAME_BYTES = 150
_TAG = re.compile(r"\.tmp-(?P<host>[A-Za-z0-9_]{1,32})-(?P<pid>[0-9]{1,10})-(?P<token>[0-9a-f]{8})")


def _host():
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname() or "localhost")[:32] or "localhost"


def _stem(path, prefix):
    name = os.fsencode(Path(path).name)[:_NAME_BYTES]
    return prefix + os.fsdecode(name)


def _alive(pid):
    if pid == os.getpid():
        return True  # another thread of this process may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's) or cannot tell: treat as alive
    return True


def is_stale_temporary(name):
    """Whether a file name is one of our temporaries, written on this machine by a process now gone.

    Parameters
    ----------
    name : str
        A file name (no folder).

    Returns
    -------
    bool
        False for any name that does not carry the tag (see the module docstring).
    """
    m = None
    for m in _TAG.finditer(name):
        pass  # the last tag in the name is ours; the target's own name may look like one
    return m is not None and m.group("host") == _host() and not _alive(int(m.group("pid")))


def remove_stale_temporaries(path, *, prefix=".", suffix=".tmp"):
    """Remove the stale temporaries of ``path`` (as named by :func:`create_temporary`); returns how many.

    Parameters
    ----------
    path : str or Path
        The target file, whose folder is searched.
    prefix, suffix : str
        As given to :func:`create_temporary`.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    stem = _stem(path, prefix)
    pattern = re.compile(re.escape(stem) + _TAG.pattern + re.escape(suffix))
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith(stem) and pattern.fullmatch(entry.name) and is_stale_temporary(entry.name):
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass  # gone already, or not ours to remove: a leftover, never an error
    return removed


def create_temporary(path, *, prefix=".", suffix=".tmp", mode=0o666):
    """Create (exclusively) a temporary file next to ``path``; returns ``(fd, temporary path)``.

    Parameters
    ----------
    path : str or Path
        The file the temporary will become (or whose name it is named after).
    prefix, suffix : str
        Around the temporary's name, ``<prefix><name>.tmp-<host>-<pid>-<token><suffix>``.
    mode : int, default=0o666
        Permission bits before the umask is applied (by the kernel, as for any new file).

    Returns
    -------
    fd : int
        Open for writing (binary).
    tmp : Path
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    stem = _stem(path, prefix)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = folder / f"{stem}.tmp-{_host()}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {str(path)!r}")  # pragma: no cover


def write_atomically(path, write, *, text=False, errors="strict", fsync=True, prefix=".", suffix=".tmp"):
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it over ``path``.

    The file appears whole under its final name or not at all. A new file gets the permissions
    any new file gets (``0o666`` less the umask); a replaced file keeps its permission bits.
    Stale temporaries of ``path`` left by killed processes are removed first.

    Parameters
    ----------
    path : str or Path
    write : callable(file object)
        Writes the content.
    text : bool, default=False
        Open the temporary file as UTF-8 text (newline="") instead of binary.
    errors : str, default="strict"
        The text encoding's error handler (``"surrogateescape"`` writes file names that are not
        UTF-8 as the bytes they are).
    fsync : bool, default=True
        Flush the content to disk before the rename (durability across a power loss).
    prefix, suffix : str, optional
        Around the temporary file's name (see :func:`create_temporary`).

    Returns
    -------
    path : Path

    Raises
    ------
    Whatever ``write`` or the file system raises; the temporary file is removed first.
    """
    path = Path(path)
    remove_stale_temporaries(path, prefix=prefix, suffix=suffix)
    fd, tmp = create_temporary(path, prefix=prefix, suffix=suffix)
    try:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is not None and stat.S_ISREG(st.st_mode):
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o777)
        with (os.fdopen(fd, "w", newline="", encoding="utf-8", errors=errors) if text else os.fdopen(fd, "wb")) as fh:
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


def check_class_names(names, *, what="class name"):
    """Refuse class names that cannot each be one safe folder name.

    A class name becomes a folder (``sort`` puts tracks into ``INTO/<class>/``), so each must be a
    single path component that cannot escape its parent, hide, or clash with another on a
    case-insensitive file system.

    Parameters
    ----------
    names : iterable of str
    what : str, default="class name"
        How the names are called in messages.

    Returns
    -------
    names : list of str

    Raises
    ------
    ParameterError
        A name is not a string; is empty, ``.`` or ``..``; holds ``/``, ``\\``, NUL or another
        control character, or a character that is not valid text; starts with a dot (hidden, and
        the tool's own files start with ``.audiogmm``); or equals another one under case-folding.
    """
    names = list(names)
    seen = {}
    for name in names:
        if not isinstance(name, str):
            raise ParameterError(f"{what} {name!r} is not a string: give each class a text name")
        problem = None
        if name.strip() == "":
            problem = "is empty"
        elif name in (".", ".."):
            problem = "is a relative folder reference"
        elif "/" in name or "\\" in name:
            problem = "holds a path separator"
        elif any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
            problem = "holds a control character"
        elif any(0xD800 <= ord(c) <= 0xDFFF for c in name):
            problem = "holds bytes that are not valid text"
        elif name.startswith("."):
            problem = "starts with a dot (a hidden folder; the tool's own files start with '.audiogmm')"
        elif name != name.strip():
            problem = "starts or ends with white space"
        elif len(os.fsencode(name)) > 200:
            problem = "is longer than 200 bytes"
        if problem:
            raise ParameterError(f"{what} {name!r} {problem}: each class must be usable as one folder name")
        key = name.casefold()
        if key in seen:
            raise ParameterError(
                f"{what}s {seen[key]!r} and {name!r} differ only in case: they would share one folder "
                "on case-insensitive file systems; rename one"
            )
        seen[key] = name
    return names


def pread_into(fd, buffer, offset):
    """Fill ``buffer`` from file descriptor ``fd`` at byte ``offset``, as far as the file goes.

    ``preadv`` may return fewer bytes than asked (a signal, a large request); this reads on
    until ``buffer`` is full or the file ends. The file position is not used or moved, so
    threads may read one descriptor at once.

    Parameters
    ----------
    fd : int
    buffer : writable C-contiguous ndarray or buffer
    offset : int

    Returns
    -------
    int
        Bytes read: ``buffer``'s size, or fewer when the file ends first (the caller says what
        that means).
    """
    view = memoryview(buffer).cast("B")
    done = 0
    while done < view.nbytes:
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            break
        done += n
    return done
