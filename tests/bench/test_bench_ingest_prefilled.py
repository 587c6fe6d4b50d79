"""``belong bench ingest-files --prefilled``: the same file into an empty store and into a pre-filled one, for both
kinds of ids, with the ratio (no timing assertions: figures are measured by the command, not by tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

from belong.cli import main
from belong.eventlog import open_store


def test_cli_prefilled_reports_empty_and_full_for_both_kinds_of_ids(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    store = tmp_path / "full"
    monkeypatch.setattr(sys, "argv", ["belong", "bench", "ingest-files", "--json", "--rows", "1500",
                                      "--chunk-rows", "500", "--prefilled", str(store), "--prefill", "4000"])
    main()
    out = orjson.loads(capsys.readouterr().out)
    assert out["prefill"]["events"] == 4_000 and out["prefill"]["cpu_seconds"] >= 0  # the bulk build
    random, ordered = out["ids"]["random"], out["ids"]["ordered"]
    assert random["empty"]["stored_before"] == 0 and random["prefilled"]["stored_before"] == 4_000
    # the random-id file went in first, then the small id table was topped up to a merge's size (262,144 ids) and
    # that merge timed, so the amortized figures charge each row its share of a merge
    merge = random["prefilled"]["merge"]
    assert merge["ids"] == merge["merge_every"] == 262_144 and merge["cpu_seconds"] > 0
    assert ordered["prefilled"]["stored_before"] == 4_000 + 262_144
    for fig in (random, ordered):
        assert fig["empty"]["accepted"] == fig["prefilled"]["accepted"] == 1_500 and fig["ratio"] > 0
        assert fig["amortized_ratio"] > 0 and fig["amortized_cpu_ratio"] > 0
    with open_store(store) as st:
        assert st.count() == 4_000 + 2 * 262_144  # each kind of ids: its file, then topped up to a merge


def test_cli_single_appends_go_into_both_stores_one_event_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    store = tmp_path / "full"
    monkeypatch.setattr(sys, "argv", ["belong", "bench", "ingest-files", "--json", "--prefilled", str(store),
                                      "--prefill", "3000", "--singles", "40", "--no-files"])
    main()
    out = orjson.loads(capsys.readouterr().out)
    single = out["single"]
    assert single["appends"] == 40 and single["store"] == str(store) and "ids" not in out  # no file part
    assert single["empty"]["stored_before"] == 0 and single["prefilled"]["stored_before"] == 3_000
    for name in ("empty", "prefilled"):
        for key in ("wall_ms", "cpu_ms"):
            q = single[name][key]
            assert 0 < q["p50"] <= q["p99"] <= q["max"] and q["mean"] > 0
    assert single["ratio"] > 0 and single["cpu_ratio"] > 0 and single["p50_ratio"] > 0
    with open_store(store) as st:
        assert st.count() == 3_000 + 40  # each timed append stored exactly its one event


@pytest.mark.parametrize("args", [["--singles", "5"], ["--no-files"],
                                  ["--prefilled", "X", "--no-files"]])
def test_cli_single_appends_refuse_what_cannot_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, args: list[str]) -> None:
    args = [str(tmp_path / "x") if a == "X" else a for a in args]
    monkeypatch.setattr(sys, "argv", ["belong", "bench", "ingest-files", "--json", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--prefilled" in err or "--singles" in err
