"""A JSON Schema of the cluster file for editors (``python -m orchestrator schema``): the models' own
(``Cluster``), with each launcher's sections (``slurm:``, ``hosts[].slurm``) described where they may stand
and no other key allowed there. Editors check keys and types with it; values that depend on this
installation (vendors, toolkits, knobs) are checked by ``plan``."""

from typing import Any, Dict

from orchestrator import launchers
from orchestrator.model.cluster import Cluster

#: JSON Schema's draft the models write (pydantic)
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def cluster_schema() -> Dict[str, Any]:
    """The schema of a cluster file, as a JSON object."""
    schema = Cluster.model_json_schema()
    defs = schema.setdefault("$defs", {})
    top, host = schema, defs["Host"]
    for name, launcher in sorted(launchers.discover().items()):
        for where, settings in ((top, launcher.settings_class), (host, launcher.host_settings_class)):
            if settings is None:
                continue
            own = settings.model_json_schema(ref_template="#/$defs/{model}")
            defs.update(own.pop("$defs", {}))
            own["description"] = "used with launcher: %s. %s" % (name, own.get("description", ""))
            where["properties"][name] = {"anyOf": [own, {"type": "null"}]}
    for model in (top, host):
        model["additionalProperties"] = False
    schema["$schema"] = DRAFT
    schema["title"] = "rn50bench cluster file"
    return schema
