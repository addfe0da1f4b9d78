"""``python -m orchestrator bundle export|verify|import``: arguments and exit statuses."""

import argparse
import re
import sys
from pathlib import Path
from typing import Callable, Dict, Tuple

from rich.console import Console

from orchestrator.bundle import export, importer, verify
from orchestrator.bundle.manifest import SHA256, BundleError
from orchestrator.host.images import ImageBuildError, ImageError
from orchestrator.model.cluster import Cluster
from orchestrator.transport.base import TransportError
from vendors.vendor import Vendor

Loader = Callable[[str], Tuple[Cluster, Dict[str, Vendor]]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bundle_command", required=True)
    p = sub.add_parser("export", help="build (unless there) and save everything the plan needs into DIR")
    p.add_argument("--cluster", required=True, help="cluster file (host_configs/*.yaml)")
    p.add_argument("--out", required=True, metavar="DIR", help="the bundle folder to make (absent or empty)")
    p = sub.add_parser("verify", help="check every file of a bundle against its manifest")
    p.add_argument("dir", metavar="DIR")
    _expect_argument(p)
    p = sub.add_parser("import", help="copy a verified bundle onto the hosts and load its images there")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--cluster", required=True, help="the lab's cluster file")
    _expect_argument(p)


def _expect_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expect", metavar="SHA256", type=_sha256,
        help="the manifest sha256 export printed: any other bundle is refused",
    )  # fmt: skip


def _sha256(text: str) -> str:
    if not re.match(SHA256, text):
        raise argparse.ArgumentTypeError("%r is not a sha256 (64 lowercase hex digits)" % text)
    return text


def _warn_unpinned(args: argparse.Namespace) -> None:
    """Without --expect, any bundle that agrees with itself passes: say so, every time."""
    if args.expect is None:
        print(
            "warning: no --expect SHA256: %s is checked only against its own manifest, so anyone who could "
            "write it could have made it; give the manifest sha256 that export printed" % args.dir,
            file=sys.stderr,
        )


def run(args: argparse.Namespace, console: Console, load: Loader) -> int:
    """Run the bundle subcommand; 0 when all went well, 1 with one line per problem otherwise."""
    try:
        if args.bundle_command == "export":
            cluster, known = load(args.cluster)
            digest = export.export(cluster, args.cluster, known, Path(args.out), console)
            said = "bundle %s: manifest sha256 %s; verify and import it with --expect %s"
            console.print(said % (args.out, digest, digest), markup=False, highlight=False)
            return 0
        _warn_unpinned(args)
        if args.bundle_command == "verify":
            bundle, problems = verify.check(Path(args.dir), console, args.expect)
            for line in problems:
                print("error: %s/%s" % (args.dir.rstrip("/"), line), file=sys.stderr)
            if problems:
                return 1
            said = "bundle %s: every file verified; manifest sha256 %s" % (args.dir, bundle.digest)
            console.print(said, markup=False, highlight=False)
            return 0
        cluster, known = load(args.cluster)
        failures = importer.import_bundle(Path(args.dir), cluster, known, console, args.expect)
        return 1 if failures else 0
    except (BundleError, ImageError, ImageBuildError, TransportError, OSError) as exc:
        print("error: %s" % " ".join(str(exc).split()), file=sys.stderr)
        return 1
