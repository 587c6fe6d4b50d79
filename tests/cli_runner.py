"""Run the real ``belong`` entry point in-process (importable from every test folder: tests/ is on sys.path
because tests/conftest.py lives there)."""

from __future__ import annotations

import sys

import pytest

from belong.cli import main


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Returns (exit code, stdout, stderr) of ``belong ARGS``."""
    monkeypatch.setattr(sys, "argv", ["belong", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
