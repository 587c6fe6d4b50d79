"""The load generator of ``belong bench serve`` against the bare baseline server (both real processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from belong.bench.serve import wait_ready
from serve_helpers import free_port


def test_loadgen_holds_a_fixed_rate_against_the_bare_server(tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_bytes(orjson.dumps({"items": [{"id": f"c{i}", "score": 1.0 / (i + 1)} for i in range(20)]}))
    paths = tmp_path / "paths.txt"
    paths.write_text("".join(f"/v1/recommendations/communities?user_id=u{i}&k=20\n" for i in range(50)))
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-m", "belong.bench.serve", str(payload), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", bare, 60)
        out = subprocess.run([sys.executable, "-m", "belong.bench.loadgen", "--port", str(port), "--rate", "200",
                              "--seconds", "1.5", "--paths", str(paths), "--connections", "8"],
                             capture_output=True, text=True, timeout=60)
    finally:
        bare.terminate()
        try:
            bare.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bare.kill()
    assert out.returncode == 0, out.stderr
    run = orjson.loads(out.stdout)
    assert run["sent"] == 300 and run["ok"] == 300 and run["errors"] == 0 and run["non_200"] == 0
    assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
    assert run["achieved_rps"] > 150
