"""What an export owns in its ``--out`` directory: the files it listed, and nothing else.

An export writes its file list, :data:`FILE_LIST` (``.pers-search-bundle.json``), before
anything else and again when it ends. The list names the staging directory the export writes
into and, once the bundle is whole, every file and directory of it (paths relative to ``--out``)
and ``"complete": true``. The steps:

1. :func:`prepare_out` checks ``--out``: not inside a study directory, and holding nothing but an
   earlier export's listed paths. With ``force`` it removes those paths (directories only once
   empty), never anything else.
2. :func:`begin_staging` lists a new staging directory (``.staging-<hex>``), then makes it; the export
   writes the whole bundle in there.
3. :func:`finish_staging` lists every path of the staging directory, moves its entries into ``--out``
   (``serving.yaml`` last), removes the staging directory and marks the list complete.

A stopped export thus leaves a list that names all it wrote (its staging directory, and the
moved paths from step 3 on), so ``--force`` redoes it; a file someone put in ``--out`` is in no
list, and the export refuses to run beside it (with or without ``--force``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from search.errors import ExportError
from search.study.study import STUDY_FILE, atomic_write

FILE_LIST = ".pers-search-bundle.json"
LIST_FORMAT = "pers-search-bundle-files/1"
STAGING_PREFIX = ".staging-"  # the directory an export writes into, moved into the bundle when whole
MANIFEST = "serving.yaml"  # a bundle's last file: moved into place last
STUDY_MARKERS = (STUDY_FILE, "cohort.json")  # what makes a directory a study's (or a per-user study's)
SHOWN = 3  # foreign paths named in a refusal


@dataclass(frozen=True)
class FileList:
    """An export's file list: what it wrote in ``--out`` (paths relative to it, POSIX style).

    Attributes:
        complete: the export ended (``serving.yaml`` in place).
        staging: the staging directory of an export under way, or None.
        files: the bundle's files.
        dirs: the bundle's directories.
    """

    complete: bool
    staging: str | None = None
    files: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()

    def owns(self, relative: str) -> bool:
        """True for a path of the list, its staging directory, or a temp file of an atomic write of ours."""
        if relative in (FILE_LIST, self.staging) or relative in self.files or relative in self.dirs:
            return True
        return relative.startswith((f".{FILE_LIST}.", f".{MANIFEST}.")) and relative.endswith(".tmp")

    def to_json(self) -> dict:
        return {"format": LIST_FORMAT, "complete": self.complete, "staging": self.staging,
                "files": list(self.files), "dirs": list(self.dirs)}


def read_list(out: Path) -> FileList | None:
    """The file list in ``out``, or None when there is none.

    Raises:
        ExportError: the list is damaged (then nothing in ``out`` is known to be an export's).
    """
    path = out / FILE_LIST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != LIST_FORMAT:
            raise ValueError(f"format {data.get('format')!r} is not {LIST_FORMAT!r}")
        return FileList(bool(data["complete"]), data.get("staging"), tuple(data["files"]), tuple(data["dirs"]))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ExportError(f"--out {out}: {FILE_LIST} is unreadable ({err}), so nothing there is known to be an "
                          "export's; choose a new directory for the bundle") from err


def write_list(out: Path, files: FileList) -> None:
    """Write the file list (atomically: a kill leaves the old list or the new one)."""
    atomic_write(out / FILE_LIST, json.dumps(files.to_json(), indent=1, ensure_ascii=False) + "\n")
    (out / FILE_LIST).chmod(0o644)


def prepare_out(out: str | Path, force: bool) -> Path:
    """Make sure ``out`` can take a bundle: new, empty, or holding only an earlier export's files.

    With ``force`` the earlier export's listed files are removed (directories once empty).

    Raises:
        ExportError: ``out`` is a file or lies in a study directory; it holds files no export
            listed (named, with or without ``force``); or an earlier bundle and no ``force``.
    """
    out = Path(out)
    refuse_study_dir(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: is a file; give a directory path")
    if out.is_dir():
        listed = read_list(out)
        refuse_foreign(out, listed)
        if listed is not None:
            if not force:
                raise ExportError(_earlier_export(out, listed))
            remove_listed(out, listed)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _earlier_export(out: Path, listed: FileList) -> str:
    if not listed.complete:
        return (f"--out {out}: holds an unfinished export (its {FILE_LIST} lists a bundle but no serving.yaml: an "
                "earlier export was stopped before it ended); pass --force to redo it there, or choose a new "
                "directory")
    return (f"--out {out}: holds an earlier bundle; pass --force to replace it (only the files its {FILE_LIST} "
            "lists are removed), or choose a new directory")


def refuse_study_dir(out: Path) -> None:
    """Refuse an ``out`` that is a study's directory or lies inside one (an export there could remove
    the study's files, its kept adapters among them).

    Raises:
        ExportError: naming the study directory and its marker file.
    """
    target = out.expanduser().resolve()
    for directory in (target, *target.parents):
        for marker in STUDY_MARKERS:
            if (directory / marker).is_file():
                raise ExportError(f"--out {out}: lies in the study directory {directory} (it holds {marker}); a "
                                  "bundle must not mix with a study's files: choose a directory outside it, e.g. "
                                  f"--out bundles/{directory.name}")


def refuse_foreign(out: Path, listed: FileList | None) -> None:
    """Refuse an ``out`` holding any path no export listed (a symbolic link is never an export's).

    Raises:
        ExportError: naming up to :data:`SHOWN` of them, and the fix.
    """
    foreign = foreign_paths(out, listed)
    if not foreign:
        return
    shown = ", ".join(foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else "")
    if listed is None:
        raise ExportError(f"--out {out}: holds files no export wrote ({shown}); an export never writes beside "
                          "them: choose a new or empty directory")
    raise ExportError(f"--out {out}: holds files its earlier bundle does not list ({shown}); an export never "
                      "removes or writes beside them: move them out of the directory (then --force replaces the "
                      "bundle) or choose a new directory")


def foreign_paths(out: Path, listed: FileList | None) -> list[str]:
    """The paths in ``out`` that ``listed`` does not own, topmost and visible ones first (a foreign
    directory is one entry, not searched further; only the export's own directories are searched)."""
    foreign: list[str] = []
    pending = [out]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: (e.name.startswith("."), e.name)):  # visible names first
                relative = Path(entry.path).relative_to(out).as_posix()
                own = listed is not None and listed.owns(relative) and not entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=False)
                if not own:
                    foreign.append(relative + ("/" if is_dir else ""))
                elif is_dir and relative != listed.staging:
                    pending.append(Path(entry.path))
    return foreign


def remove_listed(out: Path, listed: FileList) -> None:
    """Remove what ``listed`` names: its files, its staging directory, then its directories once empty.

    The list itself stays until :func:`begin_staging` replaces it, so a kill in between leaves it naming
    what is left.
    """
    for relative in listed.files:
        path = out / relative
        if path.is_file() and not path.is_symlink():
            path.unlink()
    if listed.staging and (out / listed.staging).is_dir():
        shutil.rmtree(out / listed.staging)
    for relative in sorted(listed.dirs, key=lambda p: p.count("/"), reverse=True):
        path = out / relative
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()
    for temp in out.glob(".*.tmp"):
        if listed.owns(temp.name) and temp.is_file():
            temp.unlink()


def begin_staging(out: Path) -> Path:
    """List a new staging directory in ``out``, then make it; returns it (the export writes there)."""
    staging = STAGING_PREFIX + secrets.token_hex(6)
    write_list(out, FileList(complete=False, staging=staging))
    path = out / staging
    path.mkdir()
    return path


def finish_staging(out: Path, staging: Path) -> FileList:
    """List everything in ``staging``, move it into ``out`` (``serving.yaml`` last), mark the list complete.

    Raises:
        ExportError: a path of the bundle exists in ``out`` already (nothing is replaced).
    """
    files, dirs = [], []
    for root, subdirs, names in os.walk(staging):
        base = Path(root).relative_to(staging)
        dirs += [(base / d).as_posix() for d in subdirs]
        files += [(base / n).as_posix() for n in names]
    entries = sorted(staging.iterdir(), key=lambda p: (p.name == MANIFEST, p.name))
    clash = [p.name for p in entries if (out / p.name).exists() or (out / p.name).is_symlink()]
    if clash:
        raise ExportError(f"--out {out}: {', '.join(clash)} appeared there while the bundle was written; "
                          "move it away and export again with --force")
    write_list(out, FileList(False, staging.name, tuple(sorted(files)), tuple(sorted(dirs))))
    for entry in entries:
        os.replace(entry, out / entry.name)
    staging.rmdir()
    done = FileList(True, None, tuple(sorted(files)), tuple(sorted(dirs)))
    write_list(out, done)
    return done
