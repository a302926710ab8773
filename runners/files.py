"""File names made from free text (user ids, study and model names)."""

from __future__ import annotations

from runners.errors import DataError


def safe_name(text: str, limit: int = 80, fallback: str = "user") -> str:
    """A file-name-safe version of ``text``: letters, digits and ``-_.`` kept, anything else ``_``.

    No result can leave a directory: a slash becomes ``_`` and a name made only of dots (``..``)
    becomes ``fallback``, as does an empty one. At most ``limit`` characters.
    """
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:limit]
    return name if name.strip(".") else fallback


def load_safetensors(path, what: str, fix: str) -> dict:
    """The tensors of a safetensors file (never pickle), or a :class:`DataError` naming the file.

    A truncated, empty or foreign file (a pickled ``.bin`` renamed, say) is reported with its
    path and ``fix`` instead of the library's bare ``SafetensorError``.
    """
    from safetensors.torch import load_file  # torch: only when tensors are read

    try:
        return load_file(str(path))
    except FileNotFoundError as err:
        raise DataError(f"{what} {path} is missing; {fix}") from err
    except Exception as err:  # SafetensorError (header, length), OSError: the file is damaged
        raise DataError(f"{what} {path} is not a readable safetensors file ({err}); it may be truncated; "
                        f"{fix}") from err
