"""File names made from free text (user ids, study and model names)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Iterable

from runners.errors import DataError

USER_NAME_LIMIT = 80  # characters of a user's file name, hash included
USER_HASH_HEX = 10  # hex digits of sha256(user id) on a name that is not the id itself
_PLAIN_USER = re.compile(r"[a-z0-9_.-]+")
_HASHED_SHAPE = re.compile(rf"-[0-9a-f]{{{USER_HASH_HEX}}}$")


def safe_name(text: str, limit: int = 80, fallback: str = "user") -> str:
    """A file-name-safe version of ``text``: letters, digits and ``-_.`` kept, anything else ``_``.

    No result can leave a directory: a slash becomes ``_`` and a name made only of dots (``..``)
    becomes ``fallback``, as does an empty one. At most ``limit`` characters.
    """
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:limit]
    return name if name.strip(".") else fallback


def user_file_name(user_id: str) -> str:
    """The file and directory name of a user: distinct for every user id, stable, readable.

    An id that is already a plain name is its own name: lower-case ASCII letters, digits and
    ``-_.``, at most :data:`USER_NAME_LIMIT` characters, not starting with a dot (so never ``.``,
    ``..`` or a hidden name) and not ending in ``-`` plus :data:`USER_HASH_HEX` hex digits. Any
    other id becomes a readable part (the id with accents dropped, other characters outside
    ``A-Za-z0-9-_.`` as ``_``, shortened; ``user`` when nothing is left) plus ``-`` and the first
    :data:`USER_HASH_HEX` hex digits of the SHA-256 of the id's UTF-8 bytes: ``alice/bob`` ->
    ``alice_bob-1f0c...``, while ``alice_bob`` stays ``alice_bob``.

    One-to-one: a plain id never has the shape of a hashed name (that shape is excluded above),
    so a plain and a hashed name never meet; two plain names are their ids; two hashed names
    are equal only if their hashes are (a 40-bit SHA-256 prefix collision, which
    :func:`user_file_names` refuses for a cohort). The same holds on case-insensitive file
    systems (macOS, Windows): ids with upper-case letters are hashed (``Alice`` ->
    ``Alice-<hash>``), so plain names are lower-case and folding the case of any two names keeps
    them apart; and on normalising ones (macOS), since every name is ASCII. Hashing upper-case
    ids, rather than lower-casing them, keeps the name a pure function of one id: whether
    another user ``alice`` exists is not known where a single id is named.

    Args:
        user_id: The raw user id, any text.

    Returns:
        The name, at most :data:`USER_NAME_LIMIT` characters, safe as one path component.
    """
    if len(user_id) <= USER_NAME_LIMIT and _PLAIN_USER.fullmatch(user_id) and not user_id.startswith(".") \
            and not _HASHED_SHAPE.search(user_id):
        return user_id
    digest = hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()[:USER_HASH_HEX]
    return f"{_readable_part(user_id, USER_NAME_LIMIT - USER_HASH_HEX - 1)}-{digest}"


def _readable_part(text: str, limit: int) -> str:
    """``text`` in ``A-Za-z0-9-_.``: accents dropped, other characters ``_`` (runs of them one), no
    leading dot, at most ``limit`` characters; ``user`` when nothing readable is left."""
    kept = []
    for c in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(c):
            continue
        c = c if (c.isascii() and c.isalnum()) or c in "-_." else "_"
        if not (c == "_" and kept and kept[-1] == "_"):
            kept.append(c)
    name = "".join(kept).lstrip(".")[:limit]
    return name if name.strip("._") else "user"


def user_file_names(user_ids: Iterable[str]) -> dict[str, str]:
    """:func:`user_file_name` of each id, checked to be distinct (also ignoring case).

    Raises:
        DataError: two ids share a name (only a 40-bit hash collision can do that); it names both.
    """
    names: dict[str, str] = {}
    owners: dict[str, str] = {}
    for user_id in user_ids:
        name = user_file_name(user_id)
        other = owners.setdefault(name.lower(), user_id)
        if other != user_id:
            raise DataError(f"user ids {other!r} and {user_id!r} get the same file name {name!r} (a hash "
                            "collision); rename one of them in the data file")
        names[user_id] = name
    return names


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
