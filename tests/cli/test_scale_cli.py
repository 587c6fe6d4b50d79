"""Bad input to the scale commands is exit 2 naming the field (``belong candidates precompute``,
``belong bench serve --traffic``, ``belong serve --workers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_runner import run_cli


def test_precompute_without_an_artifact_names_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    from belong.eventlog import open_store

    open_store(tmp_path / "s").close()
    code, _, err = run_cli(monkeypatch, capsys, "candidates", "precompute", "--store", str(tmp_path / "s"),
                           "--redis", "redis://127.0.0.1:1/0")
    assert code == 2 and "models" in err and "belong train" in err


def test_precompute_with_an_unknown_surface_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "candidates", "precompute", "--store", str(tmp_path),
                           "--redis", "redis://127.0.0.1:1/0", "--surface", "films")
    assert code == 2 and "surface" in err


def test_bench_serve_refuses_an_unknown_traffic_model(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "bench", "serve", "--traffic", "poisson")
    assert code == 2 and "traffic" in err


def test_a_bad_stream_url_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from belong.errors import ValidationError
    from belong.serve.replica import EventStream

    with pytest.raises(ValidationError) as exc:
        EventStream.from_env("default", env={"BELONG_EVENT_STREAM": "kafka://x:9092"})
    assert exc.value.field == "BELONG_EVENT_STREAM"
    assert EventStream.from_env("default", env={}) is None


def test_precompute_with_an_empty_users_file_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "people.txt").write_text("\n")
    code, _, err = run_cli(monkeypatch, capsys, "candidates", "precompute", "--store", str(tmp_path),
                           "--redis", "redis://127.0.0.1:1/0", "--users-file", str(tmp_path / "people.txt"))
    assert code == 2 and "users-file" in err


def test_bench_serve_refuses_an_unknown_precompute_scope(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "bench", "serve", "--precompute-scope", "some")
    assert code == 2 and "precompute-scope" in err
