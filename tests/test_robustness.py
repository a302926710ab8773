"""Bad inputs, tried as a new user would: each gives one clear line and the right exit code.

Every case of ``CASES`` is a row of ``docs/robustness.md`` (``python tests/test_robustness.py``
prints the table from what the tool says today). A case builds its files under ``tmp_path``,
runs the CLI in this process, and checks the exit code (2: a usage error the user fixes by
changing the command or a file; 1: a failure of the run itself), the words of the message, and
that no traceback is printed. Nearly all fail before any training: on the tiny model, in seconds.
"""

from __future__ import annotations

import json
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from search.cli import main
from search.space import load_space
from search.study.study import Study

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "robustness.md"
TINY = ["--space", "tiny.yaml"]
FAST = ["--set", "training.max_steps=1", "--set", "training.max_new_tokens=2", "--json"]


@dataclass(frozen=True)
class Case:
    """One bad input: what it is, how to make it, and what the tool must answer."""

    id: str
    area: str
    what: str
    argv: Callable[["Ctx"], list[str]]
    code: int
    says: tuple[str, ...]
    check: Callable[["Ctx"], None] | None = field(default=None)
    note: str = ""  # for a case that runs: what happens instead of an error
    slow: bool = False  # trains, or builds the session's Per-Pcs pool (tens of seconds on a busy machine)


class Ctx:
    """What a case builds its input in: a temporary directory and the session's fixtures."""

    def __init__(self, tmp: Path, request) -> None:
        self.tmp, self.request = tmp, request

    def write(self, name: str, text: str | bytes) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return str(path)

    def space(self, name: str, edit: Callable[[str], str]) -> str:
        return self.write(name, edit((ROOT / "spaces" / "tiny.yaml").read_text()))

    def jsonl(self, name: str, users: list[dict]) -> str:
        return self.write(name, "".join(json.dumps(u) + "\n" for u in users))

    def pool(self) -> Path:
        return self.request.getfixturevalue("tiny_pool")

    def study(self, name: str = "s", done: int = 4) -> list[str]:
        """A study with ``done`` finished trials, made without training (for resume and export)."""
        space = load_space("tiny.yaml").bind(4).with_overrides(["optimizer.trials=4"])
        study = Study.create(name, self.tmp / "studies", space)
        for i in range(done):
            record = study.add_trial(space.defaults())
            study.complete_trial(record.number, {"rougeL": 0.1 * i, "persona_f1": 1.0 + i, "storage_bytes": 100.0 * i})
        return ["--study-dir", str(self.tmp / "studies")]


def user(uid: str, history: int = 3, queries: int = 4) -> dict:
    return {"user_id": uid, "profile": "likes tea",
            "history": [{"text": f"note {i} on tea and cats"} for i in range(history)],
            "queries": [{"input": f"question {i}?", "output": f"answer {i} about tea"} for i in range(queries)]}


def _replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def _nothing_outside(ctx: Ctx) -> None:
    assert not (ctx.tmp / "escape").exists() and not (ctx.tmp.parent / "escape").exists()


def _broken_pool(ctx: Ctx, name: str, change: Callable[[Path], None]) -> str:
    import shutil

    target = ctx.tmp / name
    shutil.copytree(ctx.pool(), target)
    change(target)
    return str(target)


def _truncate(path: Path) -> None:
    data = (path / "pieces.safetensors").read_bytes()
    (path / "pieces.safetensors").write_bytes(data[:200])


def _other_model(path: Path) -> None:
    index = json.loads((path / "index.json").read_text())
    index["base_model"] = "another-model"
    (path / "index.json").write_text(json.dumps(index))


def _kept(ctx: Ctx, name: str, text: str) -> None:
    """The user's file ``name`` is still there with its text."""
    assert (ctx.tmp / name).read_text() == text


def _unfinished_bundle(ctx: Ctx, name: str) -> str:
    """What an export killed while writing its adapters leaves: its file list and staging directory."""
    ctx.write(f"{name}/.staging-0a1b2c/adapters/u0/adapter_model.safetensors", "x")
    ctx.write(f"{name}/.pers-search-bundle.json", json.dumps({
        "format": "pers-search-bundle-files/1", "complete": False, "staging": ".staging-0a1b2c", "files": [],
        "dirs": []}))
    return str(ctx.tmp / name)


def _users_work(ctx: Ctx, name: str) -> str:
    """A directory of a user's own files (``thesis.tex``, ``data/raw.csv``)."""
    ctx.write(f"{name}/thesis.tex", "\\chapter{Results}")
    ctx.write(f"{name}/data/raw.csv", "a,b\n1,2\n")
    return str(ctx.tmp / name)


