"""Nothing deleted that the tool did not write, and one file name per user id (issue 33, items 3-5).

Real CLI calls on the tiny space: a user's files put where ``pool build`` and ``export`` write
must survive byte for byte (refused with one line, exit 2, with or without ``--force``);
``--force`` replaces an earlier pool or bundle of the tool's own; an export into a study
directory is refused and the study's kept adapters survive. User ids that a file-name filter
would merge (``alice/bob`` and ``alice_bob``) get their own adapter directories, bundle entries
and per-user studies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import unicodedata
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from runners.errors import DataError
from runners.files import USER_NAME_LIMIT, user_file_name, user_file_names
from search.cli import main

TINY = ["--space", "tiny.yaml"]
QUIET = ["--no-mlflow", "--no-test"]
FILE_LIST = ".pers-search-bundle.json"
POOL_ARGS = ["pool", "build", *TINY, "--strategy", "most-active"]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: file bytes, or None for a directory."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def users_files(root: Path) -> dict[str, bytes | None]:
    """A user's own work in ``root`` (made if missing); returns its snapshot."""
    (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (root / "thesis.tex").write_text("\\chapter{Results}\n")
    (root / "data" / "raw" / "sample.bin").write_bytes(os.urandom(64))
    return snapshot(root)


def refused(code: int, err: str, *words: str) -> None:
    """Exit 2 with one error line holding ``words``, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("pers-search: error: "), err
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


def hidden_siblings(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.parent.iterdir() if p.name.startswith(f".{directory.name}."))


# ------------------------------------------------------------------------------------ pool build
@pytest.mark.parametrize("force", [False, True])
def test_pool_build_refuses_a_directory_holding_a_users_files(tmp_path, capsys, force):
    pool = tmp_path / "work"
    before = users_files(pool)
    code, _, err = run_cli([*POOL_ARGS, "--pool", str(pool), *(["--force"] if force else [])], capsys)
    refused(code, err, f"{pool} holds files no pool build wrote (data/, thesis.tex)", "choose a new or empty --pool")
    assert snapshot(pool) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"], "nothing written beside it either"


def test_pool_force_replaces_an_earlier_pool_and_nothing_else(tiny_pool, tmp_path, capsys):
    """``--force`` over a pool of the tool's own: the new pool's files only; a directory the old
    temp-directory pattern would have removed (``<pool>.tmp<pid>``) is left alone; a user's file
    beside the pool makes ``--force`` refuse."""
    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    bystander = tmp_path / f"pool.tmp{os.getpid()}"
    bystander.mkdir()
    (bystander / "mine.txt").write_text("not the tool's")
    old_index = json.loads((pool / "index.json").read_text())
    code, _, err = run_cli([*POOL_ARGS, "--pool", str(pool), "--sharers", "1", "--gate-steps", "1", "--steps", "1",
                            "--force", "--json"], capsys)
    assert code == 0, err
    index = json.loads((pool / "index.json").read_text())
    assert index["settings"]["sharers"] == 1 != old_index["settings"]["sharers"]
    assert sorted(p.name for p in pool.iterdir()) == ["gates.safetensors", "index.json", "pieces.safetensors"]
    assert index["files"] == ["pieces.safetensors", "gates.safetensors"], "the index lists the pool's files"
    assert (bystander / "mine.txt").read_text() == "not the tool's"
    assert hidden_siblings(pool) == [], "no temp or old directory is left beside the pool"

    (pool / "notes.md").write_text("my notes on this pool")
    before = snapshot(pool)
    code, _, err = run_cli([*POOL_ARGS, "--pool", str(pool), "--sharers", "1", "--force"], capsys)
    refused(code, err, "holds files no pool build wrote (notes.md)")
    assert snapshot(pool) == before


def test_pool_build_into_an_empty_directory_keeps_it(tmp_path):
    """An empty ``--pool`` directory is fine (the session's ``tiny_pool`` was built into one); a
    file given as ``--pool`` is refused."""
    from runners.errors import ConfigError
    from runners.perpcs.pool import check_pool_dir

    assert check_pool_dir(tmp_path) is False and check_pool_dir(tmp_path / "new") is False
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; give a new or empty directory as --pool"):
        check_pool_dir(tmp_path / "file")


# ------------------------------------------------------------------------------------ export
@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """A one-trial tiny study that kept its adapters (memory and retrieval, so every bundle part)."""
    root = tmp_path_factory.mktemp("kept")
    assert main(["run", "s", *TINY, "--trials", "1", "--init-trials", "1", "--keep-adapters", "--study-dir",
                 str(root / "studies"), "--set", "lora.count=1", "--set", "rag.k=1", *QUIET]) == 0
    return root / "studies"


def export_argv(studies: Path, out: Path | str, *extra: str) -> list[str]:
    return ["export", "s", "--study-dir", str(studies), "--pick", "trial:0", "--out", str(out), *extra]


@pytest.mark.parametrize("force", [False, True])
def test_export_refuses_a_directory_holding_a_users_files(kept, tmp_path, capsys, force):
    out = tmp_path / "work"
    before = users_files(out)
    code, _, err = run_cli(export_argv(kept, out, *(["--force"] if force else [])), capsys)
    refused(code, err, f"--out {out}: holds files no export wrote (data/, thesis.tex)", "choose a new or empty")
    assert "--force" not in err, "the hint names --force only for a directory holding an earlier bundle"
    assert snapshot(out) == before


def test_export_to_the_root_directory_is_refused_without_recommending_force(kept, capsys):
    before = sorted(os.listdir("/"))
    code, _, err = run_cli(export_argv(kept, "/", "--force"), capsys)
    refused(code, err, "--out /: holds files no export wrote")
    assert "--force" not in err
    assert sorted(os.listdir("/")) == before


def test_export_into_the_study_directory_is_refused_and_its_adapters_survive(kept, capsys):
    """``export STUDY --out studies/STUDY --force`` once deleted every kept adapter of the study."""
    study = kept / "s"
    assert list(study.glob("adapters/*/*/adapter_model.safetensors")), "the study kept adapters"
    before = snapshot(study)
    for out in (study, study / "adapters", study / "bundle"):
        code, _, err = run_cli(export_argv(kept, out, "--force"), capsys)
        refused(code, err, f"--out {out}: lies in the study directory {study} (it holds study.json)",
                "choose a directory outside it")
        assert snapshot(study) == before


def test_force_replaces_an_earlier_bundle_but_not_a_file_put_in_it(kept, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert run_cli(export_argv(kept, out), capsys)[0] == 0
    code, _, err = run_cli(export_argv(kept, out), capsys)
    refused(code, err, "holds an earlier bundle; pass --force to replace it")
    code, _, err = run_cli(export_argv(kept, out, "--force"), capsys)
    assert code == 0, err
    listed = json.loads((out / FILE_LIST).read_text())
    assert listed["complete"] is True and listed["staging"] is None
    assert sorted([*listed["files"], FILE_LIST]) == sorted(k for k, v in snapshot(out).items() if v is not None)

    user = next(iter(yaml.safe_load((out / "serving.yaml").read_text())["adapters"].values()))["path"]
    (out / user / "my-eval.csv").write_text("id,score\n1,0.5\n")
    before = snapshot(out)
    code, _, err = run_cli(export_argv(kept, out, "--force"), capsys)
    refused(code, err, f"holds files its earlier bundle does not list ({user}/my-eval.csv)", "move them out")
    assert snapshot(out) == before, "the bundle and the user's file are untouched"


def test_a_stopped_export_is_refused_then_redone_with_force(kept, tmp_path, capsys, monkeypatch):
    """A disk that fills while the bundle is written: the file list names the staging directory,
    the same export without --force says it is unfinished, and --force redoes it cleanly."""
    import errno

    import search.export.bundle

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "bundle"
    with monkeypatch.context() as patch:
        patch.setattr(search.export.bundle, "vllm_script", full)
        code, _, err = run_cli(export_argv(kept, out), capsys)
    assert code == 1 and "No space left on device" in err, err
    listed = json.loads((out / FILE_LIST).read_text())
    assert listed["complete"] is False and (out / listed["staging"]).is_dir()
    assert not (out / "serving.yaml").exists()
    code, _, err = run_cli(export_argv(kept, out), capsys)
    refused(code, err, "holds an unfinished export", "pass --force to redo it")
    code, _, err = run_cli(export_argv(kept, out, "--force"), capsys)
    assert code == 0, err
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [FILE_LIST], "no staging left"
    assert json.loads((out / FILE_LIST).read_text())["complete"] is True


# ------------------------------------------------------------------------------------ one-to-one names
ODD_IDS = ["", ".", "..", "...", "/", "../..", "../../etc", "alice/bob", "alice_bob", "alice?bob", "alice bob",
           "Alice", "alice", "ALICE", "\U0001F600", "\U0001F600\U0001F600", "\U0001F642", "caf\u00e9",
           unicodedata.normalize("NFD", "caf\u00e9"), "cafe", ".hidden", "hidden", "x-0123456789", "x-0123456789abc",
           "X-0123456789", "a" * USER_NAME_LIMIT, "a" * (USER_NAME_LIMIT + 1), "a" * 500, "a" * 501, "\x00", "a\nb",
           "con", "user", "user-5ec1f7e700", "\ud800"]


def _case_variants(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(v for i in ids for v in (i, i.lower(), i.upper(), i.swapcase(), i.title())))


def _check_names(ids: list[str]) -> None:
    names = [user_file_name(i) for i in ids]
    assert names == [user_file_name(i) for i in ids], "stable"
    assert len(set(names)) == len(ids), "one-to-one"
    assert len({n.casefold() for n in names}) == len(ids), "one-to-one on a case-insensitive file system too"
    for raw, name in zip(ids, names):
        assert name.isascii() and 0 < len(name) <= USER_NAME_LIMIT, (raw, name)
        assert name.strip(".") and not name.startswith(".") and "/" not in name and "\\" not in name, (raw, name)
        assert all(c.isalnum() or c in "-_." for c in name), (raw, name)
        if name != raw:
            digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:10]
            assert name.endswith(f"-{digest}"), (raw, name)


def test_odd_ids_get_distinct_names():
    ids = _case_variants(ODD_IDS)
    _check_names(ids)
    assert user_file_names(ids) == {i: user_file_name(i) for i in ids}
    assert [user_file_name(i) for i in ("u0", "alice_bob", "lamp-310", "a.b")] == ["u0", "alice_bob", "lamp-310", "a.b"]
    assert user_file_name("alice/bob") == "alice_bob-0a138d32cb" and user_file_name("Alice").startswith("Alice-")
    assert user_file_name("../../etc").startswith("_.._etc-") and user_file_name("\U0001F600").startswith("user-")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=120), st.sampled_from(ODD_IDS),
                          st.from_regex(r"[a-z0-9_.-]{1,90}(-[0-9a-f]{10})?", fullmatch=True)),
                min_size=1, max_size=12, unique=True))
def test_names_are_one_to_one_and_stable_over_random_ids(ids):
    _check_names(_case_variants(ids))


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[a-z0-9_-][a-z0-9_.-]{0,79}", fullmatch=True))
def test_a_plain_id_is_its_own_name(uid):
    hashed_shape = len(uid) > 11 and uid[-11] == "-" and all(c in "0123456789abcdef" for c in uid[-10:])
    assert (user_file_name(uid) == uid) is not hashed_shape


def test_a_hash_collision_in_a_cohort_is_refused(monkeypatch):
    import runners.files

    monkeypatch.setattr(runners.files, "user_file_name", lambda uid: "same-0123456789")
    with pytest.raises(DataError, match="user ids 'a/b' and 'a_b' get the same file name 'same-0123456789'"):
        user_file_names(["a/b", "a_b"])


def _user(uid: str, topic: str) -> dict:
    return {"user_id": uid, "profile": f"writes about {topic}",
            "history": [{"text": f"note {i}: {topic} is what I think about, {topic} again"} for i in range(4)],
            "queries": [{"input": f"what about {topic} {i}?", "output": f"{topic} answer {i}"} for i in range(4)]}


@pytest.fixture(scope="module")
def colliding_data(tmp_path_factory) -> Path:
    """Two users whose ids the old file-name filter mapped to one directory, with different histories."""
    path = tmp_path_factory.mktemp("data") / "users.jsonl"
    path.write_text("".join(json.dumps(u) + "\n" for u in (_user("alice/bob", "sailing boats"),
                                                             _user("alice_bob", "baking bread"))))
    return path


def test_colliding_ids_get_their_own_adapters_and_bundle_entries(colliding_data, tmp_path, capsys):
    studies, out = tmp_path / "studies", tmp_path / "bundle"
    code, _, err = run_cli(["run", "c", *TINY, "--data", str(colliding_data), "--trials", "1", "--init-trials", "1",
                            "--keep-adapters", "--study-dir", str(studies), "--set", "lora.count=1", "--set", "rag.k=1",
                            *QUIET], capsys)
    assert code == 0, err
    trial = json.loads((studies / "c" / "study.json").read_text())["trials"][0]
    assert sorted(trial["user_attrs"]["users"]) == ["alice/bob", "alice_bob"]
    kept = Path(trial["user_attrs"]["adapter_dir"])
    names = {"alice/bob": "alice_bob-0a138d32cb", "alice_bob": "alice_bob"}
    assert sorted(p.name for p in kept.iterdir()) == sorted(names.values())
    weights = {u: (kept / n / "adapter_model.safetensors").read_bytes() for u, n in names.items()}
    assert weights["alice/bob"] != weights["alice_bob"], "two users, two trained adapters"

    code, _, err = run_cli(["export", "c", "--study-dir", str(studies), "--pick", "trial:0", "--out", str(out)], capsys)
    assert code == 0, err
    manifest = yaml.safe_load((out / "serving.yaml").read_text())
    assert manifest["users"] == ["alice/bob", "alice_bob"]
    for user, name in names.items():
        entry = manifest["adapters"][user]
        assert (entry["path"], entry["lora_name"]) == (f"adapters/{name}", name)
        assert entry["vllm_path"] in (f"adapters/{name}", f"vllm/{name}"), "padded to a vLLM rank or not"
        assert (out / entry["path"] / "adapter_model.safetensors").read_bytes() == weights[user]
        assert f"{name}=./{entry['vllm_path']} " in manifest["vllm"]["command"] + " "
        profile = manifest["retrieval"]["profiles"][user]
        assert profile == f"users/{name}/profile.jsonl"
        topic = "sailing" if user == "alice/bob" else "baking"
        assert all(topic in line for line in (out / profile).read_text().splitlines())
    request = json.loads((out / "request.json").read_text())
    assert request["model"] == manifest["adapters"][manifest["request"]["user"]]["lora_name"]
    code, printed, err = run_cli(["prompt", str(out), "--user", "alice/bob", "--query", "boats?", "--json"], capsys)
    assert code == 0 and json.loads(printed)["model"] == "alice_bob-0a138d32cb", err


def test_colliding_ids_each_get_their_own_per_user_study(colliding_data, tmp_path, capsys):
    studies = tmp_path / "studies"
    code, _, err = run_cli(["run", "pu", *TINY, "--data", str(colliding_data), "--per-user", "--trials", "1",
                            "--init-trials", "1", "--study-dir", str(studies), "--set", "lora.count=1", *QUIET], capsys)
    assert code == 0, err
    for user, name in (("alice/bob", "alice_bob-0a138d32cb"), ("alice_bob", "alice_bob")):
        trials = json.loads((studies / "pu" / "users" / name / "study.json").read_text())["trials"]
        assert [t["state"] for t in trials] == ["completed"], f"{user} ran its own trial"
        assert set(trials[0]["user_attrs"]["users"]) == {user}
    code, printed, err = run_cli(["status", "pu", "--study-dir", str(studies), "--json"], capsys)
    assert code == 0, err
    assert {r["user"]: r["trials"] for r in json.loads(printed)["users"]} == {"alice/bob": 1, "alice_bob": 1}


def test_an_old_study_without_a_users_directory_is_trained_again(colliding_data, tmp_path):
    """A study kept before one-to-one names holds ``alice_bob`` only (the old filter's name of both
    users): export must not serve it to ``alice/bob``; it warns and trains the trial again."""
    from search.export import export_bundle
    from search.study.study import Study

    studies = tmp_path / "studies"
    assert main(["run", "old", *TINY, "--data", str(colliding_data), "--trials", "1", "--init-trials", "1",
                 "--keep-adapters", "--study-dir", str(studies), "--set", "lora.count=1", *QUIET]) == 0
    study = Study.load("old", studies)
    kept = Path(study.trials[0].user_attrs["adapter_dir"])
    mine = (kept / "alice_bob-0a138d32cb" / "adapter_model.safetensors").read_bytes()
    shutil.rmtree(kept / "alice_bob-0a138d32cb")
    with pytest.warns(UserWarning, match=r"holds no adapter directory for users \['alice/bob'\].*training the trial "
                                         "again"):
        bundle = export_bundle(study, "trial:0", tmp_path / "bundle")
    served = bundle.out / bundle.manifest["adapters"]["alice/bob"]["path"] / "adapter_model.safetensors"
    assert served.read_bytes() == mine, "the re-trained adapter is alice/bob's own (runs are deterministic)"
    assert (bundle.out / "adapters" / "alice_bob" / "adapter_model.safetensors").read_bytes() == \
        (kept / "alice_bob" / "adapter_model.safetensors").read_bytes()
