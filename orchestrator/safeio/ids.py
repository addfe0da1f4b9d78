"""Run and job ids: one pattern, checked wherever an id comes in (the command line, the store) before it
names a file or folder (results_dir, the run lock, the host's workdir): one path component, never ``..``."""

import re

#: what a run id (``new_run_id``) or a job id (``plan.job_id``) looks like
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BadId(ValueError):
    """An id that could name a path outside its folder; the message is one line."""


def checked(kind: str, value: str) -> str:
    """``value`` when it is a valid ``kind`` id ("run", "job"); BadId naming it otherwise."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise BadId(
            "%s id %r is not one (letters, digits, '.', '_', '-'; at most 128, the first a letter or digit)"
            % (kind, value)
        )
    return value
