"""What each dashboard page shows, as plain data (the templates only lay it out). No HTTP here.

The user explorer runs the active version's pipelines directly (``candidates`` then ``finish`` with every rule, as
the API does on a cache miss), so the page shows the whole stage trace; the what-if runs the same pipelines over a
copy of the state (:func:`sandbox_state`) with one more event applied — the live state, the event log and the
caches are untouched.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from belong.domain import Surface, parse_event, us_to_iso
from belong.errors import UnknownIdError, ValidationError
from belong.pipeline import Pipeline
from belong.pipeline.types import Request
from belong.serve.versions import ModelVersion
from belong.state import WorldState
from belong.state.relation import Relation

SURFACES = (Surface.COMMUNITIES, Surface.PEOPLE, Surface.CONTENT)
#: what-if event types and the kind of their target
WHAT_IF_TYPES = {"join": "community", "leave": "community", "block": "community", "message": "community",
                 "friend_accept": "user", "friend_request": "user", "friend_remove": "user"}
BELOW_CUT_SHOWN = 10


# ----------------------------------------------------------------------------------------------- user explorer
@dataclass
class SurfaceRun:
    surface: str
    pipeline: str
    items: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    below_cut: list[dict[str, Any]]
    source_counts: dict[str, int]
    source_ms: dict[str, float]
    stage_ms: dict[str, float]
    n_candidates: int
    error: str | None = None
    #: the two halves as run (the request's candidates and finished answer): a why-not on this page reads them
    #: instead of running the pipeline again
    made: Any = field(default=None, repr=False, compare=False)
    done: Any = field(default=None, repr=False, compare=False)
    k: int = 0


def run_surface(pipe: Pipeline, user_id: str, k: int) -> SurfaceRun:
    """One surface's answer for ``user_id`` with its trace: every filter's removals, the candidates just below
    the cut."""
    name = pipe.surface.value
    request = Request(user_id, pipe.surface, k)
    made = pipe.candidates(request)
    done = pipe.finish(request, made.ranked, made_at=made.state_version, all_rules=True)
    shown = {it.index for it in done.items}
    live_removed = {r.item for r in done.removed}
    items = [it.to_dict() | {"features": {}} for it in done.items]
    label, item_id = pipe.item_label, pipe.item_id
    removed = [{"id": item_id(r.item), "name": label(r.item), "filter": r.filter, "reason": r.reason,
                "when": "candidates"} for r in made.removed]
    removed += [{"id": item_id(r.item), "name": label(r.item), "filter": r.filter, "reason": r.reason,
                 "when": "live rules"} for r in done.removed]
    below: list[dict[str, Any]] = []
    for pos, (m, score) in enumerate(made.ranked, start=1):
        if len(below) >= BELOW_CUT_SHOWN:
            break
        if m.item not in shown and m.item not in live_removed:
            below.append({"position": pos, "id": item_id(m.item), "name": label(m.item), "score": round(score, 6),
                          "sources": list(m.hits)})
    stage_ms = {**made.stage_ms, **done.stage_ms}
    return SurfaceRun(name, pipe.name, items, removed, below, dict(made.source_counts),
                      {s: round(v, 3) for s, v in made.source_ms.items()},
                      {s: round(v, 3) for s, v in stage_ms.items()}, made.n_candidates, made=made, done=done,
                      k=k)


def explore(model: ModelVersion, user_id: str, k: int, surfaces: tuple[Surface, ...] = SURFACES
            ) -> list[SurfaceRun]:
    out = []
    for surface in surfaces:
        pipe = model.pipelines.get(surface)
        if pipe is None:
            continue
        try:
            out.append(run_surface(pipe, user_id, k))
        except (ValidationError, UnknownIdError) as exc:
            out.append(SurfaceRun(surface.value, pipe.name, [], [], [], {}, {}, {}, 0, error=str(exc)))
    return out


def find_users(state: WorldState, query: str, limit: int = 20) -> list[str]:
    """User ids starting with ``query``, ignoring case, shortest first."""
    q = query.strip().lower()
    if not q:
        return []
    found = [u for u in state.users.ids if u.lower().startswith(q)]
    return sorted(found, key=lambda u: (len(u), u))[:limit]


def recent_activity(state: WorldState, user_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The user's latest community activity in the state (joins, messages, reactions, voice, views of
    communities), newest first — read from the state's activity table, not the log (no scan of the log)."""
    u = state.users.index.get(user_id)
    log = state.activity_log
    if u is None or log is None:
        return []
    rows = np.flatnonzero(log.user == u)
    rows = rows[np.argsort(-log.ts[rows], kind="stable")][:limit]
    names = state.communities.name
    ids = state.communities.ids
    return [{"ts": us_to_iso(int(log.ts[r])), "community": ids[int(log.community[r])],
             "name": names[int(log.community[r])], "weight": round(float(log.weight[r]), 3)} for r in rows]


