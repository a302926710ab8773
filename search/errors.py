"""Exceptions raised by the search package.

One base class, :class:`SearchError`; each subclass also inherits the matching builtin so callers
can catch either. Messages state the rule, echo the value and name the place and the fix.
"""


class SearchError(Exception):
    """Base class of every error the search package raises on purpose."""


class SpaceError(SearchError, ValueError):
    """A space file or override is malformed: unknown key, wrong type, bad range or name."""


class RegistryError(SearchError, ValueError):
    """A name is missing from a registry, or registered twice."""


class StudyError(SearchError, ValueError):
    """A study directory is unreadable or does not match the space it is resumed with."""


class ExportError(SearchError, ValueError):
    """A pick expression is malformed or matches nothing, or a bundle cannot be written."""
