"""``bundle verify DIR``: every file of the bundle against the manifest, one line per mismatch."""

from pathlib import Path
from typing import List, Tuple

from rich.console import Console

from ..images import file_sha256
from .manifest import MANIFEST, Manifest, read
from .progress import byte_bars


def check(root: Path, console: Console) -> Tuple[Manifest, str, List[str]]:
    """(manifest, its sha256, problems): a problem is one line naming a file that is missing, differs in
    size or sha256 from the manifest, or is not listed in it. BundleError when the manifest is unreadable."""
    manifest, digest = read(root)
    problems: List[str] = []
    with byte_bars(console) as bars:
        task = bars.add_task("verifying %s" % root, total=sum(f.size for f in manifest.files))
        for entry in manifest.files:
            path = root / entry.path
            if not path.is_file():
                problems.append("%s: missing" % entry.path)
            elif path.stat().st_size != entry.size:
                problems.append(
                    "%s: %d bytes, the manifest says %d" % (entry.path, path.stat().st_size, entry.size)
                )
            else:
                actual = file_sha256(path, lambda n: bars.advance(task, n))
                if actual != entry.sha256:
                    said = (entry.path, actual, entry.sha256)
                    problems.append("%s: sha256 %s, the manifest says %s" % said)
                continue
            bars.advance(task, entry.size)
    listed = {entry.path for entry in manifest.files} | {MANIFEST}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel not in listed:
            problems.append("%s: not in the manifest" % rel)
    return manifest, digest, problems
