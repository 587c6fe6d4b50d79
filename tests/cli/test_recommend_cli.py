"""``belong recommend`` end to end: a store written from the toy world, the real command-line entry point
(``belong.cli.main``, in-process: exit codes and messages as a user sees them)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest

from belong import surfaces
from belong.cli import main
from belong.datasets import write_world
from belong.eventlog import open_store
from belong.testing.toy_world import toy_world


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("store") / "toy"
    with open_store(path) as st:
        write_world(st, toy_world(), progress=False)
    return str(path)


@pytest.fixture(scope="module")
def surface(tmp_path_factory) -> str:
    """The shipped communities surface with a small iALS and exact search (fast to prepare in tests)."""

    p = surfaces.load("communities")
    ials = next(s for s in p.sources if s.type_name == "ials_ann")
    ials.config.factors, ials.config.iterations, ials.config.ann = 8, 3, "exact"
    path = tmp_path_factory.mktemp("surface") / "communities.toml"
    path.write_text(p.to_toml(), "utf-8")
    return str(path)


@pytest.fixture()
def run(capsys, monkeypatch):
    def call(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["belong", "recommend", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return call


def test_json_with_trace(run, store, surface):
    out = run("--store", store, "--surface", surface, "--user", "alice", "--k", "5", "--json", "--trace")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["surface"] == "communities" and 0 < len(data["items"]) <= 5
    for it in data["items"]:
        assert it["explanation"] and it["sources"] and it["name"]
    assert set(data["trace"]["stage_ms"]) >= {"sources", "hydrate", "filter", "score", "rules", "select"}
    assert {"filter": "safety_rules", "id": "speedrun",
            "reason": "blocked: you blocked this community"} in data["trace"]["removed"]


def test_table_people_and_new_user(run, store, surface):
    out = run("--store", store, "--user", "alice", "--surface", "people", "--k", "3", "--trace")
    assert out.returncode == 0, out.stderr
    assert "people for alice" in out.stdout and "removed by filters" in out.stdout
    assert "this person blocked you" in out.stdout and "stages (ms)" in out.stdout
    new = run("--store", store, "--surface", surface, "--user", "newbie", "--new-user-interests", "gaming",
              "--new-user-locale", "en",
              "--json")
    assert new.returncode == 0, new.stderr
    data = json.loads(new.stdout)
    assert data["new_user"] is True and any("#gaming" in it["explanation"] for it in data["items"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "ghost"], "unknown user id: 'ghost'"),
        (["--user", "alice", "--k", "0"], "k:"),
        (["--user", "alice", "--surface", "nope"], "surface:"),
        (["--user", "x", "--new-user-locale", "not a locale!"], "new-user-locale"),
        (["--user", "x", "--new-user-age", "old"], "new-user-age"),
    ],
)
def test_bad_input_exits_2_with_a_message(run, store, args, message):
    out = run("--store", store, *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_missing_store_exits_2(run, tmp_path):
    out = run("--store", str(tmp_path / "none"), "--user", "a")
    assert out.returncode == 2 and "no store" in out.stderr


def test_answers_from_the_newest_trained_artifact_beside_the_store(run, tmp_path, surface, monkeypatch):
    """Without an artifact the sources are fitted (and the user is told how to make one); after `belong train`
    the newest artifact in the store's models directory answers, with the same list."""
    path = tmp_path / "toy"
    with open_store(path) as st:
        write_world(st, toy_world(), progress=False)
    fitted = run("--store", str(path), "--surface", surface, "--user", "alice", "--k", "5", "--json")
    assert fitted.returncode == 0, fitted.stderr
    assert "no trained artifact" in fitted.stderr and "belong train" in fitted.stderr
    assert json.loads(fitted.stdout)["artifact"] is None
    monkeypatch.setattr(sys, "argv", ["belong", "train", "--store", str(path), "--surface", surface])
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    models = path / "models"
    assert len([p for p in models.iterdir() if p.name != "snapshot"]) == 1  # one artifact (beside the state snapshot)
    loaded = run("--store", str(path), "--surface", surface, "--user", "alice", "--k", "5", "--json")
    assert loaded.returncode == 0, loaded.stderr
    data = json.loads(loaded.stdout)
    assert data["artifact"] and data["artifact"].startswith(str(models)) and "no trained artifact" not in loaded.stderr
    assert [it["id"] for it in data["items"]] == [it["id"] for it in json.loads(fitted.stdout)["items"]]
    # a surface the artifact does not hold is fitted, and --models names a directory explicitly
    people = run("--store", str(path), "--surface", "people", "--user", "alice", "--models", str(models), "--json")
    assert people.returncode == 0 and json.loads(people.stdout)["artifact"] is None
    bad = run("--store", str(path), "--user", "alice", "--models", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and "models" in bad.stderr


def test_why_not_an_item(run, store, surface):
    out = run("--store", store, "--surface", surface, "--user", "alice", "--k", "3", "--json", "--why-not", "speedrun",
              "--why-not", "gaming")
    assert out.returncode == 0, out.stderr
    verdicts = {a["item"]: a for a in json.loads(out.stdout)["why_not"]}
    assert verdicts["speedrun"]["verdict"] == "removed" and "blocked" in verdicts["speedrun"]["reason"]
    assert verdicts["gaming"]["verdict"] in ("shown", "below_cut", "not_a_candidate", "not_selected")
    table = run("--store", store, "--surface", surface, "--user", "alice", "--why-not", "speedrun")
    assert "why not speedrun?" in table.stdout and "removed" in table.stdout
    bad = run("--store", store, "--surface", surface, "--user", "alice", "--why-not", "no-such-thing")
    assert bad.returncode == 2 and "no-such-thing" in bad.stderr
