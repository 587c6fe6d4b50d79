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
