"""The dashboard's HTTP side: pages under ``/dashboard`` rendered on the server (Jinja2, autoescaped), one small
script for the live page, forms for actions. Every page but the login form needs a session
(:mod:`belong.serve.dashboard.session`); every POST needs the session's CSRF token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from belong.domain import Surface, us_to_iso
from belong.errors import BelongError, UnknownIdError, ValidationError
from belong.serve.auth import AuthError, Role
from belong.serve.dashboard import charts, views
from belong.serve.dashboard.live import Sampler
from belong.serve.dashboard.session import COOKIE, Session, Sessions, is_tls
from belong.serve.service import Service

PREFIX = "/dashboard"
MAX_FORM_BYTES = 16_384
LOG_STATS_TTL_S = 60.0
PAGES = (("overview", "Overview"), ("live", "Live"), ("users", "Users"), ("models", "Models"),
         ("experiments", "Experiments"))
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
STATIC = {"dash.css": "text/css; charset=utf-8", "dash.js": "text/javascript; charset=utf-8"}
MESSAGES = {"activated": "Activated version {v}.", "rolled_back": "Rolled back to version {v}.",
            "built": "Built and loaded version {v}.", "loaded": "Loaded artifact {v}."}


class Dashboard:
    """The dashboard's per-app state: sessions, the live sampler, templates, cached store figures."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        secret = svc.settings.dashboard_secret
        self.sessions = Sessions(secret.encode() if secret else None)
        self.sampler = Sampler(svc.metrics)  # from the start: the last hour is there when someone looks
        self.sampler.start()
        folder = Path(str(resources.files("belong.serve.dashboard") / "templates"))
        self.env = Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"]),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(bars=charts.bars, line=charts.line, intervals=charts.intervals, prefix=PREFIX,
                                pages=PAGES)
        self.env.filters["num"] = _num
        self.env.filters["ms"] = _ms
        self.env.filters["pct"] = _pct
        self.manifests = views.ManifestCache()
        self.log_stats: tuple[float, dict[str, Any] | str] | None = None
        self.log_counting: asyncio.Task | None = None
        self.static = {name: (resources.files("belong.serve.dashboard") / "static" / name).read_bytes()
                       for name in STATIC}

    def live(self) -> Sampler:
        return self.sampler


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{float(value):.{digits}g}"


def _ms(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f} ms"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def dash(request: Request) -> Dashboard:
    out: Dashboard = request.app.state.dashboard
    return out


def _headers(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


def page(request: Request, template: str, status: int = 200, session: Session | None = None, **data: Any
         ) -> Response:
    d = dash(request)
    t0 = time.perf_counter()
    body = d.env.get_template(template).render(request=request, csrf=session.csrf if session else "", **data)
    response = Response(body, status_code=status, media_type="text/html; charset=utf-8")
    response.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - t0) * 1e3:.2f}"
    return _headers(response)


def _redirect(url: str) -> Response:
    return _headers(Response(status_code=303, headers={"Location": url}))


def session_of(request: Request) -> Session | None:
    d = dash(request)
    return d.sessions.read(request.cookies.get(COOKIE), d.svc.keys.admin_keys)


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return _redirect(f"{PREFIX}/login?next={quote(target, safe='')}")


async def form(request: Request) -> dict[str, str]:
    """The urlencoded body of a POST as a dict (first value of each field)."""
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise ValidationError("form", f"is larger than {MAX_FORM_BYTES} bytes")
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype != "application/x-www-form-urlencoded":
        raise ValidationError("content-type", "must be application/x-www-form-urlencoded")
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}


async def action(request: Request) -> tuple[Session, dict[str, str]] | Response:
    """A POST's session and form, or the refusal (login needed, or a missing/wrong CSRF token: 403)."""
    import hmac

    session = session_of(request)
    if session is None:
        return _login_redirect(request)
    try:
        data = await form(request)
    except ValidationError as exc:
        return page(request, "error.html", 400, session, title="Bad request", message=str(exc))
    if not hmac.compare_digest(data.get("csrf", ""), session.csrf):
        return page(request, "error.html", 403, session, title="Refused",
                    message="This form's CSRF token is missing or stale: reload the page and try again.")
    return session, data


