"""The closed loop over HTTP: belong as a platform runs it, with simulated people as its clients.

:class:`HttpBackend` (a :class:`~belong.loop.backend.Backend`) writes the simulated world into an embedded store,
trains it with ``belong train`` (a subprocess), starts ``belong serve --models`` on a free 127.0.0.1 port with
keys made for the run, and declares the scenario as an experiment (``POST /v1/experiments``: the server assigns
each person's arm by the experiments' hash, with the scenario's name as salt, so it agrees with the loop's own
assignment; a cluster experiment gets the loop's friend clusters). Then every simulated day:

* ``serve``: ``GET /v1/recommendations/communities`` per person (a read key); a list under another arm than the
  person's own (the truth needs every arm's) is asked with ``arm=NAME`` and the admin key, which the server
  never logs as an exposure. Requests go out concurrently from a small thread pool over keep-alive connections;
  answers are put back in the order asked, and the server's state does not move while a day's lists are served
  (events are posted between), so the lists do not depend on the timing of the requests.
* ``record``: the loop's events to ``POST /v1/events`` (batches of 1,000, in order) and each served list to
  ``POST /v1/impressions`` (request id, position, propensity: what ``belong ope`` reads).
* ``retrain``: ``belong train`` on the log so far (the server keeps serving), then the hot swap
  ``POST /v1/models?artifact=V&activate=true``.
* an off-policy scenario (``[ope]``) keeps a *shadow* of the server: after each training the same artifact loaded
  onto the same store's log as the server loads it, and the same event batches folded in, so each logged list is
  re-run on what served it (the logged propensities reproduced: :mod:`belong.loop.offpolicy`).

The server runs with ``BELONG_CANDIDATE_TTL_S=0`` (no candidate cache: an answer is a function of the state, not
of wall-clock time), a sources budget no request reaches (no degraded answers because the machine is busy) and
no rate limit. Every call's latency and status is kept by route; :meth:`HttpBackend.stats` gives percentiles,
status counts, 5xx, degraded answers and disagreements between the server's arm and the loop's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from belong.domain import Event
from belong.errors import BelongError, ValidationError
from belong.loop.backend import Impression, Slate
from belong.loop.scenario import Scenario, assign, surface_spec

EVENTS_PER_POST = 1000
LISTS_PER_POST = 200  # impressions: shown lists per POST /v1/impressions/batch (10 items each: 2,000 events)
_CLI = [sys.executable, "-c", "import belong.cli as c; c.main()"]


class LoopHttpError(BelongError):
    """The server or a training run failed during an HTTP-mode run (the message carries the end of its log)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us // 1_000_000, UTC).replace(microsecond=ts_us % 1_000_000).isoformat()


def event_row(e: Event) -> dict[str, Any]:
    """One event as ``POST /v1/events`` takes it (the timestamp in ISO-8601 with microseconds: exact)."""
    row: dict[str, Any] = {"event_id": e.event_id, "ts": _iso(e.ts_us), "type": e.type.value, "actor": e.actor,
                           "target": e.target, "target_kind": e.target_kind.value}
    if e.value != 1.0:
        row["value"] = e.value
    return row


def trained_surface(specs: list[str]) -> int:
    """The arm whose surface ``belong train`` fits into the artifact: the first with a learned ranker, else the
    last arm. The other arms are built by the server from it (:func:`belong.experiments.arms.fit_arm`: what they
    share is reused, the rest fitted on the served state)."""
    from belong import surfaces

    for i, spec in enumerate(specs):
        if surfaces.load(spec).scorer.type_name == "lgbm_ranker":
            return i
    return len(specs) - 1


def load_as_served(store: Path, artifact: Path, specs: list[str]) -> tuple[list[Any], Any]:
    """The arms as ``belong serve`` holds them after loading ``artifact``: the state read from the log
    (:func:`belong.state.from_store`, the server's read: the same index order), the trained communities surface
    loaded onto it, every arm built as the server builds an experiment's arms. Returns (pipelines, live state)."""
    from belong import surfaces
    from belong.domain import Surface
    from belong.experiments.arms import fit_arm
    from belong.state import from_store
    from belong.training.artifact import load_pipeline

    live = from_store(store)
    base = load_pipeline(artifact, Surface.COMMUNITIES.value, live)
    live.release_source()  # as the server's state: events arrive through fold()
    return [fit_arm(base, *surfaces.declaration(spec), live) for spec in specs], live


