"""Exceptions raised by the trial runner.

One base class, :class:`RunnerError`; each subclass also inherits the matching builtin so
callers can catch either. Messages state the rule, echo the value and name the fix.
"""


class RunnerError(Exception):
    """Base class of every error the runner raises on purpose."""


class DataError(RunnerError, ValueError):
    """A data file is missing, malformed, or holds values the runner cannot use."""


class ModelError(RunnerError, ValueError):
    """A model name or directory cannot be resolved or loaded."""


class ConfigError(RunnerError, ValueError):
    """A trial configuration value is out of range or of the wrong shape."""


class TrialFailed(RunnerError, RuntimeError):
    """A trial ran but produced no usable result (NaN loss, out of memory)."""


class TrialStopped(RunnerError):
    """Raised by a trial's report callback to stop it at a checkpoint (early stopping).

    Attributes:
        checkpoint: the :class:`runners.spec.Checkpoint` it stopped at.
        reason: why, for the study's record and the log.
    """

    def __init__(self, checkpoint, reason: str) -> None:
        super().__init__(reason)
        self.checkpoint = checkpoint
        self.reason = reason
