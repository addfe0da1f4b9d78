"""How a job ends: OK, FAILED_<stage> for the stage that broke (connect, build, start, run, collect,
validate, accuracy), or CANCELLED, always with a one-line reason and never by raising. Other jobs and
hosts carry on."""

INTERRUPTED = "run interrupted"


class StageFailure(Exception):
    """A job stage failed; ``stage`` names it and the message is the one-line reason."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