# ----------------------------------------------------------------------------------------------- login
async def login_form(request: Request) -> Response:
    d = dash(request)
    if d.svc.registry.active is not None:
        refresh_log_stats(d)  # ready by the time the overview is opened
    nxt = request.query_params.get("next", "")
    return page(request, "login.html", token=d.sessions.login_token(), next=_safe_next(nxt), error=None)


def _safe_next(nxt: str) -> str:
    """Only a path inside the dashboard (never another host: no open redirect)."""
    return nxt if nxt.startswith(PREFIX + "/") and "//" not in nxt and "\\" not in nxt else f"{PREFIX}/overview"


async def login(request: Request) -> Response:
    d = dash(request)
    try:
        data = await form(request)
    except ValidationError as exc:
        return page(request, "login.html", 400, token=d.sessions.login_token(), next=f"{PREFIX}/overview",
                    error=str(exc))
    nxt = _safe_next(data.get("next", ""))
    if not d.sessions.check_login_token(data.get("token", "")):
        return page(request, "login.html", 403, token=d.sessions.login_token(), next=nxt,
                    error="The login form expired: please try again.")
    key = data.get("key", "").strip()
    try:
        role = d.svc.keys.check(f"Bearer {key}" if key else None, Role.ADMIN)
    except AuthError as exc:
        msg = "admin key needed" if exc.status == 403 else ("enter the admin key" if not key else "unknown key")
        return page(request, "login.html", 401, token=d.sessions.login_token(), next=nxt, error=msg)
    assert role is Role.ADMIN
    cookie, _ = d.sessions.issue(key)
    response = _redirect(nxt)
    response.set_cookie(COOKIE, cookie, max_age=d.sessions.ttl_s, path=PREFIX, httponly=True, samesite="strict",
                        secure=is_tls(request, d.svc.settings.proxy_headers))
    return response


async def logout(request: Request) -> Response:
    got = await action(request)
    if isinstance(got, Response):
        return got
    response = _redirect(f"{PREFIX}/login")
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict",
                           secure=is_tls(request, dash(request).svc.settings.proxy_headers))
    return response


async def home(request: Request) -> Response:
    return _redirect(f"{PREFIX}/overview")


# ----------------------------------------------------------------------------------------------- overview
def _stats_apart(spec: str) -> dict[str, Any]:
    """The log's counts over a connection of its own (the server's own connection serialises its writes: a
    seconds-long count on it would hold up events)."""
    from belong.eventlog import open_store

    with open_store(spec, create=False) as st:
        return st.stats()


async def _count_log(d: Dashboard) -> dict[str, Any] | str:
    try:
        stats: dict[str, Any] | str = await asyncio.to_thread(_stats_apart, d.svc.store_spec)
    except BelongError as exc:
        stats = str(exc)
    d.log_stats = (time.monotonic(), stats)
    d.log_counting = None
    return stats


def refresh_log_stats(d: Dashboard) -> asyncio.Task | None:
    """Count the log in the background when the kept counts are missing or older than a minute (they scan the
    whole log: seconds on millions of events); the page shows the kept ones meanwhile."""
    fresh = d.log_stats is not None and time.monotonic() - d.log_stats[0] <= LOG_STATS_TTL_S
    if not fresh and d.log_counting is None:
        d.log_counting = asyncio.get_running_loop().create_task(_count_log(d))
    return d.log_counting


async def _log_stats(d: Dashboard) -> tuple[dict[str, Any] | str, float | None]:
    """The event log's counts and their age in seconds (None: being counted for the first time)."""
    refresh_log_stats(d)
    if d.log_stats is None:
        return "counting the event log…", None
    return d.log_stats[1], time.monotonic() - d.log_stats[0]


async def _health(svc: Service) -> list[dict[str, str]]:
    rows = []
    try:
        span = await asyncio.to_thread(svc.store.time_span)
        rows.append({"what": "event log", "status": "ok", "detail": f"{svc.store.url}; last event "
                     f"{'-' if span is None else us_to_iso(span[1])}"})
    except BelongError as exc:
        rows.append({"what": "event log", "status": "failing", "detail": str(exc)})
    redis = svc.settings.redis_url
    ok = await asyncio.to_thread(svc.features.ping)
    rows.append({"what": "feature store", "status": "ok" if ok else "unavailable",
                 "detail": ("Redis" if redis else "in-process") + ("" if ok else ": answers degrade")})
    rows.append({"what": "feature feed", "status": svc.features.row_cache_mode,
                 "detail": f"{svc.features.rows.invalidations:,} rows reported changed by Redis"
                 if svc.features.row_cache_mode == "exact" else "rows kept for their freshness"})
    return rows


