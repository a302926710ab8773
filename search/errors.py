"""Exceptions raised by the search package.

One base class, :class:`SearchError`; each subclass also inherits the matching builtin so callers
can catch either. Messages state the rule, echo the value and name the place and the fix.
"""


class SearchError(Exception):
    """Base class of every error the search package raises on purpose.

    ``exit_code`` is what the CLI returns for it: 2 for a usage error (a bad option, file or
    name the user can fix by changing the command), 1 for a failure of the run itself.
    """

    exit_code = 2


class UsageError(SearchError, ValueError):
    """Command-line options that contradict each other or the study."""


class SpaceError(SearchError, ValueError):
    """A space file or override is malformed: unknown key, wrong type, bad range or name."""


class RegistryError(SearchError, ValueError):
    """A name is missing from a registry, or registered twice."""


class StudyError(SearchError, ValueError):
    """A study directory is unreadable or does not match the space it is resumed with."""


class StudyWriteError(StudyError):
    """The study directory cannot be written (permissions, a full disk): a failure, exit code 1."""

    exit_code = 1


class ExportError(SearchError, ValueError):
    """A pick expression is malformed or matches nothing, or a bundle cannot be written."""
