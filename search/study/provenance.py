"""What a study's trials ran on: model, data (with the data files' content hashes), training and
evaluation settings. A study records it when it is created; resuming it with a different one is
refused with the difference, so no front ever mixes trials of two data sets or budgets.

The model's ``device`` is left out: the same study may go on on another machine or a GPU. Data
files are compared by content (sha256), not by the path that names them, so a moved file is the
same data and an edited one is not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from search.space import Space

_IGNORED = {("model", "device")}
_FILES = ("source", "outputs")
_HASHES: dict[tuple, str] = {}  # (resolved path, mtime_ns, size) -> sha256


def file_sha256(path: str | Path) -> str | None:
    """The sha256 of a file's bytes, or None when it is not a readable file.

    Hashed once per process and file version (path, modification time, size): a per-user study
    checks the provenance of every user's study, and a cohort's data file may be large.
    """
    try:
        stat = Path(path).stat()
    except (OSError, ValueError):
        return None
    key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _HASHES:
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return None
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def provenance(space: Space) -> dict[str, Any]:
    """The record of what trials of ``space`` run on (JSON-ready)."""
    raw = space.model_dump(mode="json")
    record: dict[str, Any] = {}
    for section in ("model", "data", "training"):
        record[section] = {k: v for k, v in raw[section].items() if (section, k) not in _IGNORED}
    files = {}
    for key in _FILES:
        value = raw["data"].get(key)
        if value and value != "demo" and Path(value).is_file():
            files[f"data.{key}"] = file_sha256(value)
    record["files"] = files
    return record


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two provenance records, one readable item each (empty: the same).

    A data file present in both is compared by its hash; its path may differ. A setting only one
    side has (added by a newer version of the tool) is not compared.
    """
    out = []
    old_files, new_files = old.get("files", {}), new.get("files", {})
    for section in ("model", "data", "training"):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            dotted = f"{section}.{key}"
            if dotted in old_files and dotted in new_files:
                if old_files[dotted] != new_files[dotted]:
                    out.append(f"{dotted}: {a.get(key)} (sha256 {old_files[dotted][:12]}) -> {b.get(key)} "
                               f"(sha256 {new_files[dotted][:12]}), other content")
                continue
            if key in a and key in b and _same(a[key], b[key]):
                continue
            if key not in a or key not in b:
                continue  # a setting one version lacks: not comparable, not a reason to refuse
            out.append(f"{dotted}: {_show(a[key])} -> {_show(b[key])}")
    return out


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _show(value: Any) -> str:
    """A value for a message; a long path keeps its end (the file name), other long values their start."""
    text = json.dumps(value)
    if len(text) <= 60:
        return text
    return '"...' + text[-56:] if isinstance(value, str) and "/" in value else text[:57] + "..."
