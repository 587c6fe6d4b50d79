"""The community data model: users, communities, content items and events.

(One module over 400 lines on purpose: every record type and the parser of its untrusted input side by side, so a
field's rules are written once.)

Every record is a frozen ``msgspec.Struct``. Records are built from untrusted input with the ``parse_*``
functions, which either return a complete, valid record or raise :class:`belong.errors.ValidationError` naming the
field and the reason: a record is never half-applied.

Timestamps are stored as integer microseconds since the Unix epoch, UTC (``ts_us``). Inputs may give ISO-8601
strings (with or without a zone; no zone means UTC), or epoch seconds as int/float.

Event types and what their ``target`` is (``target_kind``):

=================  ==========================  ===============================================================
type               target_kind (default first)  value
=================  ==========================  ===============================================================
join, leave        community                    engagement weight (default 1)
message            community, content           number of messages (> 0)
reaction           content, community           number of reactions (> 0)
voice_minutes      community, content           minutes (> 0)
view               content, community           number of views (> 0)
friend_request     user                         1
friend_accept      user                         1 (the friendship is undirected once accepted)
friend_remove      user                         1
block              user, community              1
report             user, community, content     1
impression         community, user, content     1; needs request_id, surface, position, propensity
click              community, user, content     1; request_id optional (links to the impression)
=================  ==========================  ===============================================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

import msgspec

from belong.errors import ValidationError

MAX_ID_LEN = 128
MAX_TEXT_LEN = 20_000
MIN_TS_US = 0  # 1970-01-01
MAX_TS_US = 4_102_444_800_000_000  # 2100-01-01
_ID_RE = re.compile(r"^[^\x00-\x1f\x7f]+$")


E = TypeVar("E", bound=StrEnum)


class EventType(StrEnum):
    JOIN = "join"
    LEAVE = "leave"
    MESSAGE = "message"
    REACTION = "reaction"
    VOICE_MINUTES = "voice_minutes"
    VIEW = "view"
    FRIEND_REQUEST = "friend_request"
    FRIEND_ACCEPT = "friend_accept"
    FRIEND_REMOVE = "friend_remove"
    BLOCK = "block"
    REPORT = "report"
    IMPRESSION = "impression"
    CLICK = "click"


class TargetKind(StrEnum):
    USER = "user"
    COMMUNITY = "community"
    CONTENT = "content"


class AgeGroup(StrEnum):
    TEEN = "teen"
    ADULT = "adult"
    UNKNOWN = "unknown"


class ContentKind(StrEnum):
    CHANNEL = "channel"
    POST = "post"
    EVENT = "event"


class EntityStatus(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"
    BANNED = "banned"


class Surface(StrEnum):
    COMMUNITIES = "communities"
    PEOPLE = "people"
    CONTENT = "content"


#: each surface's name, for hot paths (an enum's ``.value`` is a slow property lookup)
SURFACE_NAME: dict[Surface, str] = {s: s.value for s in Surface}


_U, _C, _X = TargetKind.USER, TargetKind.COMMUNITY, TargetKind.CONTENT
#: allowed target kinds per event type; the first is the default.
TARGET_KINDS: dict[EventType, tuple[TargetKind, ...]] = {
    EventType.JOIN: (_C,),
    EventType.LEAVE: (_C,),
    EventType.MESSAGE: (_C, _X),
    EventType.REACTION: (_X, _C),
    EventType.VOICE_MINUTES: (_C, _X),
    EventType.VIEW: (_X, _C),
    EventType.FRIEND_REQUEST: (_U,),
    EventType.FRIEND_ACCEPT: (_U,),
    EventType.FRIEND_REMOVE: (_U,),
    EventType.BLOCK: (_U, _C),
    EventType.REPORT: (_U, _C, _X),
    EventType.IMPRESSION: (_C, _U, _X),
    EventType.CLICK: (_C, _U, _X),
}
#: event types whose value must be strictly positive (a count or a duration).
POSITIVE_VALUE_TYPES = frozenset(
    {EventType.MESSAGE, EventType.REACTION, EventType.VOICE_MINUTES, EventType.VIEW}
)
#: event types between two users, where actor == target is meaningless.
USER_PAIR_TYPES = frozenset(
    {EventType.FRIEND_REQUEST, EventType.FRIEND_ACCEPT, EventType.FRIEND_REMOVE}
)


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    created_at_us: int
    age_group: AgeGroup = AgeGroup.UNKNOWN
    locale: str = "und"
    interests: tuple[str, ...] = ()
    status: EntityStatus = EntityStatus.ACTIVE


class Community(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    created_at_us: int
    description: str = ""
    tags: tuple[str, ...] = ()
    locale: str = "und"
    is_age_restricted: bool = False
    discoverable: bool = True
    invite_only: bool = False
    status: EntityStatus = EntityStatus.ACTIVE


class ContentItem(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    community_id: str
    kind: ContentKind
    created_at_us: int
    text: str = ""
    status: EntityStatus = EntityStatus.ACTIVE


class Event(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    ts_us: int
    type: EventType
    actor: str
    target: str
    target_kind: TargetKind
    value: float = 1.0
    request_id: str | None = None
    surface: Surface | None = None
    position: int | None = None
    propensity: float | None = None


# --------------------------------------------------------------------------------------------- field parsers


def _missing(field: str) -> ValidationError:
    return ValidationError(field, "is required")


def parse_id(raw: Any, field: str) -> str:
    if raw is None:
        raise _missing(field)
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ValidationError(field, f"must be a string id, got {type(raw).__name__}")
    s = str(raw).strip()
    if not s:
        raise ValidationError(field, "must not be empty")
    if len(s) > MAX_ID_LEN:
        raise ValidationError(field, f"must be at most {MAX_ID_LEN} characters, got {len(s)}")
    if not _ID_RE.match(s):
        raise ValidationError(field, "must not contain control characters")
    return s


def _epoch_us(seconds: float, field: str) -> int:
    """Epoch seconds as integer microseconds; a value too large to scale (``1e308``) is out of range, not a crash."""
    scaled = seconds * 1_000_000
    if isinstance(scaled, float) and not math.isfinite(scaled):
        raise ValidationError(field, "must be between 1970-01-01 and 2100-01-01")
    return round(scaled)


def parse_ts(raw: Any, field: str) -> int:
    """Return integer microseconds since the epoch (UTC) from ISO-8601 text or epoch seconds."""
    if raw is None or raw == "":
        raise _missing(field)
    if isinstance(raw, bool):
        raise ValidationError(field, "must be an ISO-8601 timestamp or epoch seconds, got a boolean")
    if isinstance(raw, datetime):
        dt = raw if raw.tzinfo else raw.replace(tzinfo=UTC)
        us = round(dt.timestamp() * 1_000_000)
    elif isinstance(raw, int | float):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ValidationError(field, "must be a finite number of epoch seconds")
        us = _epoch_us(raw, field)
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            num = float(text)
        except ValueError:
            num = None
        if num is not None and math.isfinite(num):
            us = _epoch_us(num, field)
        else:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
            except ValueError:
                raise ValidationError(
                    field, f"must be an ISO-8601 timestamp or epoch seconds, got {raw[:40]!r}"
                ) from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            us = round(dt.timestamp() * 1_000_000)
    else:
        raise ValidationError(field, f"must be an ISO-8601 timestamp or epoch seconds, got {type(raw).__name__}")
    if not MIN_TS_US <= us < MAX_TS_US:
        raise ValidationError(field, "must be between 1970-01-01 and 2100-01-01")
    return us


def parse_float(raw: Any, field: str, *, default: float | None = None) -> float:
    if raw is None or raw == "":
        if default is None:
            raise _missing(field)
        return default
    if isinstance(raw, bool):
        raise ValidationError(field, "must be a number, got a boolean")
    try:
        val = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise ValidationError(field, f"must be a number, got {str(raw)[:40]!r}") from None
    if not math.isfinite(val):
        raise ValidationError(field, "must be finite")
    return val


def parse_int(raw: Any, field: str) -> int:
    if raw is None or raw == "":
        raise _missing(field)
    if isinstance(raw, bool):
        raise ValidationError(field, "must be an integer, got a boolean")
    if isinstance(raw, float):
        if not raw.is_integer():
            raise ValidationError(field, f"must be an integer, got {raw}")
        return int(raw)
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ValidationError(field, f"must be an integer, got {str(raw)[:40]!r}") from None


def parse_bool(raw: Any, field: str, *, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in {"true", "1", "yes", "false", "0", "no"}:
        return raw.strip().lower() in {"true", "1", "yes"}
    raise ValidationError(field, f"must be true or false, got {str(raw)[:40]!r}")


def parse_enum(raw: Any, enum: type[E], field: str, *, default: E | None = None) -> E:
    if raw is None or raw == "":
        if default is None:
            raise _missing(field)
        return default
    try:
        return enum(str(raw).strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise ValidationError(field, f"must be one of {allowed}; got {str(raw)[:40]!r}") from None


def parse_text(raw: Any, field: str, *, required: bool = False, max_len: int = MAX_TEXT_LEN) -> str:
    if raw is None or raw == "":
        if required:
            raise _missing(field)
        return ""
    if not isinstance(raw, str):
        raise ValidationError(field, f"must be text, got {type(raw).__name__}")
    if len(raw) > max_len:
        raise ValidationError(field, f"must be at most {max_len} characters, got {len(raw)}")
    if "\x00" in raw:  # no database stores NUL in text
        raise ValidationError(field, "must not contain NUL characters")
    return raw


def parse_tags(raw: Any, field: str) -> tuple[str, ...]:
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        items = [t for t in re.split(r"[,|;]", raw)]
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise ValidationError(field, f"must be a list of tags or a comma-separated string, got {type(raw).__name__}")
    out = []
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise ValidationError(f"{field}[{i}]", f"must be text, got {type(t).__name__}")
        t = t.strip().lower()
        if t:
            if len(t) > 64:
                raise ValidationError(f"{field}[{i}]", "must be at most 64 characters")
            if "\x00" in t:
                raise ValidationError(f"{field}[{i}]", "must not contain NUL characters")
            out.append(t)
    return tuple(dict.fromkeys(out))


def _check_unknown(data: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    extra = [k for k in data if k not in allowed]
    if extra:
        raise ValidationError(str(extra[0]) or '""', f"is not a field of {where}")


def _as_mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(where, f"must be an object, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------- record parsers

MAX_POSITION = 2**31 - 1  # stored as int32


def _parse_position(raw: Any) -> int:
    position = parse_int(raw, "position")
    if not 0 <= position <= MAX_POSITION:
        raise ValidationError("position", f"must be between 0 and {MAX_POSITION}, got {position}")
    return position


EVENT_FIELDS = frozenset(
    {
        "event_id", "ts", "timestamp", "type", "actor", "target", "target_kind", "value",
        "request_id", "surface", "position", "propensity",
    }
)


def parse_event(data: Any, *, strict_fields: bool = True) -> Event:
    """Validate one event from a mapping (JSON object, CSV row, Parquet row)."""
    data = _as_mapping(data, "event")
    if strict_fields:
        _check_unknown(data, EVENT_FIELDS, "an event")
    event_id = parse_id(data.get("event_id"), "event_id")
    ts_raw = data.get("ts") if data.get("ts") not in (None, "") else data.get("timestamp")
    ts_us = parse_ts(ts_raw, "ts")
    etype: EventType = parse_enum(data.get("type"), EventType, "type")
    actor = parse_id(data.get("actor"), "actor")
    target = parse_id(data.get("target"), "target")
    kinds = TARGET_KINDS[etype]
    target_kind: TargetKind = parse_enum(data.get("target_kind"), TargetKind, "target_kind", default=kinds[0])
    if target_kind not in kinds:
        allowed = ", ".join(k.value for k in kinds)
        raise ValidationError("target_kind", f"a {etype.value} event targets {allowed}, not {target_kind.value}")
    value = parse_float(data.get("value"), "value", default=1.0)
    if etype in POSITIVE_VALUE_TYPES and value <= 0:
        raise ValidationError("value", f"must be > 0 for a {etype.value} event, got {value:g}")
    if value < 0:
        raise ValidationError("value", f"must be >= 0, got {value:g}")
    if target_kind is TargetKind.USER and actor == target:
        raise ValidationError("target", f"a {etype.value} event cannot target its own actor")

    request_id = surface = position = propensity = None
    has_imp_fields = any(data.get(k) not in (None, "") for k in ("request_id", "surface", "position", "propensity"))
    if etype is EventType.IMPRESSION:
        request_id = parse_id(data.get("request_id"), "request_id")
        surface = parse_enum(data.get("surface"), Surface, "surface")
        position = _parse_position(data.get("position"))
        propensity = parse_float(data.get("propensity"), "propensity")
        if not 0.0 < propensity <= 1.0:
            raise ValidationError("propensity", f"must be in (0, 1], got {propensity:g}")
    elif etype is EventType.CLICK:
        if data.get("request_id") not in (None, ""):
            request_id = parse_id(data.get("request_id"), "request_id")
        if data.get("surface") not in (None, ""):
            surface = parse_enum(data.get("surface"), Surface, "surface")
        if data.get("position") not in (None, ""):
            position = _parse_position(data.get("position"))
        if data.get("propensity") not in (None, ""):
            raise ValidationError("propensity", "is only allowed on impression events")
    elif has_imp_fields:
        bad = next(k for k in ("request_id", "surface", "position", "propensity") if data.get(k) not in (None, ""))
        raise ValidationError(bad, f"is only allowed on impression and click events, not {etype.value}")
    return Event(
        event_id=event_id, ts_us=ts_us, type=etype, actor=actor, target=target, target_kind=target_kind,
        value=value, request_id=request_id, surface=surface, position=position, propensity=propensity,
    )


USER_FIELDS = frozenset({"id", "created_at", "age_group", "locale", "interests", "status"})
COMMUNITY_FIELDS = frozenset(
    {"id", "name", "description", "tags", "locale", "is_age_restricted", "discoverable", "invite_only",
     "created_at", "status"}
)
CONTENT_FIELDS = frozenset({"id", "community_id", "kind", "text", "created_at", "status"})


def parse_locale(raw: Any, field: str = "locale") -> str:
    if raw is None or raw == "":
        return "und"
    if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*", raw.strip()):
        raise ValidationError(field, f"must be a BCP-47 language tag like 'en' or 'pt-BR', got {str(raw)[:40]!r}")
    return raw.strip().replace("_", "-")


def parse_user(data: Any) -> User:
    data = _as_mapping(data, "user")
    _check_unknown(data, USER_FIELDS, "a user")
    return User(
        id=parse_id(data.get("id"), "id"),
        created_at_us=parse_ts(data.get("created_at"), "created_at"),
        age_group=parse_enum(data.get("age_group"), AgeGroup, "age_group", default=AgeGroup.UNKNOWN),
        locale=parse_locale(data.get("locale")),
        interests=parse_tags(data.get("interests"), "interests"),
        status=parse_enum(data.get("status"), EntityStatus, "status", default=EntityStatus.ACTIVE),
    )


def parse_community(data: Any) -> Community:
    data = _as_mapping(data, "community")
    _check_unknown(data, COMMUNITY_FIELDS, "a community")
    return Community(
        id=parse_id(data.get("id"), "id"),
        name=parse_text(data.get("name"), "name", required=True, max_len=200),
        description=parse_text(data.get("description"), "description"),
        tags=parse_tags(data.get("tags"), "tags"),
        locale=parse_locale(data.get("locale")),
        is_age_restricted=parse_bool(data.get("is_age_restricted"), "is_age_restricted", default=False),
        discoverable=parse_bool(data.get("discoverable"), "discoverable", default=True),
        invite_only=parse_bool(data.get("invite_only"), "invite_only", default=False),
        created_at_us=parse_ts(data.get("created_at"), "created_at"),
        status=parse_enum(data.get("status"), EntityStatus, "status", default=EntityStatus.ACTIVE),
    )


def parse_content(data: Any) -> ContentItem:
    data = _as_mapping(data, "content item")
    _check_unknown(data, CONTENT_FIELDS, "a content item")
    return ContentItem(
        id=parse_id(data.get("id"), "id"),
        community_id=parse_id(data.get("community_id"), "community_id"),
        kind=parse_enum(data.get("kind"), ContentKind, "kind"),
        text=parse_text(data.get("text"), "text"),
        created_at_us=parse_ts(data.get("created_at"), "created_at"),
        status=parse_enum(data.get("status"), EntityStatus, "status", default=EntityStatus.ACTIVE),
    )


def us_to_datetime(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us / 1_000_000, tz=UTC)


def us_to_iso(ts_us: int) -> str:
    return us_to_datetime(ts_us).isoformat().replace("+00:00", "Z")
