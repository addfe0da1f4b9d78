"""``bundle verify DIR``: every file of the bundle against the manifest, one line per mismatch.

Files are read through tree.py (no link followed, nothing outside the folder, no special file opened) and
each once: an image archive is hashed in the same read that finds the image it holds (archive.py).
"""

import os
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from rich.console import Console

from orchestrator.bundle import archive, tree
from orchestrator.bundle.manifest import MANIFEST, Bundle, BundleError, BundleFile, read
from orchestrator.bundle.progress import byte_bars


def check(root: Path, console: Console, expect: Optional[str] = None) -> Tuple[Bundle, List[str]]:
    """(the bundle's manifest, problems): a problem is one line naming a file that is missing, no regular
    file inside the bundle, differs in size or sha256 from the manifest, holds another image than its
    ``images[]`` entry, or is not listed. BundleError when the folder or the manifest is unusable, or the
    manifest's sha256 is not ``expect``."""
    bundle = read(root)
    if expect is not None and bundle.digest != expect:
        raise BundleError(
            "%s: manifest sha256 %s, --expect says %s: not the bundle you expected"
            % (Path(root) / MANIFEST, bundle.digest, expect)
        )
    try:
        root_fd = tree.open_root(str(root))
    except OSError as exc:
        raise BundleError("%s: cannot open: %s" % (root, exc.strerror or exc)) from None
    try:
        return bundle, _files(bundle, root_fd, str(root), console) + _unlisted(bundle, root_fd)
    finally:
        os.close(root_fd)


def _files(bundle: Bundle, root_fd: int, root: str, console: Console) -> List[str]:
    images = {image.file: (i, image.image_id) for i, image in enumerate(bundle.manifest.images)}
    problems: List[str] = []
    with byte_bars(console) as bars:
        task = bars.add_task("verifying %s" % root, total=sum(f.size for f in bundle.manifest.files))
        for entry in bundle.manifest.files:
            done = bars.tasks[task].completed
            problem = _file(root_fd, entry, images.get(entry.path), lambda n: bars.advance(task, n))
            if problem:
                problems.append("%s: %s" % (entry.path, problem))
            bars.update(task, completed=done + entry.size)
    return problems


def _file(
    root_fd: int, entry: BundleFile, image: Optional[Tuple[int, str]], advance: Callable[[int], None]
) -> str:
    """Why the file of ``entry`` is not what the manifest says, or '' when it is."""
    try:
        with tree.open_file(root_fd, entry.path) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size != entry.size:
                return "%d bytes, the manifest says %d" % (size, entry.size)
            if image is None:
                return _differs(tree.HashingReader(handle, advance).drain(), entry)
            sha256, holds = archive.inspect(handle, advance)
    except archive.Refused as exc:
        return _differs(exc.sha256, entry) or str(exc)
    except tree.Refused as exc:
        return str(exc)
    except OSError as exc:
        return "cannot read: %s" % (exc.strerror or exc)
    index, image_id = image
    if _differs(sha256, entry):
        return _differs(sha256, entry)
    if holds != image_id:
        return "the archive holds image %s, images[%d].image_id says %s" % (holds, index, image_id)
    return ""


def _differs(sha256: str, entry: BundleFile) -> str:
    return "" if sha256 == entry.sha256 else "sha256 %s, the manifest says %s" % (sha256, entry.sha256)


def _unlisted(bundle: Bundle, root_fd: int) -> List[str]:
    """A line for everything in the folder the manifest does not list: files, links, FIFOs, devices."""
    listed = {entry.path for entry in bundle.manifest.files} | {MANIFEST}
    problems = []
    for rel, special in sorted(tree.entries(root_fd)):
        if special.startswith(tree.UNREADABLE):
            problems.append("%s: %s" % (rel, special))
        elif rel not in listed:  # a listed one: _files said what is wrong with it, if anything
            problems.append("%s: %snot in the manifest" % (rel, special + ", " if special else ""))
    return problems