def profile(state: WorldState, user_id: str) -> dict[str, Any]:
    u = state.users.index.get(user_id)
    if u is None:
        raise UnknownIdError("user_id", user_id)
    return {"id": user_id, "locale": state.users.locale[u], "age_group": state.users.age_group[u],
            "communities": int(state.communities_of(u).size), "friends": int(state.friends_of(u).size)}


def why_not(model: ModelVersion, surface: Surface, user_id: str, item: str, k: int,
            runs: list[SurfaceRun] | None = None) -> dict[str, Any]:
    """``Pipeline.why_not`` for ``item``, reading the page's own run of the surface when ``runs`` has it (same
    user, same ``k``, made on the state that is live now) rather than running the pipeline again."""
    pipe = model.pipelines[surface]
    run = next((r for r in runs or () if r.surface == surface.value and r.error is None and r.made is not None
                and r.k == k and r.made.state_version == model.state.version), None)
    request = Request(user_id, surface, k)
    if run is not None:
        answer = pipe.why_not(request, item, made=run.made, done=run.done)
    else:
        answer = pipe.why_not(request, item)
    return {"item": answer.item, "verdict": answer.verdict, "text": answer.text, "sources": answer.sources,
            "filter": answer.filter, "reason": answer.reason, "position": answer.position, "rank": answer.rank,
            "score": answer.score, "surface": surface.value, "reused": run is not None}


# ----------------------------------------------------------------------------------------------- what-if
def _relation_copy(rel: Relation) -> Relation:
    """A copy of a relation sharing its bulk base (read-only arrays) and owning copies of its edits."""
    out = copy.copy(rel)
    for name in ("add_r", "del_r", "add_c", "del_c"):
        edits = getattr(rel, name)
        setattr(out, name, defaultdict(set, {k: set(v) for k, v in edits.items() if v}))
    return out


def sandbox_state(state: WorldState, touched: tuple[int, ...]) -> WorldState:
    """A copy of ``state`` that :meth:`~belong.state.WorldState.apply` may write to for an event between the users
    ``touched`` (the actor, and the target when it is a user) and an existing community, leaving ``state`` as it
    was. Copy-on-write by hand: what ``apply`` writes is copied (the relations' edits, the counters, the heat
    arrays, the pending/blocked sets of the touched users, the derived-value cache), the bulk tables and the
    relations' bases are shared (a deep copy of a 100,000-user state takes seconds).
    ``tests/serve/test_dashboard.py`` checks the live state is unchanged after every kind of what-if event."""
    sand = copy.copy(state)
    sand.members, sand.friends, sand.engaged = (_relation_copy(r) for r in (state.members, state.friends,
                                                                              state.engaged))
    sand.user_rev = copy.copy(state.user_rev)
    sand.members_rev = copy.copy(state.members_rev)
    sand._join_ts_live = dict(state._join_ts_live)
    sand._cache = dict(state._cache)  # values derived at a counter: the copy's new ones must not reach the original
    sand.community_heat = {k: v.copy() for k, v in state.community_heat.items()}
    sand.content_heat = {k: v.copy() for k, v in state.content_heat.items()}
    for name in ("pending_requests", "blocked_users", "blocked_communities"):
        table = copy.copy(getattr(state, name))
        for u in touched:
            if u in table:
                table[u] = set(table[u])
        setattr(sand, name, table)
    return sand


def what_if(model: ModelVersion, user_id: str, event_type: str, target: str, k: int,
            before: list[SurfaceRun] | None = None, surfaces: tuple[Surface, ...] = SURFACES) -> dict[str, Any]:
    """Apply one event (``user_id`` does ``event_type`` to ``target``) to a sandbox copy of the state and compare
    every surface's list before and after (``before``: the lists already made on the live state, else made here).
    The live state is not written to."""
    if event_type not in WHAT_IF_TYPES:
        raise ValidationError("event_type", f"must be one of {', '.join(WHAT_IF_TYPES)}, got {event_type!r}")
    kind = WHAT_IF_TYPES[event_type]
    table = model.state.communities if kind == "community" else model.state.users
    if target not in table.index:
        raise UnknownIdError("target", target)
    t0 = time.perf_counter()
    event = parse_event({"event_id": f"what-if-{time.time_ns()}", "ts": max(model.state.now_us, 1) / 1e6,
                         "type": event_type, "actor": user_id, "target": target, "target_kind": kind})
    touched = (model.state.users.index[user_id],) + ((table.index[target],) if kind == "user" else ())
    sandbox = sandbox_state(model.state, touched)
    sandbox.apply(event)
    copy_ms = (time.perf_counter() - t0) * 1e3
    rows = []
    for surface in surfaces:
        pipe = model.pipelines.get(surface)
        if pipe is None:
            continue
        twin = copy.copy(pipe)  # the same fitted components (they read the state they are handed) over the copy
        twin.state = sandbox
        request = Request(user_id, surface, k)
        made = next((r for r in before or () if r.surface == surface.value and r.error is None), None)
        old = [(it["id"], it["name"], it["score"]) for it in made.items] if made is not None else \
            [(it.id, it.name, it.score) for it in pipe.run(request).items]
        rows.append({"surface": surface.value, "rows": diff(
            old, [(it.id, it.name, it.score) for it in twin.run(request).items])})
    return {"event": {"type": event_type, "actor": user_id, "target": target, "target_kind": kind},
            "surfaces": rows, "copy_ms": round(copy_ms, 1),
            "total_ms": round((time.perf_counter() - t0) * 1e3, 1)}


