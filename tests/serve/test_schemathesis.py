"""Property-based and stateful API fuzzing (issue 13, finding 10): schemathesis reads the live server's OpenAPI —
so a route added later is fuzzed without touching this file — and runs its coverage, fuzzing and stateful phases
(the stateful one follows the schema's links, :mod:`belong.serve.openapi_links`) with the admin key, so write and
admin routes are reached too. Bounded in time (CI: well under a minute). Every check but
``positive_data_acceptance`` runs (the schema declares shapes; the domain's validators add semantic rules, e.g. an
event's type or an id's characters, answered 422 naming the field — documented): no 5xx, every response, status
code and content type as documented, auth enforced."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serve_helpers import ADMIN_KEY, run_server

CHECKS_SKIPPED = "positive_data_acceptance"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory):
    """A server of its own (fuzzed writes and model builds must not disturb other tests) on a small world."""
    from trust_world import build_store

    store = build_store(tmp_path_factory.mktemp("fuzz-store"), n_users=200, n_communities=20, seed=7)
    with run_server(store, {"BELONG_BUDGET_SOURCES_MS": "30000"}) as (base, _):
        yield base


def _run(base: str, cwd: Path, phases: str, max_time_s: int) -> str:
    exe = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    if not Path(exe).exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    cmd = [exe, "run", f"{base}/openapi.json", "--checks", "all", "--exclude-checks", CHECKS_SKIPPED,
           "--phases", phases, "--max-examples", "5", "--max-time", str(max_time_s), "--seed", "1",
           "--workers", "1", "--request-timeout", "30", "--header", f"Authorization: Bearer {ADMIN_KEY}"]
    # a request line over the header limit is refused with 431 before any route (serve/protocol.py): a rejection
    (cwd / "schemathesis.toml").write_text(
        '[checks.negative_data_rejection]\nexpected-statuses = ["400", "401", "403", "404", "405", "406", "409", '
        '"413", "415", "422", "428", "429", "431"]\n', encoding="utf-8")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=max_time_s + 120, cwd=cwd)
    assert out.returncode == 0, out.stdout[-60000:] + out.stderr[-2000:]
    return out.stdout


def test_schemathesis_finds_no_server_error_and_no_schema_violation_on_any_route(fuzz_server: str,
                                                                                 tmp_path: Path) -> None:
    spec = httpx.get(f"{fuzz_server}/openapi.json").json()
    n_ops = sum(1 for item in spec["paths"].values() for m in item if m in ("get", "post", "put", "patch", "delete"))
    stateless = _run(fuzz_server, tmp_path, "coverage,fuzzing", 16)
    assert re.search(rf"Tested: {n_ops}\b", stateless), stateless[-3000:]  # every operation, new ones included
    assert "✅ Coverage" in stateless and "✅ Fuzzing" in stateless, stateless[-3000:]
    stateful = _run(fuzz_server, tmp_path, "stateful", 10)
    assert "✅ Stateful" in stateful, stateful[-3000:]
    assert httpx.get(f"{fuzz_server}/readyz").status_code == 200  # and the server is still well
