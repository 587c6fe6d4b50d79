"""Request and response shapes, declared for the OpenAPI schema (pydantic). The hot path encodes its answers
with orjson directly; these models document exactly what it writes (``tests/serve`` checks both agree)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Error(BaseModel):
    error: str = Field(description="machine-readable kind: validation, unauthorized, forbidden, not_found, ...")
    message: str
    field: str | None = None
    reason: str | None = None


class RecItem(BaseModel):
    rank: int = Field(ge=1)
    position: int = Field(ge=0, description="0-based slot, as impressions report it")
    id: str
    name: str
    score: float
    source: str = Field(description="the source that contributed most")
    sources: list[str]
    explanation: str
    propensity: float = Field(gt=0, le=1, description="probability this policy shows the item here")
    features: dict[str, Any] = Field(description="social proof (members, friends_in, mutual_friends), p_join, "
                                     "propensity; an admin caller also gets the item's online features")


class Recommendations(BaseModel):
    request_id: str
    surface: str
    user_id: str
    model_version: str
    k: int
    user_features: dict[str, Any] = Field(description="the user's online features: admin callers only (empty "
                                          "otherwise or when unavailable)")
    items: list[RecItem]
    degraded: bool
    degraded_reasons: list[str]
    cache: str = Field(description="hit, miss, stale or precomputed (a stored list, belong candidates precompute)")
    experiments: list[dict[str, str]] = Field(
        default_factory=list, description="the experiments serving this answer: [{name, arm}]")
    debug: dict[str, Any] | None = Field(None, description="with debug=true (admin key): stage timings and "
                                   "removed candidates")


class EventBatch(BaseModel):
    events: list[dict[str, Any]] = Field(
        min_length=1, max_length=1000,
        description="events as `belong ingest` takes them (event_id, ts, type, actor, target, ...)")


class ImpressionItem(BaseModel):
    item_id: str
    position: int = Field(ge=0)
    propensity: float = Field(gt=0, le=1)


class ImpressionBatch(BaseModel):
    request_id: str
    user_id: str
    surface: str
    ts: str | float | None = Field(None, description="ISO-8601 or epoch seconds; default now")
    items: list[ImpressionItem] = Field(min_length=1, max_length=1000)


class ImpressionLists(BaseModel):
    lists: list[ImpressionBatch] = Field(
        min_length=1, max_length=1000,
        description="several shown lists at once, each as `POST /v1/impressions` takes one (at most 10,000 items "
                    "in all)")


class Accepted(BaseModel):
    accepted: int = Field(description="events stored for the first time")
    duplicates: int = Field(description="events already stored (idempotent re-sends)")
    forgotten: int = Field(0, description="events dropped because they name a forgotten user (present only "
                           "when not 0; see DELETE /v1/users/{id})")


class Similar(BaseModel):
    id: str
    model_version: str
    items: list[dict[str, Any]]


class Models(BaseModel):
    active: str | None
    previous: str | None
    building: bool
    versions: list[dict[str, Any]]
    artifacts: list[str] = []


class Health(BaseModel):
    status: str
    model_version: str | None = None
    features: str | None = None
    feature_rows: str | None = None
    precomputed: dict | None = None
    replica: dict | None = None
