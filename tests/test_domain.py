"""Row validation of the data model (belong.domain): happy paths, named errors, and a property test that no input
makes a parser fail with anything but ValidationError."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from belong.domain import (
    AgeGroup,
    ContentKind,
    EntityStatus,
    Event,
    EventType,
    Surface,
    TargetKind,
    parse_community,
    parse_content,
    parse_event,
    parse_ts,
    parse_user,
    us_to_iso,
)
from belong.errors import ValidationError
from belong.schema import events_to_table, table_to_events, validate_event_table

JOIN = {"event_id": "e1", "ts": "2024-01-02T03:04:05Z", "type": "join", "actor": "u1", "target": "c1"}
IMPRESSION = {
    "event_id": "i1", "ts": 1_704_164_645, "type": "impression", "actor": "u1", "target": "c1",
    "request_id": "r1", "surface": "communities", "position": 0, "propensity": 0.25,
}


def field_of(fn, data) -> str:
    with pytest.raises(ValidationError) as exc:
        fn(data)
    assert exc.value.reason and str(exc.value).startswith(f"{exc.value.field}: ")
    return exc.value.field


# ------------------------------------------------------------------------------------------------ events


def test_parse_event_defaults() -> None:
    e = parse_event(JOIN)
    assert e == Event(event_id="e1", ts_us=1_704_164_645_000_000, type=EventType.JOIN, actor="u1", target="c1",
                      target_kind=TargetKind.COMMUNITY, value=1.0)


def test_parse_event_impression_and_click() -> None:
    e = parse_event(IMPRESSION)
    assert (e.request_id, e.surface, e.position, e.propensity) == ("r1", Surface.COMMUNITIES, 0, 0.25)
    c = parse_event({**JOIN, "type": "CLICK", "target_kind": "user", "target": "u2", "request_id": "r1",
                     "position": "3"})
    assert c.type is EventType.CLICK and c.target_kind is TargetKind.USER and c.position == 3


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-02T03:04:05Z", 1_704_164_645_000_000),
        ("2024-01-02T03:04:05", 1_704_164_645_000_000),  # no zone = UTC
        ("2024-01-02T04:04:05+01:00", 1_704_164_645_000_000),
        ("2024-01-02T03:04:05.000001Z", 1_704_164_645_000_001),
        (1_704_164_645, 1_704_164_645_000_000),
        (1_704_164_645.5, 1_704_164_645_500_000),
        ("1704164645", 1_704_164_645_000_000),
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), 1_704_164_645_000_000),
    ],
)
def test_parse_ts_forms(raw, expected: int) -> None:
    assert parse_ts(raw, "ts") == expected


def test_timestamp_alias_and_iso_output() -> None:
    e = parse_event({**{k: v for k, v in JOIN.items() if k != "ts"}, "timestamp": "2024-01-02T03:04:05Z"})
    assert us_to_iso(e.ts_us) == "2024-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_id": None}, "event_id"),
        ({"event_id": ""}, "event_id"),
        ({"event_id": "x" * 129}, "event_id"),
        ({"event_id": "a\nb"}, "event_id"),
        ({"event_id": True}, "event_id"),
        ({"ts": None}, "ts"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": -1}, "ts"),
        ({"ts": "2200-01-01"}, "ts"),
        ({"ts": float("nan")}, "ts"),
        ({"ts": 10**400}, "ts"),
        ({"type": "teleport"}, "type"),
        ({"type": None}, "type"),
        ({"actor": ["u1"]}, "actor"),
        ({"target": "  "}, "target"),
        ({"target_kind": "user"}, "target_kind"),
        ({"target_kind": "planet"}, "target_kind"),
        ({"value": "lots"}, "value"),
        ({"value": -1}, "value"),
        ({"value": float("inf")}, "value"),
        ({"value": 10**400}, "value"),
        ({"request_id": "r1"}, "request_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_parse_event_errors_name_the_field(change: dict, field: str) -> None:
    assert field_of(parse_event, {**JOIN, **change}) == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"request_id": None}, "request_id"),
        ({"surface": "homepage"}, "surface"),
        ({"position": -1}, "position"),
        ({"position": 2**31}, "position"),
        ({"position": 1.5}, "position"),
        ({"propensity": 0}, "propensity"),
        ({"propensity": 1.01}, "propensity"),
        ({"propensity": None}, "propensity"),
    ],
)
def test_impression_errors(change: dict, field: str) -> None:
    assert field_of(parse_event, {**IMPRESSION, **change}) == field


def test_type_specific_rules() -> None:
    assert field_of(parse_event, {**JOIN, "type": "message", "value": 0}) == "value"
    assert field_of(parse_event, {**JOIN, "type": "friend_request", "target": "u1"}) == "target"
    assert field_of(parse_event, {**JOIN, "type": "click", "propensity": 0.5}) == "propensity"
    assert field_of(parse_event, ["not", "a", "mapping"]) == "event"
    assert parse_event({**JOIN, "type": "leave", "value": 0}).value == 0.0  # only counts must be > 0


# ------------------------------------------------------------------------------------------------ entities


def test_parse_user() -> None:
    u = parse_user({"id": "u1", "created_at": "2024-01-01", "age_group": "Teen", "locale": "pt_BR",
                    "interests": "Music, art,,music", "status": "banned"})
    assert (u.age_group, u.locale, u.interests, u.status) == (AgeGroup.TEEN, "pt-BR", ("music", "art"),
                                                              EntityStatus.BANNED)
    assert parse_user({"id": 7, "created_at": 0}).id == "7"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"created_at": 0}, "id"),
        ({"id": "u1"}, "created_at"),
        ({"id": "u1", "created_at": 0, "age_group": "child"}, "age_group"),
        ({"id": "u1", "created_at": 0, "locale": "english!"}, "locale"),
        ({"id": "u1", "created_at": 0, "interests": [1]}, "interests[0]"),
        ({"id": "u1", "created_at": 0, "interests": {"a": 1}}, "interests"),
        ({"id": "u1", "created_at": 0, "interests": ["x" * 65]}, "interests[0]"),
        ({"id": "u1", "created_at": 0, "email": "a@b"}, "email"),
    ],
)
def test_parse_user_errors(data: dict, field: str) -> None:
    assert field_of(parse_user, data) == field


def test_parse_community_and_content() -> None:
    c = parse_community({"id": "c1", "name": "Chess", "created_at": 0, "tags": ["Games", "chess"],
                         "is_age_restricted": "true", "discoverable": 0, "invite_only": ""})
    assert (c.tags, c.is_age_restricted, c.discoverable, c.invite_only) == (("games", "chess"), True, False, False)
    x = parse_content({"id": "x1", "community_id": "c1", "kind": "Post", "created_at": 0, "text": "hello"})
    assert x.kind is ContentKind.POST and x.text == "hello"


@pytest.mark.parametrize(
    ("fn", "data", "field"),
    [
        (parse_community, {"id": "c1", "created_at": 0}, "name"),
        (parse_community, {"id": "c1", "name": "x" * 201, "created_at": 0}, "name"),
        (parse_community, {"id": "c1", "name": "n", "created_at": 0, "invite_only": "maybe"}, "invite_only"),
        (parse_community, {"id": "c1", "name": "n\x00", "created_at": 0}, "name"),
        (parse_community, {"id": "c1", "name": "n", "created_at": 0, "description": 5}, "description"),
        (parse_content, {"id": "x1", "community_id": "c1", "kind": "video", "created_at": 0}, "kind"),
        (parse_content, {"id": "x1", "kind": "post", "created_at": 0}, "community_id"),
        (parse_content, {"id": "x1", "community_id": "c1", "kind": "post", "created_at": 0, "status": "x"}, "status"),
    ],
)
def test_community_and_content_errors(fn, data: dict, field: str) -> None:
    assert field_of(fn, data) == field


# ------------------------------------------------------------------------------------------------ properties

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["", " ", "join", "impression", "click", "user", "community", "content",
                                           "communities", "2024-01-01", "1e400", "-0", "nan", "\x00", "0.5", "3"]),
)
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3),
                    st.dictionaries(st.text(max_size=3), _scalars, max_size=2))
_event_keys = st.sampled_from(sorted({"event_id", "ts", "timestamp", "type", "actor", "target", "target_kind", "value",
                                      "request_id", "surface", "position", "propensity", "extra"}))
_mutated_events = st.builds(
    lambda base, changes: {**base, **changes},
    st.sampled_from([JOIN, IMPRESSION, {**JOIN, "type": "click"}, {**JOIN, "type": "message", "value": 2}]),
    st.dictionaries(_event_keys, _values, max_size=4),
)
_PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPS
@given(st.one_of(_mutated_events, st.dictionaries(_event_keys, _values, max_size=12), _values))
def test_parse_event_returns_a_valid_event_or_raises_validation_error(data) -> None:
    try:
        event = parse_event(data)
    except ValidationError as exc:
        assert exc.field and exc.reason
        return
    # a valid event also passes the vectorised bulk validation and survives the Arrow round trip
    table = validate_event_table(events_to_table([event]))
    assert table_to_events(table) == [event]


@_PROPS
@given(st.dictionaries(st.sampled_from(["id", "created_at", "age_group", "locale", "interests", "status", "name",
                                        "tags", "community_id", "kind", "text", "is_age_restricted"]),
                       _values, max_size=8))
def test_entity_parsers_never_crash(data: dict) -> None:
    for fn in (parse_user, parse_community, parse_content):
        try:
            fn(data)
        except ValidationError as exc:
            assert exc.field and exc.reason


def test_round_trip_event_table_events() -> None:
    events = [parse_event(JOIN), parse_event(IMPRESSION),
              parse_event({**JOIN, "event_id": "v", "type": "voice_minutes", "value": 12.25})]
    table = events_to_table(events)
    assert table.num_rows == 3 and table.column("position").to_pylist() == [None, 0, None]
    assert table_to_events(validate_event_table(table)) == events