def diff(before: list[tuple[str, str, float]], after: list[tuple[str, str, float]]) -> list[dict[str, Any]]:
    """Rows of the list after the event, each with its rank before (None: new), then the items that left."""
    rank_before = {i: r for r, (i, _, _) in enumerate(before, start=1)}
    rank_after = {i: r for r, (i, _, _) in enumerate(after, start=1)}
    rows = []
    for r, (i, name, score) in enumerate(after, start=1):
        old = rank_before.get(i)
        change = "new" if old is None else ("same" if old == r else ("up" if old > r else "down"))
        rows.append({"rank": r, "id": i, "name": name, "score": round(score, 6), "before": old, "change": change})
    for r, (i, name, score) in enumerate(before, start=1):
        if i not in rank_after:
            rows.append({"rank": None, "id": i, "name": name, "score": round(score, 6), "before": r,
                         "change": "gone"})
    return rows


# ----------------------------------------------------------------------------------------------- models
@dataclass
class ManifestCache:
    """``manifest.json`` of each artifact (immutable once written), read once. Display only: loading an artifact
    for serving verifies every file's checksum (:func:`belong.training.artifact.read_manifest`)."""

    seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, models_dir: str | None, version: str) -> dict[str, Any] | None:
        if version in self.seen:
            return self.seen[version]
        if not models_dir:
            return None
        path = Path(models_dir) / version / "manifest.json"
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        self.seen[version] = data
        return data


def ranker_summary(directory: Path | None, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Per surface with a learned ranker: validation metrics by K (ranker and each source), feature importance,
    calibration (ECE before/after and the calibrator's curve)."""
    out = []
    for name, entry in (manifest.get("surfaces") or {}).items():
        ranker = entry.get("ranker")
        if not ranker:
            continue
        metrics = ranker.get("metrics") or {}
        by_k: dict[str, dict[str, dict[str, float]]] = {}  # model -> metric -> {k: value}
        for model, figures in [("ranker", metrics.get("ranker") or {}), *(metrics.get("sources") or {}).items()]:
            for key, value in figures.items():
                metric, _, kk = key.partition("@")
                by_k.setdefault(model, {}).setdefault(metric, {})[kk or "-"] = float(value)
        ks = sorted({kk for m in by_k.values() for d in m.values() for kk in d}, key=lambda s: (len(s), s))
        importance = sorted((metrics.get("feature_importance") or {}).items(), key=lambda kv: -kv[1])
        curves = []
        for objective, cal in (ranker.get("calibrators") or {}).items():
            figures = (metrics.get("calibration_by_objective") or {}).get(objective, {})
            points = calibration_curve(directory, cal) if directory is not None else []
            curves.append({"objective": objective, "method": cal.get("method"), "points": points,
                           "ece_before": figures.get("ece_before"), "ece_after": figures.get("ece_after")})
        out.append({"surface": name, "by_k": by_k, "ks": ks, "importance": importance[:20],
                    "n_features": len(ranker.get("features") or []), "calibration": curves,
                    "lists": metrics.get("lists") or {}, "segments": metrics.get("segments")})
    return out


def calibration_curve(directory: Path, cal: dict[str, Any]) -> list[tuple[float, float]]:
    """The isotonic calibrator's (raw, calibrated) points, from its ``.npz`` (no pickle); [] for other kinds."""
    rel = cal.get("file")
    if not rel or cal.get("method") != "isotonic":
        return []
    path = (directory / rel).resolve()
    if directory.resolve() not in path.parents:
        return []
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = np.asarray(z["x"], float), np.asarray(z["y"], float)
    except (OSError, KeyError, ValueError):
        return []
    return [(float(a), float(b)) for a, b in zip(x, y, strict=False)]
