"""Coverage-guided fuzzing of the API's input parsers (issue 13, finding 10): the event parser, the impression
parser (:mod:`belong.serve.batches`), the recommendation query parser and the experiment-declaration parser
(:mod:`belong.experiments.declaration`), driven by ``parsers_harness.py``, raise nothing but their documented errors
on any input. atheris runs a bounded number of inputs in a subprocess (libFuzzer exits the process when done);
hypothesis drives the same harness too (and stands in where atheris is not installed)."""

from __future__ import annotations

import base64
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import parsers_harness
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HARNESS = Path(parsers_harness.__file__)
RUNS = 20_000
#: inputs atheris found that crashed a parser once (kept so the fix stays)
FOUND = {"ts '1e308': OverflowError scaling to microseconds": "TwEhLwQrgS8BAA==",
         "experiment with an empty key: the error named no field": "zwC+JgGBAAC+JgAAAAAAviYBgQAAAAAALCYs2i0="}


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
@pytest.mark.parametrize("seed", [1, 2])
def test_atheris_finds_no_crash_in_the_event_and_impression_parsers(tmp_path: Path, seed: int) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*sys.path])}
    out = subprocess.run([sys.executable, str(HARNESS), f"-runs={RUNS}", f"-seed={seed}", "-max_len=512",
                          f"-artifact_prefix={tmp_path}/"], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    assert f"Done {RUNS} runs" in out.stderr, out.stderr[-2000:]
    assert not list(tmp_path.glob("crash-*"))


@settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=300))
def test_hypothesis_drives_the_same_harness_without_a_crash(data: bytes) -> None:
    parsers_harness.check(data)


@pytest.mark.parametrize("name", sorted(FOUND))
def test_inputs_that_crashed_once_are_refused_cleanly(name: str) -> None:
    parsers_harness.check(base64.b64decode(FOUND[name]))