def _work_kept(ctx: Ctx) -> None:
    _kept(ctx, "work/thesis.tex", "\\chapter{Results}")
    _kept(ctx, "work/data/raw.csv", "a,b\n1,2\n")


def _study_kept(ctx: Ctx) -> None:
    assert json.loads((ctx.tmp / "studies" / "s" / "study.json").read_text())["trials"], "the study is intact"
    assert not (ctx.tmp / "studies" / "s" / "serving.yaml").exists()


def _one_dir_per_user(ctx: Ctx) -> None:
    names = sorted(p.name for p in (ctx.tmp / "kept").iterdir())
    assert names == ["alice_bob", "alice_bob-0a138d32cb", "user-f0443a342c"], names


SPACE, DATA, CLI, TRACK, POOL, STUDY, EXPORT = "space file", "data file", "CLI", "tracking", "pool", "study", "export"
RUN = ["run", *TINY, "--no-mlflow", "--no-test"]

CASES: list[Case] = [
    # ------------------------------------------------------------------ space files
    Case("space-unknown-key", SPACE, "a top-level key the schema lacks (`colour: red`)",
         lambda c: ["trial", "--space", c.space("s.yaml", lambda t: t + "colour: red\n")], 2,
         ("s.yaml", "colour: unknown key; allowed keys: name, model")),
    Case("space-param-unknown-key", SPACE, "a misspelt parameter key (`hi:` for `high:`)",
         lambda c: ["trial", "--space", c.space("s.yaml", _replace("low: 0, high: 4", "low: 0, hi: 4"))], 2,
         ("parameters.rag.k.hi: unknown key; allowed keys:", "did you mean 'high'?")),
    Case("space-wrong-type", SPACE, "a word where a number goes (`trials: many`)",
         lambda c: ["trial", "--space", c.space("s.yaml", _replace("trials: 4", "trials: many"))], 2,
         ("s.yaml", "optimizer.trials", "'many'")),
    Case("space-empty", SPACE, "an empty file",
         lambda c: ["trial", "--space", c.write("s.yaml", "")], 2,
         ("s.yaml: the file is empty; start from a bundled space",)),
    Case("space-list", SPACE, "a YAML list instead of a mapping",
         lambda c: ["trial", "--space", c.write("s.yaml", "- a\n- b\n")], 2,
         ("top level must be a mapping", "got list")),
    Case("space-broken-yaml", SPACE, "an unclosed `{` in a parameter",
         lambda c: ["trial", "--space", c.write("s.yaml", "name: x\nparameters:\n  a: {type: int, low: 0\n  b: 1\n")],
         2, ("s.yaml: not valid YAML at line 4 column 4", "fix the syntax")),
    Case("space-tab", SPACE, "a tab used for indentation",
         lambda c: ["trial", "--space", c.write("s.yaml", "name: x\nparameters:\n\ta: 1\n")], 2,
         ("not valid YAML at line 3 column 1",)),
    Case("space-not-utf8", SPACE, "a space file in Latin-1 with an accented name",
         lambda c: ["trial", "--space", c.write("s.yaml", "name: caf\xe9\n".encode("latin-1"))], 2,
         ("s.yaml", "not UTF-8")),
    Case("space-missing", SPACE, "a space path that does not exist",
         lambda c: ["trial", "--space", str(c.tmp / "nope.yaml")], 2,
         ("nope.yaml: no such file and no bundled space", "milp, milp-paper, quick, tiny")),
    Case("space-when-cycle", SPACE, "a `when:` cycle (lora.count when rag.k > 0, rag.k when lora.count > 0)",
         lambda c: ["trial", "--space", c.space("s.yaml", _cycle)], 2,
         ("must be an unconditional numeric parameter",)),
    Case("space-when-unknown", SPACE, "a `when:` on a parameter that does not exist",
         lambda c: ["trial", "--space", c.space("s.yaml", _replace('when: "rag.k > 0"', 'when: "rag.n > 0"'))], 2,
         ("parameters.rag.retriever.when: 'rag.n' is not a parameter; use one of:",)),
    Case("space-when-malformed", SPACE, "a `when:` that is not `<param> <op> <number>`",
         lambda c: ["trial", "--space", c.space("s.yaml", _replace('when: "rag.k > 0"', 'when: "rag.k is big"'))], 2,
         ("is not '<param> <op> <number>'",)),
    Case("space-ref-point", SPACE, "a ref point for an objective the space lacks",
         lambda c: ["trial", "--space", c.space("s.yaml", lambda t: t + "  ref_point: {bleu: 0}\n")], 2,
         ("optimizer.ref_point: ['bleu'] are not objectives; use keys from: rougeL",)),
    Case("space-constraint-unknown-metric", SPACE, "a constraint on a metric no trial reports",
         lambda c: ["trial", "--space", c.space("s.yaml", lambda t: t + "constraints: [\"bogus <= 3\"]\n"), *FAST], 2,
         ("constraints: 'bogus <= 3' names a metric the trial runner does not report; use one of:", "rougeL")),
    Case("space-constraint-malformed", SPACE, "a constraint with `<` (only `<=`/`>=` are allowed)",
         lambda c: ["trial", "--space", c.space("s.yaml", lambda t: t + "constraints: [\"storage_bytes < 5\"]\n")], 2,
         ("is not '<metric> <= <number>' or '<metric> >= <number>'",)),
    Case("space-unknown-objective", SPACE, "an objective no trial reports (`bleu: max`)",
         lambda c: ["trial", "--space", c.space("s.yaml", _replace("rougeL: max", "bleu: max")), *FAST], 2,
         ("objectives: bleu not reported by the trial runner; choose from:",)),
    Case("space-bad-direction", SPACE, "an objective direction other than max/min",
         lambda c: ["trial", "--space", c.space("s.yaml", _replace("rougeL: max", "rougeL: up"))], 2,
         ("objectives.rougeL", "'up'")),
    Case("space-param-type", SPACE, "an unknown parameter type",
         lambda c: ["trial", "--space", c.space("s.yaml", _replace("{type: int, low: 0, high: 4", "{type: integer, "
                                                                   "low: 0, high: 4"))], 2,
         ("parameters.rag.k.type: 'integer' is not a parameter type; use one of: layer_mask, int",)),
    Case("space-low-above-high", SPACE, "`low` above `high`",
         lambda c: ["trial", "--space", c.space("s.yaml", _replace("low: 0, high: 4", "low: 5, high: 4"))], 2,
         ("low=5 > high=4; swap them",)),
    Case("space-choice-default", SPACE, "a choice default that is not among the values",
         lambda c: ["trial", "--space", c.space("s.yaml", _replace("default: 4, when", "default: 3, when"))], 2,
         ("default=3 is not one of values=[2, 4, 8]; pick one of them",)),
    Case("space-mask-size", SPACE, "a layer mask sized for another model",
         lambda c: ["trial", "--space", c.space("s.yaml", _replace("default: all,", "size: 7, default: all,"))], 2,
         ("size=7 but the model has 4 layers; remove size or set it to 4",)),
    Case("space-unknown-optimizer", SPACE, "an optimiser name that does not exist",
         lambda c: [*RUN, "--optimizer", "bogus", "--study-dir", str(c.tmp)], 2,
         ("optimizer.name", "bogus", "sobol")),
    # ------------------------------------------------------------------ CLI arguments
    Case("set-no-equals", CLI, "`--set lora.rank` (no `=`)",
         lambda c: ["trial", *TINY, "--set", "lora.rank"], 2, ("--set 'lora.rank': expected key=value",)),
    Case("set-unknown-key", CLI, "`--set colour=red`",
         lambda c: ["trial", *TINY, "--set", "colour=red"], 2,
         ("unknown key 'colour'; use a parameter name (lora.layers", "or a setting under name, model")),
    Case("set-choice-outside", CLI, "`--set lora.rank=5` where the space allows 2, 4, 8",
         lambda c: ["trial", *TINY, "--set", "lora.rank=5"], 2,
         ("--set lora.rank=5: 5 is not allowed for lora.rank in space tiny.yaml; allowed values: 2, 4, 8",)),
    Case("set-int-outside", CLI, "`--set lora.count=9` where the range is 0..3",
         lambda c: ["trial", *TINY, "--set", "lora.count=9"], 2,
         ("9 is outside the range of lora.count", "allowed: 0 to 3")),
    Case("set-int-word", CLI, "`--set rag.k=two`",
         lambda c: ["trial", *TINY, "--set", "rag.k=two"], 2, ("--set rag.k=two: rag.k takes an integer in [0, 4]",)),
    Case("set-layers-outside", CLI, "`--set lora.layers=0,9` on a 4-layer model",
         lambda c: ["trial", *TINY, "--set", "lora.layers=0,9"], 2, ("lora.layers", "9")),
    Case("set-setting-type", CLI, "`--set training.epochs=abc`",
         lambda c: ["trial", *TINY, "--set", "training.epochs=abc"], 2, ("training.epochs", "'abc'")),
    Case("set-setting-unknown", CLI, "`--set training.epoch=2` (misspelt)",
         lambda c: ["trial", *TINY, "--set", "training.epoch=2"], 2,
         ("training.epoch: unknown key; allowed keys:", "did you mean 'epochs'?")),
    Case("set-not-section", CLI, "`--set training.epochs.x=1`",
         lambda c: ["trial", *TINY, "--set", "training.epochs.x=1"], 2, ("'epochs' is not a section",)),
    Case("users-zero", CLI, "`--users 0`",
         lambda c: ["trial", *TINY, "--users", "0"], 2, ("argument --users: 0 is below 1",)),
    Case("users-word", CLI, "`--users two`",
         lambda c: ["trial", *TINY, "--users", "two"], 2, ("argument --users: 'two' is not an integer",)),
    Case("trials-negative", CLI, "`--trials -1`",
         lambda c: [*RUN, "--trials", "-1"], 2, ("argument --trials: -1 is below 1",)),
    Case("init-trials-over", CLI, "`--init-trials 5 --trials 2`",
         lambda c: [*RUN, "--init-trials", "5", "--trials", "2", "--study-dir", str(c.tmp)], 2,
         ("--init-trials 5 exceeds the study's 2 trials (--trials); pass --trials 5 or more",)),
    Case("workers-zero", CLI, "`--workers 0`",
         lambda c: [*RUN, "--workers", "0"], 2, ("argument --workers: 0 is below 1",)),
    Case("study-traversal", CLI, "`--study ../escape` (a path out of --study-dir)",
         lambda c: [*RUN, "--study", "../escape", "--study-dir", str(c.tmp / "studies")], 2,
         ("argument --study: '../escape' is not a plain study name",), _nothing_outside),
    Case("study-absolute", CLI, "an absolute path as the study name",
         lambda c: ["status", "/etc/passwd", "--study-dir", str(c.tmp)], 2,
         ("argument study: '/etc/passwd' is not a plain study name",)),
    Case("study-dir-is-file", STUDY, "`--study-dir` naming a file (nothing can be written there)",
         lambda c: [*RUN, "--study-dir", c.write("sd", "x")], 1,
         ("--study-dir", "cannot write there", "pick a writable --study-dir")),
    Case("no-command", CLI, "`pers-search` with no command",
         lambda c: [], 2, ("pers-search: error: choose a command",)),
    Case("unknown-option", CLI, "`run --trails 3` (misspelt option)",
         lambda c: [*RUN, "--trails", "3"], 2, ("unrecognized arguments: --trails",)),
    # ------------------------------------------------------------------ studies
    Case("resume-lowers-trials", STUDY, "`resume --trials 2` with 4 trials done",
         lambda c: ["resume", "s", "--trials", "2", "--no-mlflow", *c.study()], 2,
         ("the study has 4 finished trials (of 4); pass --trials 4 or more",)),
    Case("resume-missing", STUDY, "`resume` of a study that does not exist",
         lambda c: ["resume", "nope", "--no-mlflow", "--study-dir", str(c.tmp)], 2,
         ("study 'nope': no", "check the study name and --study-dir")),
    Case("study-json-corrupt", STUDY, "a `study.json` cut in half",
         lambda c: ["status", "s", *_corrupt(c)], 2, ("study.json is not valid JSON", "restore the file from a backup")),
    Case("run-existing-other-space", STUDY, "`run` on an existing study name with another space",
         lambda c: [*RUN[:1], "s", "--space", c.space("o.yaml", _replace("high: 3", "high: 2")), "--no-mlflow",
                    *c.study()], 2, ("was created with a different space",)),
    # ------------------------------------------------------------------ data files
    Case("data-missing", DATA, "a data path that does not exist",
         lambda c: ["trial", *TINY, "--data", str(c.tmp / "nope.jsonl"), *FAST], 2,
         ("nope.jsonl does not exist; check the path, or pass 'demo'",)),
    Case("data-empty", DATA, "an empty JSONL file",
         lambda c: ["trial", *TINY, "--data", c.write("e.jsonl", ""), *FAST], 2,
         ("e.jsonl holds no user; write one JSON object per line",)),
    Case("data-truncated-jsonl", DATA, "a JSONL file whose last line is cut off",
         lambda c: ["trial", *TINY, "--data", c.write("t.jsonl", json.dumps(user("a")) + "\n"
                                                       + json.dumps(user("b"))[:47] + "\n"), *FAST], 2,
         ("t.jsonl line 2: invalid JSON: the string that starts at column 42 is never closed (truncated line?)",)),
    Case("data-truncated-json", DATA, "a LaMP-style JSON file cut off",
         lambda c: ["trial", *TINY, "--data", c.write("t.json", '[{"id": "1", "input": "x", "profile": ['), *FAST], 2,
         ("t.json: invalid JSON at line 1 column 40",)),
    Case("data-truncated-jsonl-comma", DATA, "a JSONL line that stops after a comma",
         lambda c: ["trial", *TINY, "--data", c.write("t.jsonl", json.dumps(user("a")) + "\n"
                                                       + '{"user_id": "b", "history": [],\n'), *FAST], 2,
         ("t.jsonl line 2: invalid JSON at column 32: Expecting property name enclosed in double quotes "
          "(the line ends early: truncated?)",)),
    Case("data-latin1", DATA, "a JSONL file in Latin-1, not UTF-8",
         lambda c: ["trial", *TINY, "--data", c.write("l.jsonl", json.dumps(user("caf\xe9"), ensure_ascii=False)
                                                       .encode("latin-1")), *FAST], 2,
         ("l.jsonl: cannot be read as UTF-8 text", "0xe9")),
    Case("data-duplicate-user", DATA, "two lines with the same user_id",
         lambda c: ["trial", *TINY, "--data", c.jsonl("d.jsonl", [user("u1"), user("u1")]), *FAST], 2,
         ("d.jsonl line 2: user_id 'u1' already used on line 1",)),
    Case("data-no-queries", DATA, "users without queries",
         lambda c: ["trial", *TINY, "--data", c.jsonl("q.jsonl", [user("u1", queries=0)]), *FAST], 2,
         ("none of its 1 users has both history and queries",)),
    Case("data-wrong-field-type", DATA, "`history` a string instead of a list",
         lambda c: ["trial", *TINY, "--data", c.jsonl("h.jsonl", [{**user("u1"), "history": "tea"}]), *FAST], 2,
         ("h.jsonl line 1: field 'history' is str 'tea', expected a list of history items",)),
    Case("data-too-few-users", DATA, "`--users 5` on a file of 2 users",
         lambda c: ["trial", *TINY, "--data", c.jsonl("u.jsonl", [user("a"), user("b")]), "--users", "5", *FAST], 2,
         ("users=5 but", "has only 2 users with history and queries; pass users <= 2")),
    Case("data-lamp-no-outputs", DATA, "a LaMP questions file without its outputs file",
         lambda c: ["trial", *TINY, "--data", c.write("lamp_questions.json", json.dumps(
             [{"id": "1", "input": "Which category? article: tea", "profile": [{"id": "p", "text": "t", "title": "t"}]}])),
             *FAST], 2,
         ("no outputs file found (looked for", "lamp_outputs.json); pass the gold outputs file with --outputs")),
    Case("data-unknown-format", DATA, "a JSON object of no known format",
         lambda c: ["trial", *TINY, "--data", c.write("x.json", '{"foo": 1}'), *FAST], 2,
         ("cannot detect its format", "--data-format")),
    Case("data-meddialogue-shape", DATA, "a MedicalDialogue turn without its User side",
         lambda c: ["trial", *TINY, "--data", c.write("m.json", '[[{"1": {"Assistant": "hi"}}]]'), *FAST], 2,
         ("missing field 'turn[0].1.User'; add it",)),
    Case("data-huge-user", DATA, "a user with 10,000 history items (works: training is capped by max_steps)",
         lambda c: ["trial", *TINY, "--data", c.jsonl("big.jsonl", [user("big", history=10_000), user("b")]),
                    "--set", "rag.k=2", *FAST], 0, (),
         note="runs (exit 0): training stops at max_steps, BM25 indexes the 10,000 items, the held-out loss "
              "is measured on 128 of the 1,000 held-out items", slow=True),
    Case("data-user-id-traversal", DATA, "a user_id of `../../etc` with `--keep-adapters --adapters-dir DIR`",
         lambda c: ["trial", *TINY, "--data", c.jsonl("t.jsonl", [user("../../etc"), user("b")]),
                    "--set", "lora.count=1", "--keep-adapters", "--adapters-dir", str(c.tmp / "kept" / "a"), *FAST],
         0, (),
         lambda c: _inside(c.tmp / "kept" / "a", c.tmp),
         note="runs (exit 0): the adapter goes to DIR/_.._etc-74ccf3c5b4 (a user id that is not a plain name "
              "becomes its letters, digits and -_. plus a hash of the id, runners.files.user_file_name); nothing is "
              "written outside DIR"),
    Case("data-test-split-unknown", DATA, "`--set data.test_split=people` (not auto, queries or users)",
         lambda c: ["trial", *TINY, "--set", "data.test_split=people"], 2,
         ("data.test_split: input should be 'auto', 'queries' or 'users' (got 'people')",)),
    Case("data-one-query-no-test", DATA, "`baselines --split test` on users with one query each, "
         "`data.test_split=queries` (works: one line, nothing to evaluate)",
         lambda c: ["baselines", *TINY, "--data", c.jsonl("o.jsonl", [user("a", queries=1), user("b", queries=1)]),
                    "--split", "test", "--set", "data.test_split=queries"], 0,
         ("no test queries: every user has a single query, kept for validation by data.test_split=queries",
          "nothing to evaluate (use --split val)"),
         note="runs (exit 0): one line, `--split test: no test queries: every user has a single query, kept for "
              "validation by data.test_split=queries (auto or users holds out whole users for the test instead); "
              "nothing to evaluate (use --split val)`; with the default test_split=auto whole users are held out"),
    # ------------------------------------------------------------------ tracking
    Case("tracking-bad-scheme-run", TRACK, "`run --tracking-uri foo://bar`",
         lambda c: ["run", *TINY, "--tracking-uri", "foo://bar", "--study-dir", str(c.tmp)], 2,
         ("--tracking-uri foo://bar: unsupported scheme foo://; use one of file://, sqlite://",)),
    Case("tracking-bad-scheme-ui", TRACK, "`ui --tracking-uri foo://bar`",
         lambda c: ["ui", "--tracking-uri", "foo://bar", "--port", "5999"], 2, ("unsupported scheme foo://",)),
    Case("tracking-unreachable", TRACK, "an MLflow server that does not answer",
         lambda c: ["run", *TINY, "--tracking-uri", "http://127.0.0.1:9", "--study-dir", str(c.tmp)], 1,
         ("tracking server http://127.0.0.1:9 is unreachable", "--no-mlflow")),
    Case("tracking-store-not-dir", TRACK, "an `mlruns` that is a file, so the store cannot be created",
         lambda c: ["run", *TINY, "--tracking-uri", f"sqlite:///{c.write('mlruns', 'x')}/mlflow.db",
                    "--study-dir", str(c.tmp)], 1, ("cannot create", "pass a writable --tracking-uri")),
    Case("tracking-store-not-sqlite", TRACK, "an `mlflow.db` that is not a SQLite database",
         lambda c: ["run", *TINY, "--tracking-uri", f"sqlite:///{c.write('m/mlflow.db', 'notes, not a database')}",
                    "--study-dir", str(c.tmp)], 1, ("cannot open it", "file is not a database",
                                                    "pass another --tracking-uri")),
    Case("tracking-file-store-run", TRACK, "`run --tracking-uri file:///...` (MLflow 3 refuses its file store)",
         lambda c: ["run", *TINY, "--tracking-uri", (c.tmp / "mlruns").as_uri(), "--study-dir", str(c.tmp)], 2,
         ("keeps its file store in maintenance mode", "--tracking-uri sqlite:///", "/mlruns/mlflow.db",
          "MLFLOW_ALLOW_FILE_STORE=true")),
    Case("tracking-file-store-ui", TRACK, "`ui --tracking-uri file:///...`",
         lambda c: ["ui", "--tracking-uri", (c.tmp / "mlruns").as_uri(), "--port", "5999"], 2,
         ("keeps its file store in maintenance mode", "/mlruns/mlflow.db")),
    # ------------------------------------------------------------------ pools
    Case("pool-other-model", POOL, "a Per-Pcs pool built for another base model",
         lambda c: ["trial", *TINY, "--pool", _broken_pool(c, "p", _other_model), "--set", "perpcs.top_k=1", *FAST], 2,
         ("built for base model 'another-model', but the model is 'tiny'",), slow=True),
    Case("pool-truncated", POOL, "a pool whose pieces.safetensors is truncated",
         lambda c: ["trial", *TINY, "--pool", _broken_pool(c, "p", _truncate), "--set", "perpcs.top_k=1", *FAST], 2,
         ("pieces.safetensors is not a readable safetensors file", "rebuild the pool"), slow=True),
    Case("pool-missing", POOL, "`--pool` naming an empty directory",
         lambda c: ["trial", *TINY, "--pool", str(c.tmp), "--set", "perpcs.top_k=1", *FAST], 2,
         ("pool build",)),
    # ------------------------------------------------------------------ export
    Case("export-out-not-empty", EXPORT, "`export --out` a directory holding a file no export wrote, no --force",
         lambda c: ["export", "s", *c.study(), "--out", str(Path(c.write("out/x", "keep")).parent)], 2,
         ("holds files no export wrote (x); an export never writes beside them: choose a new or empty "
          "directory",), lambda c: _kept(c, "out/x", "keep")),
    Case("export-out-unfinished", EXPORT, "`export --out` a bundle a killed export left (its file list names a staging "
         "directory, no serving.yaml), no --force",
         lambda c: ["export", "s", *c.study(), "--out", _unfinished_bundle(c, "half")],
         2, ("holds an unfinished export", "pass --force to redo it")),
    Case("export-out-file", EXPORT, "`export --out` an existing file",
         lambda c: ["export", "s", *c.study(), "--out", c.write("out", "x")], 2, ("is a file; give a directory path",)),
    Case("export-pick-nothing", EXPORT, "a pick that matches nothing",
         lambda c: ["export", "s", *c.study(), "--pick", "knee where rougeL>=5", "--out", str(c.tmp / "o")], 2,
         ("matches nothing in study 's'",)),
    Case("export-pick-malformed", EXPORT, "a pick expression that does not parse",
         lambda c: ["export", "s", *c.study(), "--pick", "best", "--out", str(c.tmp / "o")], 2,
         ("--pick 'best': cannot read 'best'",)),
    Case("export-pick-missing-trial", EXPORT, "`--pick trial:99` in a study of 4 trials",
         lambda c: ["export", "s", *c.study(), "--pick", "trial:99", "--out", str(c.tmp / "o")], 2,
         ("has trials 0..3",)),
    # ------------------------------------------------------------------ ownership and names (issue 33)
    Case("export-force-foreign", EXPORT, "`export --force` into a directory of a user's files (`thesis.tex`, `data/`)",
         lambda c: ["export", "s", *c.study(), "--out", _users_work(c, "work"), "--force"], 2,
         ("holds files no export wrote (data/, thesis.tex)", "choose a new or empty directory"),
         _work_kept),
    Case("export-out-study-dir", EXPORT, "`export s --out studies/s --force` (into the study's own directory)",
         lambda c: ["export", "s", *c.study(), "--out", str(c.tmp / "studies" / "s"), "--force"], 2,
         ("lies in the study directory", "(it holds study.json)", "choose a directory outside it"), _study_kept),
    Case("export-out-root", EXPORT, "`export --out /`",
         lambda c: ["export", "s", *c.study(), "--out", "/"], 2,
         ("--out /: holds files no export wrote", "choose a new or empty directory")),
    Case("pool-build-foreign", POOL, "`pool build --pool DIR` where DIR holds a user's files (`thesis.tex`, `data/`)",
         lambda c: ["pool", "build", *TINY, "--pool", _users_work(c, "work")], 2,
         ("holds files no pool build wrote (data/, thesis.tex)", "choose a new or empty --pool"),
         _work_kept),
    Case("pool-build-force-foreign", POOL, "the same with `--force`",
         lambda c: ["pool", "build", *TINY, "--pool", _users_work(c, "work"), "--force"], 2,
         ("holds files no pool build wrote (data/, thesis.tex)",), _work_kept),
    Case("data-user-id-collision", DATA, "user ids `alice/bob`, `alice_bob` and an emoji, with `--keep-adapters "
         "--adapters-dir DIR`",
         lambda c: ["trial", *TINY, "--data", c.jsonl("c.jsonl", [user("alice/bob"), user("alice_bob"),
                                                                  user("\U0001F600")]), "--users", "3",
                    "--set", "lora.count=1", "--keep-adapters", "--adapters-dir", str(c.tmp / "kept"), *FAST],
         0, (), _one_dir_per_user,
         note="runs (exit 0): one directory per user, DIR/alice_bob-0a138d32cb, DIR/alice_bob and "
              "DIR/user-f0443a342c (ids that are plain names keep them; others get a hash of the id)"),
]


