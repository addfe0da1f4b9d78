"""Entry point: python -m orchestrator."""

import sys

from .cli import main

sys.exit(main())
