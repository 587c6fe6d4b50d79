"""Experiments inside the API process: which arm serves a request, each arm's pipeline (built once per model
version and arm), and the exposure log.

:class:`Router` keeps the running experiments of the store (reloaded every ``refresh_s`` seconds by a background
thread, and at once after a change through the API). ``active`` is False while none runs: the engine then does
nothing more per request than read that flag. A user in several experiments of one surface kind is served by the
first (by layer, then name) and only that one is named in the answer and logged.

Exposures (one row per answer that served a list) are queued in memory and written to the store in batches by a
background thread every ``flush_s`` seconds (and on :meth:`Router.flush` / close); a crash loses at most the last
``flush_s`` seconds of exposure rows, never an event.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from belong.domain import Surface
from belong.experiments.arms import fit_arm, is_plain
from belong.experiments.assign import Assigner
from belong.experiments.declaration import Declaration, arm_declaration
from belong.experiments.store import ExperimentStore, Exposure, open_experiments
from belong.pipeline import Pipeline

log = logging.getLogger("belong.experiments")


@dataclass(frozen=True, slots=True)
class Routed:
    """The arm that serves one request: its pipeline, the candidate-cache tag of that pipeline, and the answer's
    ``experiments`` entry."""

    pipeline: Pipeline
    tag: str
    name: str
    arm: str
    unit: str
    model: Any = None  # the model version serving the arm when it is not the active one (``model = "..."`` arms)
    counterfactual: bool = False  # an arm asked for by name (``arm=``): never logged as an exposure


class Router:
    def __init__(self, store_spec: str, *, refresh_s: float = 5.0, flush_s: float = 0.2) -> None:
        self.store_spec = store_spec
        self.refresh_s = refresh_s
        self.flush_s = flush_s
        self.active = False
        self._store: ExperimentStore | None = None
        self._assigner = Assigner([])
        self._kinds: dict[str, Surface] = {}  # experiment -> surface kind
        self._arm_specs: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._clusters: dict[str, tuple[int, dict[str, str]]] = {}  # experiment -> (version, user -> cluster)
        self._pipelines: dict[tuple[str, str, str], Pipeline] = {}  # (model version, experiment, arm)
        self._building: dict[tuple[str, str, str], asyncio.Future] = {}
        self._queue: collections.deque[Exposure] = collections.deque()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failures = 0  # requests whose arm pipeline could not be built

    # ------------------------------------------------------------------------------------------- lifecycle
    def open(self) -> Router:
        self._store = open_experiments(self.store_spec)
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="belong-experiments", daemon=True)
        self._thread.start()
        return self

    @property
    def store(self) -> ExperimentStore:
        if self._store is None:
            raise RuntimeError("the experiment router is not open")
        return self._store

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._store is not None:
            self.flush()
            self._store.close()

    def _run(self) -> None:
        next_refresh = time.monotonic() + self.refresh_s
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
                if time.monotonic() >= next_refresh:
                    self.refresh()
                    next_refresh = time.monotonic() + self.refresh_s
            except Exception as exc:  # noqa: BLE001 - the store is down: retry at the next tick, keep serving
                log.warning("experiments: %s: %s", type(exc).__name__, exc)

    def refresh(self) -> None:
        """Reload the running experiments, their forced arms and clusters from the store."""
        with self._refresh_lock:  # one at a time: a slower, older read never replaces a newer one
            self._refresh()

    def _refresh(self) -> None:
        from belong import surfaces as catalogue

        store = self.store
        running = sorted(store.running(), key=lambda e: (e.declaration.layer, e.name))
        specs: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        kinds: dict[str, Surface] = {}
        for exp in running:
            d = exp.declaration
            kinds[d.name] = Surface(catalogue.declaration(d.surface)[1]["surface"])
            for arm in d.arms:
                specs[(d.name, arm.name)] = arm_declaration(d, arm)
        forced = {e.name: store.forced(e.name) for e in running}
        clusters = {}
        for e in running:
            if e.declaration.unit == "cluster":  # read again only when the experiment changed (a new version)
                got = self._clusters.get(e.name)
                if got is None or got[0] != e.version:
                    got = (e.version, store.clusters(e.name))
                    self._clusters[e.name] = got
                clusters[e.name] = got[1]
        with self._lock:
            self._assigner = Assigner([(e.declaration, e.layer_range) for e in running], forced, clusters)
            self._kinds, self._arm_specs = kinds, specs
            self.active = bool(running)

    # ------------------------------------------------------------------------------------------- requests
    async def route(self, model: Any, surface: Surface, user_id: str,
                    model_of: Callable[[str], Any] | None = None, arm: str | None = None) -> Routed | None:
        """The arm serving ``user_id`` on ``surface`` with ``model`` (a ModelVersion), or None (not in one).
        ``arm``: that arm of the user's experiment instead of their own (a counterfactual view; ValidationError
        naming ``arm`` when the user is in no experiment of ``surface`` or it has no such arm)."""
        from belong.errors import ValidationError

        assigner, kinds = self._assigner, self._kinds
        for decl, own in assigner.assign(user_id):
            if kinds.get(decl.name) is not surface:
                continue
            arm_name = own
            if arm is not None:
                if arm not in {a.name for a in decl.arms}:
                    raise ValidationError("arm", f"experiment {decl.name} has no arm {arm!r} (arms: "
                                          f"{', '.join(a.name for a in decl.arms)})")
                arm_name = arm
            counterfactual = arm is not None
            unit = assigner.unit(decl, user_id)
            arm_model = decl.arm(arm_name).model
            if arm_model is not None:  # another loaded model version serves this arm, all of it
                other = model_of(arm_model) if model_of is not None else None
                if other is None:
                    return None
                return Routed(other.pipelines[surface], other.version, decl.name, arm_name, unit, other,
                              counterfactual)
            try:
                pipeline = await self._pipeline(model, surface, decl, arm_name)
            except Exception as exc:  # the arm cannot be built: served as before, named nowhere, not exposed
                self.failures += 1
                log.warning("experiment %s arm %s: %s: %s", decl.name, arm_name, type(exc).__name__, exc)
                return None
            if pipeline is None:
                return None
            tag = model.version if pipeline is model.pipelines[surface] else \
                f"{model.version}|{decl.name}:{arm_name}"
            return Routed(pipeline, tag, decl.name, arm_name, unit, counterfactual=counterfactual)
        if arm is not None:
            raise ValidationError("arm", f"{user_id!r} is in no running experiment on {surface.value}")
        return None

    async def _pipeline(self, model: Any, surface: Surface, decl: Declaration, arm_name: str) -> Pipeline | None:
        arm = decl.arm(arm_name)
        name, data = self._arm_specs[(decl.name, arm_name)]
        if is_plain(decl, arm) and name == model.pipelines[surface].name:
            return model.pipelines[surface]
        key = (model.version, decl.name, arm_name)
        pipe = self._pipelines.get(key)
        if pipe is not None:
            return pipe
        fut = self._building.get(key)
        if fut is None:
            base = model.pipelines[surface]
            fut = asyncio.ensure_future(asyncio.to_thread(fit_arm, base, name, data, model.state))
            self._building[key] = fut
            try:
                pipe = await fut
            finally:
                self._building.pop(key, None)
            for k in [k for k in self._pipelines if k[0] != model.version]:  # an older version's arms
                del self._pipelines[k]
            self._pipelines[key] = pipe
            return pipe
        out: Pipeline = await fut
        return out

    def exposed(self, routed: Routed, request_id: str, user_id: str, surface: str) -> None:
        """Queue one exposure (the answer served a list)."""
        self._queue.append(Exposure(routed.name, request_id, user_id, routed.unit, routed.arm, surface,
                                    time.time_ns() // 1000))

    def flush(self) -> int:
        """Write the queued exposures now; the number written."""
        rows = []
        while self._queue:
            rows.append(self._queue.popleft())
        if not rows:
            return 0
        try:
            n = self.store.log_exposures(rows)
        except Exception:
            self._queue.extendleft(reversed(rows))  # kept for the next try
            raise
        self.written += n
        return n

