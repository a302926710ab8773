"""Where a per-user study lives on disk: ``<study>/cohort.json`` and one study per user under ``users/``."""

from __future__ import annotations

from pathlib import Path

from runners.files import user_file_name
from search.errors import StudyError
from search.study.record import CohortFile, read_json, validate_cohort_file

COHORT_FILE = "cohort.json"
USERS_DIR = "users"


def user_study_name(name: str, user: str) -> str:
    """The study name (and directory below the study dir) of one user of a per-user study."""
    return f"{name}/{USERS_DIR}/{user_file_name(user)}"


def is_cohort(name: str, study_dir: str | Path) -> bool:
    """True when ``<study_dir>/<name>`` holds a per-user study."""
    return (Path(study_dir) / name / COHORT_FILE).exists()


def read_cohort_file(name: str, study_dir: str | Path) -> CohortFile:
    """``cohort.json``, validated (a damaged or hand-edited file is one line naming the field).

    Raises:
        StudyError: no such per-user study, or a damaged ``cohort.json``.
    """
    path = Path(study_dir) / name / COHORT_FILE
    what = f"study {name!r}"
    try:
        data = read_json(path, what)
    except FileNotFoundError as err:
        raise StudyError(f"study {name!r}: no {path}; check the study name and --study-dir") from err
    return validate_cohort_file(data, path, what)