def fold_as_posted(state: Any, events: list[Event], append: Callable[[list[Event]], list[int]] | None = None
                   ) -> None:
    """Fold ``events`` into a live state as ``POST /v1/events`` does: in the same batches, each event as the route
    reads it, after ``append`` (when given) stored the batch and named the events it inserted (the rest are
    duplicates, not folded)."""
    from belong.domain import EventType, parse_event
    from belong.serve.versions import fold

    for lo in range(0, len(events), EVENTS_PER_POST):
        chunk = [parse_event(event_row(e)) for e in events[lo: lo + EVENTS_PER_POST]]
        new = chunk if append is None else [chunk[i] for i in append(chunk)]
        fold(state, [e for e in new if e.type is not EventType.IMPRESSION])


class Calls:
    """Latency and status of every call, by route (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ms: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter[int]] = defaultdict(Counter)

    def add(self, route: str, ms: float, status: int) -> None:
        with self._lock:
            self.ms[route].append(ms)
            self.status[route][status] += 1

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for route in sorted(self.ms):
            a = np.asarray(self.ms[route])
            out[route] = {"calls": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 3),
                          "p95_ms": round(float(np.percentile(a, 95)), 3),
                          "p99_ms": round(float(np.percentile(a, 99)), 3), "max_ms": round(float(a.max()), 3),
                          "status": {str(k): v for k, v in sorted(self.status[route].items())}}
        return out

    def count(self, pred: Any) -> int:
        return sum(n for c in self.status.values() for s, n in c.items() if pred(s))


class HttpBackend:
    """The loop's backend over a real ``belong serve`` (see the module docstring).

    ``world``: the simulated world the loop started from (written to the store); ``arm_of``: each sim person's
    arm index (the loop's assignment, checked against the server's); ``unit_of``: each person's unit (a cluster
    id for ``unit = "cluster"``, saved with the experiment); ``workdir``: where the store, artifacts and the
    server's log go (default: a temporary directory, removed by :meth:`close`)."""

    def __init__(self, sc: Scenario, world: Any, uids: list[str], arm_of: np.ndarray, unit_of: list[str], *,
                 workdir: str | Path | None = None, concurrency: int = 4, progress: Any = None,
                 shadow: bool = False) -> None:
        from belong.datasets import write_world
        from belong.eventlog import open_store

        self.sc = sc
        self.uids = uids
        self.arm_of = np.asarray(arm_of)
        self.unit_of = unit_of
        self.say = progress or (lambda _m: None)
        self.keep = workdir is not None
        self.dir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="belong-loop-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store = self.dir / "store"
        if self.store.exists():
            raise ValidationError("workdir", f"{self.store} exists: give an empty working directory")
        self.models = self.store / "models"
        self.specs = [surface_spec(sc, a) for a in sc.arms]
        self.names = [a.name for a in sc.arms]
        self.trained = trained_surface(self.specs)
        self.keys = {r: f"loop-{r}-{secrets.token_urlsafe(18)}" for r in ("read", "write", "admin")}
        self.concurrency = max(1, concurrency)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="belong-loop-http")
        self.calls = Calls()
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: httpx.Client | None = None
        self.base = ""
        self.version = ""
        self.mismatches = 0  # the server named another arm (or none) for a person's own list
        self.degraded = 0
        self.failed = 0  # answers that were not 2xx (their lists count as empty)
        self.setup: dict[str, float] = {}
        #: ``shadow`` (an off-policy scenario): the arms as the server holds them, loaded here from the same store
        #: and artifact after every training and kept current with the same event batches
        #: (:func:`load_as_served`, :func:`fold_as_posted`), so the off-policy re-run of each logged list asks
        #: what the server answered (:mod:`belong.loop.offpolicy`); None without
        self.like_server = shadow
        self.pipelines: list[Any] | None = None
        self.state: Any = None
        #: CPU seconds of the server process by phase (serving, recording, starting / swapping) and of the
        #: ``belong train`` subprocesses with their workers: the CPU beside the loop's wall seconds
        self.cpu: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()  # the counters above, from the pool's threads
        t0 = time.perf_counter()
        with open_store(self.store) as st:
            write_world(st, world, progress=False)
        self.setup["write_store_s"] = round(time.perf_counter() - t0, 3)

    # ------------------------------------------------------------------------------------------- server
    def _env(self) -> dict[str, str]:
        # one thread per BLAS call and per LightGBM prediction (OMP): a prediction of one list is small, and an
        # OpenMP team spinning on a busy machine cost more than the prediction itself (measured: docs/LOOP.md)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "BELONG_API_KEYS_READ": self.keys["read"], "BELONG_API_KEYS_WRITE": self.keys["write"],
               "BELONG_API_KEYS_ADMIN": self.keys["admin"],
               "BELONG_READ_AUTH": "true", "BELONG_CANDIDATE_TTL_S": "0",
               "BELONG_REQUEST_SEED": "day", "BELONG_BUDGET_SOURCES_MS": "3600000",
               "BELONG_RATE_KEY": "0", "BELONG_MAX_BODY_BYTES": str(8 << 20),
               # idle keep-alive connections outlive the client's own expiry (httpx: 5 s), so the server never
               # closes one the client is about to reuse (a busy machine makes gaps that long between calls)
               "BELONG_KEEP_ALIVE_S": "3600"}
        for name in ("BELONG_REDIS_URL", "BELONG_EVENT_STREAM", "BELONG_MODELS_DIR"):
            env.pop(name, None)  # in-process features, one process, the run's own artifacts
        return env

    def _server_cpu(self) -> float:
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        import psutil

        try:
            t = psutil.Process(self.proc.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    @contextlib.contextmanager
    def _server_phase(self, phase: str) -> Any:
        c0 = self._server_cpu()
        try:
            yield
        finally:
            self.cpu[f"server_{phase}"] += max(0.0, self._server_cpu() - c0)

    def _auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def _train(self) -> tuple[str, str, float]:
        import resource

        t0 = time.perf_counter()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([*_CLI, "train", "--store", str(self.store), "--out", str(self.models), "--surface",
                               self.specs[self.trained], "--json"], capture_output=True, text=True,
                              env=self._env())
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu["train"] += (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        if done.returncode != 0:
            raise LoopHttpError(f"belong train failed ({done.returncode}): {done.stderr[-3000:]}")
        import orjson

        made = orjson.loads(done.stdout)
        return str(made["version"]), str(made["path"]), time.perf_counter() - t0

    def _start(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        log = open(self.dir / "serve.log", "ab")  # noqa: SIM115 - kept open for the process's life
        self.proc = subprocess.Popen([*_CLI, "serve", "--store", str(self.store), "--port", str(port), "--models",
                                      str(self.models)], env=self._env(), stdout=log, stderr=log)
        log.close()
        self.client = httpx.Client(base_url=self.base, timeout=httpx.Timeout(3600.0, connect=30.0),
                                   limits=httpx.Limits(max_connections=self.concurrency + 2,
                                                       max_keepalive_connections=self.concurrency + 2))
        deadline = time.monotonic() + 900
        while True:
            if self.proc.poll() is not None:
                raise LoopHttpError(f"belong serve exited {self.proc.returncode}: {self._log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/readyz").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise LoopHttpError("belong serve did not become ready in 900 s")
            time.sleep(0.2)

    def _log_tail(self) -> str:
        path = self.dir / "serve.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    def _declare(self) -> None:
        """The scenario as an experiment of the server: same salt (the scenario's name), arms in the scenario's
        order and weights, every arm's surface named (absolute paths)."""
        import re

        name = re.sub(r"[^a-z0-9_\-]", "-", self.sc.name.lower())[:64].strip("-_") or "loop"
        self.experiment = name
        arms: list[dict[str, Any]] = [{"name": a.name, "weight": a.weight, "surface": s}
                                      for a, s in zip(self.sc.arms, self.specs, strict=True)]
        arms[-1]["weight"] += 1.0 - sum(a["weight"] for a in arms)  # exactly 1 for the declaration's check
        body = {"name": name, "salt": self.sc.name, "surface": self.specs[self.trained], "unit": self.sc.unit,
                "layer": "loop", "traffic": 1.0, "primary_metric": "joins",
                "description": f"belong loop run {self.sc.name}", "arms": arms}
        r = self._call("experiments", "POST", "/v1/experiments", json=body, headers=self._auth("admin"))
        if r.status_code != 201:
            raise LoopHttpError(f"POST /v1/experiments answered {r.status_code}: {r.text[:1000]}")
        if self.sc.unit == "cluster":
            from belong.experiments.store import open_experiments

            with contextlib.closing(open_experiments(str(self.store))) as st:
                st.save_clusters(name, dict(zip(self.uids, self.unit_of, strict=True)),
                                 {"method": "loop", "clusters": len(set(self.unit_of))})
            self._await_clusters()

    def _await_clusters(self) -> None:
        """Wait until the server reads the saved clusters (its periodic refresh): people whose arm without them
        (the server's unit for a person it has no cluster for is ``u:<id>``) differs from the loop's are served
        under the loop's."""

        alone = assign(self.sc, [f"u:{u}" for u in self.uids])
        probes = [i for i in range(len(self.uids)) if alone[i] != self.arm_of[i]][:8]
        deadline = time.monotonic() + 60
        assert self.client is not None
        while probes and time.monotonic() < deadline:  # not counted in the run's calls (their number is timing)
            bodies = [self.client.get("/v1/recommendations/communities", params={"user_id": self.uids[i], "k": "1"},
                                      headers=self._auth("read")) for i in probes]
            if all(b.status_code == 200 and b.json().get("experiments")
                   and b.json()["experiments"][0]["arm"] == self.names[self.arm_of[i]]
                   for i, b in zip(probes, bodies, strict=True)):
                return
            time.sleep(0.5)
        if probes:
            raise LoopHttpError("the server did not take the experiment's saved clusters within 60 s")

    def _call(self, route: str, method: str, path: str, **kw: Any) -> httpx.Response:
        assert self.client is not None
        t0 = time.perf_counter()
        try:
            r = self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.calls.add(route, (time.perf_counter() - t0) * 1e3, 0)
            raise LoopHttpError(f"{method} {path}: {type(exc).__name__}: {exc}; the server's log ends: "
                                f"{self._log_tail()}") from None
        self.calls.add(route, (time.perf_counter() - t0) * 1e3, r.status_code)
        return r

    # ------------------------------------------------------------------------------------------- backend
    def retrain(self, day: int, state: Any = None) -> dict[str, Any]:
        """``belong train`` on the log so far; the first time, start the server on it and declare the
        experiment; after, hot-swap the new artifact in."""
        t0 = time.perf_counter()
        version, path, train_s = self._train()
        out: dict[str, Any] = {"day": day, "version": version, "train_s": round(train_s, 3)}
        if self.like_server:
            ts = time.perf_counter()
            self.pipelines, self.state = load_as_served(self.store, Path(path), self.specs)
            out["shadow_s"] = round(time.perf_counter() - ts, 3)
        t1 = time.perf_counter()
        if self.proc is None:
            self._start()
            self._declare()
            out["start_s"] = round(time.perf_counter() - t1, 3)
            self.cpu["server_start"] += self._server_cpu()
        else:
            with self._server_phase("swap"):
                r = self._call("models", "POST", "/v1/models", params={"artifact": version, "activate": "true"},
                               headers=self._auth("admin"))
            if r.status_code != 201 or r.json().get("active") != version:
                raise LoopHttpError(f"hot swap to {version} answered {r.status_code}: {r.text[:1000]}")
            out["swap_s"] = round(time.perf_counter() - t1, 3)
        self.version = version
        out["seconds"] = round(time.perf_counter() - t0, 3)
        self.say(f"day {day}: trained {version} in {train_s:.1f}s, serving it")
        return out

    def _get(self, uid: str, arm: str | None) -> dict[str, Any] | None:
        params = {"user_id": uid, "k": str(self.sc.k)}
        if arm is not None:
            params["arm"] = arm
        r = self._call("recommendations" if arm is None else "recommendations (arm=)", "GET",
                       "/v1/recommendations/communities", params=params,
                       headers=self._auth("admin" if arm is not None else "read"))
        if r.status_code != 200:
            with self._lock:
                self.failed += 1
            return None
        body: dict[str, Any] = r.json()
        return body

    def _slate(self, u: int, arm: int) -> Slate:
        own = int(self.arm_of[u]) == arm
        body = self._get(self.uids[u], None if own else self.names[arm])
        if body is None:
            return Slate(np.zeros(0, np.int64), np.zeros(0), "")
        exps = body.get("experiments") or []
        with self._lock:
            self.mismatches += int(not exps or exps[0].get("arm") != self.names[arm])
            self.degraded += int(bool(body.get("degraded")))
        items = body["items"]
        comms = np.fromiter((int(it["id"][1:]) for it in items), np.int64, len(items))
        prop = np.fromiter((float(it.get("propensity", 1.0)) for it in items), np.float64, len(items))
        return Slate(comms, prop, str(body["request_id"]))

    def serve(self, arm: int, users: list[int], day: int = 0) -> list[Slate]:
        """Each person's list under arm ``arm``, in the order of ``users`` (sent concurrently)."""
        with self._server_phase("serving"):
            return list(self.pool.map(lambda u: self._slate(u, arm), users))

    def record(self, events: list[Event], impressions: list[Impression]) -> None:
        """Post the events (in order, 1,000 a call) and then the impressions (concurrently: they change no
        state). Any refusal stops the run: the log must hold what the loop did."""
        if self.state is not None:
            fold_as_posted(self.state, events)
        with self._server_phase("recording"):
            self._record(events, impressions)

    def _record(self, events: list[Event], impressions: list[Impression]) -> None:
        for lo in range(0, len(events), EVENTS_PER_POST):
            rows = [event_row(e) for e in events[lo: lo + EVENTS_PER_POST]]
            r = self._call("events", "POST", "/v1/events", json={"events": rows}, headers=self._auth("write"))
            if r.status_code != 202:
                raise LoopHttpError(f"POST /v1/events answered {r.status_code}: {r.text[:1000]}")

        def post(lists: list[Impression]) -> int:
            r = self._call("impressions", "POST", "/v1/impressions/batch",
                           json={"lists": [i.body() for i in lists]}, headers=self._auth("write"))
            return r.status_code

        shown = [i for i in impressions if i.items]
        per = max(1, min(LISTS_PER_POST, 10_000 // max((len(i.items) for i in shown), default=1)))
        chunks = [shown[lo: lo + per] for lo in range(0, len(shown), per)]
        bad = [s for s in self.pool.map(post, chunks) if s != 202]
        if bad:
            raise LoopHttpError(f"POST /v1/impressions/batch answered {Counter(bad)}")

    def stats(self) -> dict[str, Any]:
        return {"mode": "http", "server": self.base, "model_version": self.version, "experiment": getattr(
                    self, "experiment", None), "concurrency": self.concurrency, "routes": self.calls.report(),
                "errors_5xx": self.calls.count(lambda s: s >= 500),
                "errors_4xx": self.calls.count(lambda s: 400 <= s < 500), "failed_lists": self.failed,
                "degraded_lists": self.degraded, "arm_disagreements": self.mismatches, **self.setup,
                "cpu_s": {k: round(v, 3) for k, v in sorted(self.cpu.items())}}

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def factory(workdir: str | Path | None = None, concurrency: int = 4) -> Any:
    """A backend factory for :func:`belong.loop.runner.run`: one :class:`HttpBackend` per run (a run of each unit
    of randomisation gets its own store and server; under ``workdir`` as ``<scenario>-<unit>/`` when given)."""

    def make(sc: Scenario, loop: Any) -> HttpBackend:
        where = Path(workdir) / f"{sc.name}-{sc.unit}" if workdir is not None else None
        return HttpBackend(sc, loop.world, loop.uids, loop.arm, loop.unit_of, workdir=where,
                           concurrency=concurrency, progress=loop.say, shadow=loop.ope is not None)

    return make
