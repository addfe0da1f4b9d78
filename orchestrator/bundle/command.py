"""``python -m orchestrator bundle export|verify|import``: arguments and exit statuses."""

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, Tuple

from rich.console import Console

from vendors.base import Vendor

from ..config import Cluster
from ..images import ImageBuildError, ImageError
from ..transport.base import TransportError
from . import export, importer, verify
from .manifest import BundleError

Loader = Callable[[str], Tuple[Cluster, Dict[str, Vendor]]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bundle_command", required=True)
    p = sub.add_parser("export", help="build (unless there) and save everything the plan needs into DIR")
    p.add_argument("--cluster", required=True, help="cluster file (host_configs/*.yaml)")
    p.add_argument("--out", required=True, metavar="DIR", help="the bundle folder to make (absent or empty)")
    p = sub.add_parser("verify", help="check every file of a bundle against its manifest")
    p.add_argument("dir", metavar="DIR")
    p = sub.add_parser("import", help="copy a verified bundle onto the hosts and load its images there")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--cluster", required=True, help="the lab's cluster file")


def run(args: argparse.Namespace, console: Console, load: Loader) -> int:
    """Run the bundle subcommand; 0 when all went well, 1 with one line per problem otherwise."""
    try:
        if args.bundle_command == "export":
            cluster, known = load(args.cluster)
            digest = export.export(cluster, args.cluster, known, Path(args.out), console)
            console.print("bundle %s: manifest sha256 %s" % (args.out, digest), markup=False, highlight=False)
            return 0
        if args.bundle_command == "verify":
            _, digest, problems = verify.check(Path(args.dir), console)
            for line in problems:
                print("error: %s/%s" % (args.dir.rstrip("/"), line), file=sys.stderr)
            if problems:
                return 1
            console.print("bundle %s: every file verified; manifest sha256 %s" % (args.dir, digest))
            return 0
        cluster, known = load(args.cluster)
        failures = importer.import_bundle(Path(args.dir), cluster, known, console)
        return 1 if failures else 0
    except (BundleError, ImageError, ImageBuildError, TransportError, OSError) as exc:
        print("error: %s" % " ".join(str(exc).split()), file=sys.stderr)
        return 1
