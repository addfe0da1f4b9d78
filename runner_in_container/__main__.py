"""``python -m runner_in_container``: run one benchmark case (see cli.py)."""

# protocol's import time is the runner's start (e2e_time): it is imported before anything else.
from runner_in_container import protocol  # noqa: F401, I001

import sys

from runner_in_container.cli import main

if __name__ == "__main__":
    sys.exit(main())
