"""How commands and jobs end, in the words of a job's life on the control side: its stages, the states jobs
and runs are stored in, and the two one-line failures (``StageFailure`` of a job's stage, ``UsageError`` of a
command: exit 2). A job ends OK, FAILED_<stage> or CANCELLED, always with a one-line reason and never by
raising: other jobs and hosts carry on.

Each word is defined here once and used by name everywhere; the values are what the store
holds and what the display and reports show, so they never change (an old store must
still read). The runner's own words (its stages, result statuses) are in
``runner_in_container/protocol.py``.
"""

from enum import Enum


class Word(str, Enum):
    """A word of the vocabulary: compares, stores, serialises and prints as its value."""

    def __str__(self) -> str:
        return str(self.value)


class Stage(Word):
    """A control-side stage of a job (or of its host's preparation), as the display shows it.

    A job that fails ends FAILED_<STAGE> for the stage that broke (``JobState.failed``).
    """

    CONNECT = "connect"  # reach the host, check its docker and environment
    IMAGE = "image"  # find or load the image (shown only: a failure is BUILD's)
    BUILD = "build"  # build the image
    ISOLATION = "isolation"  # the host and device are idle just before and after the job (host/conditions.py)
    START = "start"  # prepare the job's folders, start its container, until the runner's start event
    QUEUED = "queued"  # a Slurm job waits for its node (shown only)
    RUNNING = "running"  # a Slurm job runs on its node (shown only; a failure is RUN's)
    RUN = "run"  # the runner runs
    COLLECT = "collect"  # fetch the result and keep the log
    VALIDATE = "validate"  # check the result against the schema
    ACCURACY = "accuracy"  # the result is below its accuracy gate

    @classmethod
    def runner_ended(cls, started: bool) -> "Stage":
        """The stage a job broke in when its runner ended badly: RUN once it had started, else START."""
        return cls.RUN if started else cls.START


class JobState(Word):
    """The state a job is stored in."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    OK = "OK"
    CANCELLED = "CANCELLED"
    FAILED_CONNECT = "FAILED_CONNECT"
    FAILED_BUILD = "FAILED_BUILD"
    FAILED_START = "FAILED_START"
    FAILED_RUN = "FAILED_RUN"
    FAILED_COLLECT = "FAILED_COLLECT"
    FAILED_VALIDATE = "FAILED_VALIDATE"
    FAILED_ACCURACY = "FAILED_ACCURACY"
    FAILED_ISOLATION = "FAILED_ISOLATION"

    @classmethod
    def failed(cls, stage: Stage) -> "JobState":
        """FAILED_<STAGE>: the state of a job whose ``stage`` broke (ValueError for a shown-only stage)."""
        return cls("FAILED_" + stage.value.upper())


class RunState(Word):
    """The state a run is stored in."""

    RUNNING = "RUNNING"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"


#: what the state column shows for a job whose stored cells cannot be read (its stored state stays)
UNREADABLE = "UNREADABLE"

INTERRUPTED = "run interrupted"


class StageFailure(Exception):
    """A job stage failed; ``stage`` names it and the message is the one-line reason."""

    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit 2."""
