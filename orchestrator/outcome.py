"""How a command or a job ends. A command: done, or a one-line ``UsageError`` (exit 2). A job: OK,
FAILED_<stage> for the stage that broke (connect, build, start, run, collect, validate, accuracy), or
CANCELLED, always with a one-line reason and never by raising: other jobs and hosts carry on."""

from orchestrator.states import Stage

INTERRUPTED = "run interrupted"


class StageFailure(Exception):
    """A job stage failed; ``stage`` names it and the message is the one-line reason."""

    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit 2."""
