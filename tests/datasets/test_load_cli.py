"""``belong load`` end to end into a temporary embedded store (and PostgreSQL when available)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from belong.eventlog import open_store
from cli_runner import run_cli


def _run(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    return run_cli(monkeypatch, capsys, *argv)


def test_load_json_then_reload_is_idempotent(fake_hetrec: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    store = tmp_path / "store"
    argv = ["load", "hetrec-lastfm", "--store", str(store), "--data-dir", str(fake_hetrec), "--json"]
    code, out, _ = _run(argv, monkeypatch, capsys)
    assert code == 0
    first = json.loads(out)  # stdout is clean JSON (the progress bar goes to stderr)
    assert first["users"] == 4 and first["communities"] == 3 and first["engagement_events"] == 4
    assert first["friendships"] == 2 and first["store"] == {"accepted": 6, "duplicates": 0}
    code, out, _ = _run(argv, monkeypatch, capsys)
    assert json.loads(out)["store"] == {"accepted": 0, "duplicates": 6}
    with open_store(store) as st:
        assert st.count() == 6
        assert st.entity_counts() == {"users": 4, "communities": 3, "content": 0}
        assert st.counts_by_type() == {"join": 4, "friend_accept": 2}


def test_load_table_output_and_given_split(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "train.txt").write_text("0 1 2\n")
    (tmp_path / "test.txt").write_text("0 3\n")
    code, out, _ = _run(["load", f"lightgcn:{tmp_path}", "--store", str(tmp_path / "s")], monkeypatch, capsys)
    assert code == 0
    assert "train_rows" in out and "given_split_ts_us" in out


@pytest.mark.parametrize(
    ("spec", "message"),
    [("nonsense", "unknown spec"), ("edges:missing.csv", "not found"), ("ml-100k", "dataset folder 'ml-100k'")],
)
def test_load_errors_exit_2(spec: str, message: str, tmp_path: Path, monkeypatch, capsys) -> None:
    argv = ["load", spec, "--store", str(tmp_path / "s"), "--data-dir", str(tmp_path), "--json"]
    code, out, err = _run(argv, monkeypatch, capsys)
    assert code == 2
    assert message in " ".join(err.split()) and "Traceback" not in err and out == ""


@pytest.mark.postgres
def test_load_into_postgres(fake_hetrec: Path, postgres_schema_url: str, monkeypatch, capsys) -> None:
    argv = ["load", "hetrec-lastfm", "--store", postgres_schema_url, "--data-dir", str(fake_hetrec), "--json"]
    code, out, _ = _run(argv, monkeypatch, capsys)
    assert code == 0 and json.loads(out)["store"]["accepted"] == 6
    with open_store(postgres_schema_url) as st:
        assert st.counts_by_type() == {"join": 4, "friend_accept": 2}