async def overview(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return _login_redirect(request)
    d = dash(request)
    svc = d.svc
    t0 = time.perf_counter()
    live = d.live()
    live.sample()
    report = live.report()
    t1 = time.perf_counter()
    models = svc.registry.describe()
    versions = []
    for v in models["versions"]:
        if v["version"] in (models["active"], models["previous"]):
            manifest = d.manifests.get(svc.settings.models_dir, v["version"])
            rankers = views.ranker_summary(None, manifest) if manifest else []
            versions.append({"v": v, "role": "active" if v["version"] == models["active"] else "previous",
                             "rankers": rankers})
    model = svc.registry.active
    state_counts = None
    if model is not None:
        st = model.state
        state_counts = {"users": st.n_users, "communities": st.n_communities, "content": st.n_content,
                        "memberships at build": model.meta.get("memberships"),
                        "state version": st.version}
    t2 = time.perf_counter()
    log, log_age = await _log_stats(d)
    t3 = time.perf_counter()
    health = await _health(svc)
    t4 = time.perf_counter()
    response = page(request, "overview.html", session=session, title="Overview", active="overview",
                    log=log, log_age=log_age, state=state_counts, versions=versions, health=health,
                    summary=report["summary"], window_s=report["window_s"], building=svc.registry.building,
                    startup_error=svc.startup_error)
    phases = {"live": t1 - t0, "versions": t2 - t1, "log": t3 - t2, "health": t4 - t3}
    response.headers["Server-Timing"] += "".join(f", {k};dur={v * 1e3:.2f}" for k, v in phases.items())
    return response


# ----------------------------------------------------------------------------------------------- live
async def live_page(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return _login_redirect(request)
    d = dash(request)
    d.live().sample()
    report = d.live().report()
    return page(request, "live.html", session=session, title="Live", active="live", summary=report["summary"],
                window_s=report["window_s"], surfaces=views.SURFACES)


async def live_json(request: Request) -> Response:
    if session_of(request) is None:
        return _headers(Response(orjson.dumps({"error": {"code": "unauthorized", "message": "log in first"}}),
                                 status_code=401, media_type="application/json"))
    d = dash(request)
    d.live().sample()
    return _headers(Response(orjson.dumps(d.live().report()), media_type="application/json"))


# ----------------------------------------------------------------------------------------------- users
def _k(raw: str | None) -> int:
    if raw in (None, ""):
        return 10
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ValidationError("k", f"must be an integer between 1 and 100, got {raw!r}")
    return int(raw)


SHOW = {"communities": (Surface.COMMUNITIES,), "people": (Surface.PEOPLE,), "content": (Surface.CONTENT,),
        "all": views.SURFACES}


def _show(raw: str | None) -> str:
    """Which surfaces the user page runs (one by default: each is a full pipeline run)."""
    if raw in (None, ""):
        return "communities"
    if raw not in SHOW:
        raise ValidationError("show", f"must be one of {', '.join(SHOW)}, got {raw!r}")
    return raw


async def users(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return _login_redirect(request)
    q = request.query_params
    return await _user_page(request, session, q.get("user_id", ""), q.get("k"), q.get("show"), why={
        "surface": q.get("why_surface", ""), "item": q.get("why_not", "")})


async def _user_page(request: Request, session: Session, user_id: str, k_raw: str | None, show_raw: str | None,
                     why: dict[str, str] | None = None, what_if: dict[str, Any] | None = None,
                     what_if_form: dict[str, str] | None = None, status: int = 200,
                     runs: list[views.SurfaceRun] | None = None) -> Response:
    svc = dash(request).svc
    model = svc.registry.active
    data: dict[str, Any] = {"user_id": user_id.strip(), "k": 10, "error": None, "runs": None, "profile": None,
                            "matches": [], "why": None, "why_form": why or {}, "what_if": what_if,
                            "what_if_form": what_if_form or {}, "what_if_types": list(views.WHAT_IF_TYPES),
                            "recent": [], "surface_names": [s.value for s in views.SURFACES], "show": "communities",
                            "shows": list(SHOW)}
    if model is None:
        data["error"] = "no model version is active yet"
        return page(request, "users.html", 503, session, title="Users", active="users", **data)
    try:
        k = data["k"] = _k(k_raw)
        show = data["show"] = _show(show_raw)
        uid = data["user_id"]
        if uid:
            if uid not in model.state.users.index:
                data["matches"] = views.find_users(model.state, uid)
                data["error"] = f"no user {uid!r}" + ("; did you mean one of these?" if data["matches"] else "")
                if not data["matches"] and status == 200:
                    status = 404
            else:
                data["profile"] = views.profile(model.state, uid)
                data["runs"] = runs if runs is not None else await asyncio.to_thread(views.explore, model, uid, k,
                                                                                     SHOW[show])
                data["recent"] = views.recent_activity(model.state, uid)
                if why and why.get("item"):
                    surface = Surface(why["surface"]) if why.get("surface") in data["surface_names"] \
                        else SHOW[show][0]
                    try:
                        data["why"] = await asyncio.to_thread(views.why_not, model, surface, uid, why["item"].strip(),
                                                              k, data["runs"])
                    except (ValidationError, UnknownIdError) as exc:
                        data["why"] = {"error": str(exc), "item": why["item"], "surface": surface.value}
    except ValidationError as exc:
        data["error"] = str(exc)
        status = 422
    return page(request, "users.html", status, session, title="Users", active="users", **data)


async def what_if(request: Request) -> Response:
    got = await action(request)
    if isinstance(got, Response):
        return got
    session, data = got
    model = dash(request).svc.registry.active
    uid = data.get("user_id", "").strip()
    fields = {"event_type": data.get("event_type", ""), "target": data.get("target", "").strip()}
    if model is None or uid not in model.state.users.index:
        return await _user_page(request, session, uid, data.get("k"), data.get("show"), status=404)
    runs = None
    try:
        k, shown = _k(data.get("k")), SHOW[_show(data.get("show"))]
        runs = await asyncio.to_thread(views.explore, model, uid, k, shown)  # the page's lists: the "before"
        result = await asyncio.to_thread(views.what_if, model, uid, fields["event_type"], fields["target"], k, runs,
                                         shown)
    except (ValidationError, UnknownIdError) as exc:
        result = {"error": str(exc)}
    return await _user_page(request, session, uid, data.get("k"), data.get("show"), what_if=result,
                            what_if_form=fields, status=200 if "error" not in result else 422, runs=runs)


# ----------------------------------------------------------------------------------------------- models
def _version_view(d: Dashboard, v: dict[str, Any]) -> dict[str, Any]:
    svc = d.svc
    manifest = d.manifests.get(svc.settings.models_dir, v["version"])
    directory = Path(svc.settings.models_dir) / v["version"] if manifest and svc.settings.models_dir else None
    return {**v, "manifest": manifest is not None, "rankers": views.ranker_summary(directory, manifest or {})}


async def models(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return _login_redirect(request)
    d = dash(request)
    svc = d.svc
    desc = svc.registry.describe()
    loaded = [v["version"] for v in desc["versions"]]
    from belong.training.locate import artifact_versions

    artifacts = [a for a in artifact_versions(svc.settings.models_dir) if a not in loaded]
    q = request.query_params
    a = q.get("a") or desc["active"]
    b = q.get("b") or desc["previous"] or next((v for v in loaded if v != a), None)
    by_version = {v["version"]: v for v in desc["versions"]}
    side = [_version_view(d, by_version[x]) for x in (a, b) if x in by_version]
    done = q.get("done", "")
    message = MESSAGES[done].format(v=q.get("v", "")) if done in MESSAGES else None
    return page(request, "models.html", session=session, title="Models", active="models", desc=desc,
                artifacts=artifacts, side=side, a=a, b=b, message=message, building=svc.registry.building)


async def model_action(request: Request) -> Response:
    got = await action(request)
    if isinstance(got, Response):
        return got
    session, data = got
    svc = dash(request).svc
    what = data.get("do", "")
    try:
        if what == "activate":
            model = svc.activate(data.get("version", ""))
            return _redirect(f"{PREFIX}/models?done=activated&v={quote(model.version)}")
        if what == "rollback":
            previous = svc.registry.describe()["previous"]
            if previous is None:
                raise ValidationError("version", "there is no previous version to roll back to")
            svc.activate(previous)
            return _redirect(f"{PREFIX}/models?done=rolled_back&v={quote(previous)}")
        if what in ("build", "load"):
            if svc.registry.building:
                return page(request, "error.html", 409, session, title="Busy",
                            message="A model version is already being built.")
            artifact = data.get("artifact") or None if what == "load" else None
            model = await svc.build(activate=False, artifact=artifact)
            return _redirect(f"{PREFIX}/models?done={'loaded' if artifact else 'built'}&v={quote(model.version)}")
        raise ValidationError("do", "must be activate, rollback, build or load")
    except (ValidationError, UnknownIdError) as exc:
        return page(request, "error.html", 404 if isinstance(exc, UnknownIdError) else 422, session,
                    title="Not done", message=str(exc))


# ----------------------------------------------------------------------------------------------- experiments
async def experiments(request: Request) -> Response:
    """Every experiment; with ``?name=``, its analysis (arms, exposures, effects over time, SRM, guardrails)."""
    session = session_of(request)
    if session is None:
        return _login_redirect(request)
    from belong.serve.dashboard import experiment_view

    router = dash(request).svc.experiments
    data: dict[str, Any] = {"rows": [], "chosen": None, "error": None, "rule": experiment_view.GUARDRAIL_RULE}
    status = 200
    if router is None:
        data["error"] = "the experiments store is not open (the service is starting)"
        return page(request, "experiments.html", 503, session, title="Experiments", active="experiments", **data)
    exps = await asyncio.to_thread(router.store.experiments)
    data["rows"] = experiment_view.listing(exps, time.time_ns() // 1000)
    name = request.query_params.get("name", "").strip()
    if name:
        if name not in {e.name for e in exps}:
            data["error"] = f"no experiment {name!r}"
            status = 404
        else:
            from belong.experiments.analyze import analyze

            await asyncio.to_thread(router.flush)  # what this process served so far counts
            result = await asyncio.to_thread(analyze, router.store_spec, name)
            data["chosen"] = experiment_view.detail(result)
    done = request.query_params.get("done", "")
    data["message"] = f"Stopped experiment {request.query_params.get('v', '')}." if done == "stopped" else None
    return page(request, "experiments.html", status, session, title="Experiments", active="experiments", **data)


async def experiment_action(request: Request) -> Response:
    """Stop an experiment (the same as ``POST /v1/experiments/{name}/stop``)."""
    got = await action(request)
    if isinstance(got, Response):
        return got
    session, data = got
    router = dash(request).svc.experiments
    try:
        if data.get("do", "") != "stop":
            raise ValidationError("do", "must be stop")
        name = data.get("name", "").strip()
        if not name:
            raise ValidationError("name", "is required")
        if router is None:
            raise ValidationError("experiments", "the experiments store is not open yet")
        exp = await asyncio.to_thread(router.store.stop, name)
        await asyncio.to_thread(router.refresh)
        return _redirect(f"{PREFIX}/experiments?name={quote(exp.name)}&done=stopped&v={quote(exp.name)}")
    except (ValidationError, UnknownIdError) as exc:
        return page(request, "error.html", 404 if isinstance(exc, UnknownIdError) else 422, session,
                    title="Not done", message=str(exc))


async def static(name: str, request: Request) -> Response:
    if name not in STATIC:
        return _headers(Response(b"not found", status_code=404, media_type="text/plain"))
    response = Response(dash(request).static[name], media_type=STATIC[name])
    response.headers.update(HEADERS)
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


ROUTES: list[tuple[str, str, Callable[..., Any]]] = [
    ("GET", "", home), ("GET", "/", home), ("GET", "/login", login_form), ("POST", "/login", login),
    ("POST", "/logout", logout), ("GET", "/overview", overview), ("GET", "/live", live_page),
    ("GET", "/live.json", live_json), ("GET", "/users", users), ("POST", "/users/what-if", what_if),
    ("GET", "/models", models), ("POST", "/models", model_action), ("GET", "/experiments", experiments),
    ("POST", "/experiments", experiment_action),
    ("GET", "/static/{name}", static),
]


def install(app: FastAPI) -> None:
    """Add the dashboard's routes to the app (hidden from the OpenAPI document)."""
    app.state.dashboard = Dashboard(app.state.service)
    for method, path, endpoint in ROUTES:
        app.add_api_route(PREFIX + path, endpoint, methods=[method], include_in_schema=False)
