"""The bundle folder read without leaving it: no link followed, special files named, never opened.

Every file is opened component by component below the bundle's folder descriptor with ``O_NOFOLLOW``, so a
link anywhere on the path (a file, or a folder such as ``images``) is refused instead of followed out of the
bundle, and a swap of a folder for a link after a check changes nothing. A file that cannot be opened
gives its reason and nothing else: its size is read from the open descriptor, never from ``stat`` of a path
(a root-only file's size stays unknown to whoever runs ``verify``).
"""

import errno
import hashlib
import os
import stat
from typing import BinaryIO, Callable, Iterator, List, Tuple

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20
#: what entries() says of a folder it cannot read
UNREADABLE = "cannot read the folder"


class Refused(ValueError):
    """The path cannot be read as a regular file inside the bundle; the message says why in one line."""


class HashingReader:
    """Reads an open file once, hashing (and counting, for progress bars) every byte read through it: what
    is checked or sent is exactly what is hashed."""

    def __init__(self, handle: BinaryIO, advance: Callable[[int], None] = lambda n: None) -> None:
        self.handle = handle
        self.advance = advance
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.sha256.update(data)
        self.advance(len(data))
        return data

    def drain(self) -> str:
        """Read what is left; the sha256 of every byte read."""
        for _ in iter(lambda: self.read(_CHUNK), b""):
            pass
        return self.sha256.hexdigest()


def open_root(root: str) -> int:
    """A descriptor of the bundle folder (the folder the user named; a link there is the user's own)."""
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_file(root_fd: int, rel: str) -> BinaryIO:
    """The regular file ``rel`` (a manifest path, already validated) below ``root_fd``, open for reading;
    Refused with the reason otherwise. A special file is named by its kind and never opened."""
    parts = rel.split("/")
    fds: List[int] = []
    try:
        parent = root_fd
        for depth, part in enumerate(parts[:-1]):
            fds.append(_open(part, _DIR, parent, "/".join(parts[: depth + 1])))
            parent = fds[-1]
        try:
            mode = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode
        except OSError as exc:
            raise _refused(exc) from None
        if not stat.S_ISREG(mode):
            raise Refused("%s, not a regular file" % kind(mode))
        fd = _open(parts[-1], _FILE, parent, rel)
        handle = os.fdopen(fd, "rb")
    finally:
        for folder in fds:
            os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the check above
        handle.close()
        raise Refused("not a regular file")
    os.set_blocking(fd, True)
    return handle


def entries(root_fd: int) -> Iterator[Tuple[str, str]]:
    """(path, special) of everything below ``root_fd`` that is not a folder, folders walked without
    following a link; special is '' for a regular file, else what it is (``a FIFO``), or UNREADABLE and why
    for a folder that cannot be read."""
    stack: List[Tuple[str, int]] = [("", os.dup(root_fd))]
    while stack:
        prefix, fd = stack.pop()
        try:
            with os.scandir(fd) as found:
                listed = [(entry.name, entry.stat(follow_symlinks=False).st_mode) for entry in found]
        except OSError as exc:
            yield prefix.rstrip("/") or ".", "%s: %s" % (UNREADABLE, exc.strerror or exc)
            listed = []
        for name, mode in sorted(listed):
            rel = prefix + name
            if not stat.S_ISDIR(mode):
                yield rel, "" if stat.S_ISREG(mode) else kind(mode)
                continue
            try:
                stack.append((rel + "/", _open(name, _DIR, fd, rel)))
            except Refused as exc:
                yield rel, "%s: %s" % (UNREADABLE, str(exc).replace("cannot read: ", ""))
        os.close(fd)


def kind(mode: int) -> str:
    """What a file of ``mode`` is, in words (``a FIFO``)."""
    for test, name in (
        (stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):  # fmt: skip
        if test(mode):
            return name
    return "a special file"


def _open(name: str, flags: int, dir_fd: int, rel: str) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise _refused(exc) from None
    try:  # a link, or a file where a folder should be: say which
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError as exc:
        raise _refused(exc) from None
    raise Refused("%s is %s: only regular files inside the bundle are read" % (rel, kind(mode)))


def _refused(exc: OSError) -> Refused:
    """Why a path could not be opened or looked at, in words: missing, or not readable."""
    if exc.errno == errno.ENOENT:
        return Refused("missing")
    return Refused("cannot read: %s" % (exc.strerror or exc))
