"""Which bundle an image on a host came from.

``bundle import`` gives every image it loaded and verified (image ID and content-hash label) a second tag,
``rn50bench/bundle:<manifest sha256>-<content hash>``; a run reads the tags back, so its environment
table names the bundle (and the image ID) its figures were measured with.
"""

import json
from typing import Dict, Optional

from orchestrator.transport.base import Transport

BUNDLE_REPO = "rn50bench/bundle"


def origin_tag(manifest_sha256: str, image_tag: str) -> str:
    """The tag that marks ``image_tag`` as loaded from the bundle ``manifest_sha256``."""
    return "%s:%s-%s" % (BUNDLE_REPO, manifest_sha256, image_tag.rsplit(":", 1)[1])


def image_origin(transport: Transport, tag: str, timeout: float) -> Dict[str, Optional[str]]:
    """``{"image", "image_id", "bundle"}`` of ``tag`` on the host; bundle None unless one provided it."""
    done = transport.run(
        ["docker", "image", "inspect", "--format", "{{.Id}} {{json .RepoTags}}", tag], timeout=timeout
    ).check()
    image_id, _, listed = done.stdout.strip().partition(" ")
    tags = json.loads(listed or "[]")
    suffix = "-" + tag.rsplit(":", 1)[1]
    bundles = sorted(
        t[len(BUNDLE_REPO) + 1 : -len(suffix)]
        for t in tags
        if t.startswith(BUNDLE_REPO + ":") and t.endswith(suffix)
    )
    return {"image": tag, "image_id": image_id, "bundle": ", ".join(bundles) or None}
