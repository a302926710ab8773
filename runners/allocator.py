"""The memory allocator that a process of many trainings runs on.

A per-user study trains and evaluates user after user in one process. With glibc's malloc the
resident size of each training step grows by 50-150 MB over the first users, although the memory
in use does not: the heap's holes left by one user's step do not fit the next one's blocks
(measured phase by phase in ``docs/benchmarks.md``, "A cohort in one process"). mimalloc, and
jemalloc alike, reuse the freed blocks and keep a 20-user cohort within a few percent of one user.

mimalloc comes from PyPI (``cmeel-mimalloc``, a dependency of this package on Linux), so every
installation has it. It replaces malloc only when it is loaded before the process starts
(``LD_PRELOAD``), so the console script starts itself again with it (:func:`preloaded_environment`,
used by ``search.cli``) for the commands that train or generate; the processes it starts (process
and Ray workers) inherit the environment. ``PERS_SEARCH_ALLOCATOR`` chooses:

- unset or ``mimalloc``: mimalloc where the package is installed and the system is Linux;
- ``system``: the C library's malloc (no restart);
- a path to a shared library (``/usr/lib/x86_64-linux-gnu/libjemalloc.so.2``): that allocator.

mimalloc runs without transparent huge pages (:data:`MIMALLOC_DEFAULTS`) unless the environment
sets ``MIMALLOC_ALLOW_THP``: with them it cost 1.18x the CPU of glibc's malloc, without 1.02x.

:func:`active_allocator` tells which one the running process has mapped.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Mapping

from runners.errors import ConfigError

VARIABLE = "PERS_SEARCH_ALLOCATOR"
PRELOAD = "LD_PRELOAD"
# mimalloc's own settings, unless the environment sets them: no transparent huge pages. With them a
# training's freed and reused blocks cost the kernel's huge-page work: 5.5x the system time of glibc's
# malloc, 1.18x the CPU of a 3-user trial; without them 1.02x (docs/benchmarks.md, "mimalloc, shipped").
MIMALLOC_DEFAULTS = {"MIMALLOC_ALLOW_THP": "0"}
# allocators recognised in a process's mapped libraries, by a part of the library's file name
KNOWN = ("mimalloc", "jemalloc", "tcmalloc")


def mimalloc_library() -> Path | None:
    """The shared library of the installed ``cmeel-mimalloc`` package, or None."""
    try:
        files = metadata.distribution("cmeel-mimalloc").files or ()
    except metadata.PackageNotFoundError:
        return None
    found = sorted((f for f in files if f.name.startswith("libmimalloc.so")), key=lambda f: len(f.name))
    for file in found:
        path = Path(file.locate()).resolve()
        if path.is_file():
            return path
    return None


def chosen_library(env: Mapping[str, str] = os.environ) -> Path | None:
    """The allocator library that ``PERS_SEARCH_ALLOCATOR`` asks for, or None for the system's malloc.

    Raises:
        ConfigError: the variable names neither a known choice nor an existing file.
    """
    choice = env.get(VARIABLE, "").strip()
    if choice.lower() == "system" or not sys.platform.startswith("linux"):
        return None
    if choice.lower() in ("", "mimalloc"):
        return mimalloc_library()
    path = Path(choice).expanduser()
    if not path.is_file():
        raise ConfigError(f"{VARIABLE}={choice}: no such file; give 'mimalloc' (the default), 'system', or the "
                          "path of an allocator's shared library such as /usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    return path.resolve()


def preloaded_environment(env: Mapping[str, str] = os.environ) -> dict[str, str] | None:
    """``env`` with the chosen allocator in ``LD_PRELOAD`` (and, for mimalloc, :data:`MIMALLOC_DEFAULTS`
    where ``env`` does not set them), or None when there is nothing to change (the system's malloc
    chosen, no library found, or it is preloaded already)."""
    library = chosen_library(env)
    if library is None:
        return None
    preload = [p for p in env.get(PRELOAD, "").replace(":", " ").split() if p]
    if str(library) in preload:
        return None
    settings = MIMALLOC_DEFAULTS if "mimalloc" in library.name else {}
    return {**settings, **env, PRELOAD: " ".join([str(library), *preload])}


def active_allocator(maps: Path = Path("/proc/self/maps")) -> str:
    """``mimalloc``, ``jemalloc`` or ``tcmalloc`` when the process has one of them mapped, else ``system``."""
    try:
        text = maps.read_text()
    except OSError:
        return "system"
    for name in KNOWN:
        if f"lib{name}" in text:
            return name
    return "system"