def _inside(kept: Path, root: Path) -> None:
    """Everything the trial wrote is under ``kept``: nothing climbed out with the user id."""
    written = [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".jsonl")]
    assert written and all(kept in p.parents for p in written), written
    assert not (root / "etc").exists() and not (root.parent / "etc").exists()


def _corrupt(ctx: Ctx) -> list[str]:
    args = ctx.study()
    path = ctx.tmp / "studies" / "s" / "study.json"
    path.write_text(path.read_text()[:300])
    return args


def _cycle(text: str) -> str:
    text = _replace("default: 1}", 'default: 1, when: "rag.k > 0"}')(text)
    return _replace("high: 4, default: 0}", 'high: 4, default: 0, when: "lora.count > 0"}')(text)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr); argparse's exits count."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES])
def test_bad_input(case: Case, tmp_path, capsys, request, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ctx = Ctx(tmp_path, request)
    argv = case.argv(ctx)
    capsys.readouterr()
    code, out, err = run_cli(argv, capsys)
    assert code == case.code, err or out
    for words in case.says:
        assert words in err, f"{words!r} not in: {err}"
    assert "Traceback" not in out + err
    if case.code:
        assert "pers-search" in err and "error" in err, err
    if case.check:
        case.check(ctx)


def test_unwritable_study_dir_is_a_one_line_failure(tmp_path, capsys):
    """Without root, a read-only --study-dir fails with exit 1, naming the directory."""
    if os.geteuid() == 0:
        pytest.skip("root writes through permissions")
    tmp_path.chmod(0o500)
    try:
        code, _, err = run_cli([*RUN, "--study-dir", str(tmp_path / "s")], capsys)
    finally:
        tmp_path.chmod(0o700)
    assert code == 1 and str(tmp_path) in err and "Traceback" not in err


@pytest.mark.slow
def test_full_disk_during_a_study_stops_it_cleanly(tmp_path, capsys, monkeypatch):
    """ENOSPC on the third study.json write: exit 1, a message that says the disk is full and what
    to do, and the study file as it was before (the write is atomic)."""
    import search.study.study

    real, calls = search.study.study.atomic_write, []

    def full(path, text):
        if Path(path).name == "study.json":
            calls.append(path)
            if len(calls) == 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(search.study.study, "atomic_write", full)
    code, _, err = run_cli([*RUN, "s", "--trials", "2", "--study-dir", str(tmp_path), *FAST[:-1]], capsys)
    assert code == 1, err
    assert "No space left on device" in err and "the disk is full: free space on it" in err
    assert "Traceback" not in err
    saved = json.loads((tmp_path / "s" / "study.json").read_text())
    assert [t["state"] for t in saved["trials"]] == ["running"]


UNSAFE_LOADERS = ("torch.load(", "pickle.load(", "pickle.loads(", "yaml.load(", "yaml.unsafe_load", "allow_pickle=True",
                  "dill.", "joblib.load", "use_safetensors=False")


def test_no_unsafe_loader_in_the_code():
    """Adapters, pools and caches come from safetensors, JSON and NumPy without pickle; YAML is safe-loaded."""
    found = [f"{path.relative_to(ROOT)}: {needle}" for folder in ("runners", "search") for path in
             (ROOT / folder).rglob("*.py") for needle in UNSAFE_LOADERS if needle in path.read_text(encoding="utf-8")]
    assert not found, found


def test_doc_lists_every_case():
    text = DOC.read_text(encoding="utf-8")
    missing = [c.id for c in CASES if f"`test_bad_input[{c.id}]`" not in text]
    assert not missing, f"docs/robustness.md lacks rows for: {missing} (python tests/test_robustness.py prints them)"
    assert len(CASES) >= 40


def markdown_rows() -> str:
    """The table of docs/robustness.md from what the tool says now (run this file as a script)."""
    import tempfile

    rows = ["| # | area | bad input | exit | what the tool says | test |", "|---|---|---|---|---|---|"]
    for n, case in enumerate(CASES, 1):
        with tempfile.TemporaryDirectory() as tmp:
            said = _said(case, Path(tmp))
        said = said if len(said) < 320 else said[:220] + " ... " + said[-95:]  # keep the fix at the end
        rows.append(f"| {n} | {case.area} | {case.what} | {case.code} | {said} | `test_bad_input[{case.id}]` |")
    return "\n".join(rows)


def _said(case: Case, tmp: Path) -> str:
    import contextlib
    import io

    class _Req:
        def getfixturevalue(self, name):
            return _script_pool()

    err = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main(case.argv(Ctx(tmp, _Req())))
            except SystemExit:
                pass
    finally:
        os.chdir(cwd)
    lines = [line for line in err.getvalue().splitlines() if "error" in line]
    text = lines[-1] if lines else (case.note or "(runs: exit 0)")
    return text.replace(str(tmp) + "/", "").replace(str(tmp), ".").replace("|", "\\|")


_POOL: list[Path] = []


def _script_pool() -> Path:
    """The tiny pool, built once, when this file runs as a script (the tests use ``tiny_pool``)."""
    if not _POOL:
        import contextlib
        import io
        import tempfile

        _POOL.append(Path(tempfile.mkdtemp(prefix="pool-")))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            main(["pool", "build", *TINY, "--sharers", "2", "--strategy", "most-active", "--gate-steps", "2",
                  "--pool", str(_POOL[0]), "--json"])
    return _POOL[0]


if __name__ == "__main__":
    import tempfile

    home = tempfile.mkdtemp(prefix="robustness-")
    os.environ.setdefault("PERS_SEARCH_HOME", home)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
    print(markdown_rows())
