"""``python -m runner_in_container``: run one benchmark case (see cli.py)."""

# protocol's import time is the runner's start (e2e_time): it is imported before anything else.
from runner_in_container import protocol  # noqa: F401, I001

import sys

if __name__ == "__main__":
    # imported here, not above: a decoding process (spawned) imports this module as its main module, and
    # needs none of what the command line and the stage loop import. Its decoding processes are spawned
    # before the runner imports torch, so that their imports overlap its own (ahead.py).
    from runner_in_container import ahead

    spawned = ahead.spawn(sys.argv[1:])
    from runner_in_container.cli import main

    sys.exit(main(ahead=spawned))
