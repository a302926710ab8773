"""One registry of named classes, for the optimisers, the retrievers and the metrics.

A class decorator registers a subclass of the registry's base under a name (and sets its ``name``);
a second class under a taken name, or a class of another kind, is refused; a lookup that misses
lists the known names and says how to add one. Lives in ``runners`` (the ground floor) so that
``search`` can use it too.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Names -> classes of one kind.

    Args:
        kind: what is registered, as messages name it (``"retriever"``).
        base: the class every registered class subclasses.
        error: the exception raised on a refused registration or an unknown name.
        where: a note after the name in an unknown-name message (``" (rag.retriever)"``).
        how_to_add: how a user adds one, ``{name}`` replaced by the missing name.
    """

    def __init__(self, kind: str, base: type, error: type[Exception], *, how_to_add: str, where: str = "") -> None:
        self.kind, self.base, self.error, self.how_to_add, self.where = kind, base, error, how_to_add, where
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A class decorator registering a subclass of the base under ``name`` (sets ``cls.name``).

        Raises:
            the registry's error: ``name`` is taken, or the class is not a subclass of the base.
        """
        def decorate(cls: T) -> T:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise self.error(f"register {self.kind} {name!r}: {cls!r} is not a {self.base.__name__} subclass; "
                                 f"subclass {self.base.__module__}.{self.base.__qualname__}")
            if name in self._classes:
                other = self._classes[name]
                raise self.error(f"{self.kind} {name!r} is already registered by {other.__qualname__} "
                                 f"({other.__module__}); register {cls.__qualname__} under another name")
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorate

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: str) -> T:
        """The class registered under ``name``.

        Raises:
            the registry's error: an unknown name; the message lists the known ones.
        """
        try:
            return self._classes[name]
        except (KeyError, TypeError) as err:
            raise self.error(f"unknown {self.kind} {name!r}{self.where}; use one of: {', '.join(self.names())}; "
                             f"{self.how_to_add.format(name=repr(name))}") from err

    def __contains__(self, name: object) -> bool:
        return name in self._classes
