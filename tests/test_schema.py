"""Arrow schemas and the vectorised validation of bulk tables (belong.schema)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from belong.domain import parse_community, parse_content, parse_event, parse_user
from belong.errors import ValidationError
from belong.schema import (
    COMMUNITY_SCHEMA,
    CONTENT_SCHEMA,
    EVENT_SCHEMA,
    USER_SCHEMA,
    communities_to_table,
    concat,
    conform,
    content_to_table,
    events_to_table,
    table_to_events,
    users_to_table,
    validate_entity_table,
    validate_event_table,
)

ROW = {"event_id": "e1", "ts_us": 1_700_000_000_000_000, "type": "join", "actor": "u1", "target": "c1",
       "target_kind": "community", "value": 1.0}
IMP = {**ROW, "event_id": "i1", "type": "impression", "request_id": "r1", "surface": "people", "position": 2,
       "propensity": 0.5, "target_kind": "user", "target": "u2"}


def check(rows: list[dict]) -> pa.Table:
    return validate_event_table(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA))


def test_conform_casts_orders_and_fills_nullable_columns() -> None:
    t = pa.table({"value": pa.array([2], pa.int64()), "target_kind": ["community"], "target": ["c1"],
                  "actor": ["u1"], "type": ["join"], "ts_us": pa.array([5], pa.int32()), "event_id": ["e"],
                  "ignored": [1]})
    out = conform(t, EVENT_SCHEMA)
    assert out.schema == EVENT_SCHEMA
    assert out.to_pylist()[0] == {**dict.fromkeys(EVENT_SCHEMA.names), "event_id": "e", "ts_us": 5, "type": "join",
                                  "actor": "u1", "target": "c1", "target_kind": "community", "value": 2.0}


def test_conform_errors() -> None:
    with pytest.raises(ValidationError) as exc:
        conform(pa.table({"event_id": ["e"]}), EVENT_SCHEMA)
    assert exc.value.field == "ts_us"
    with pytest.raises(ValidationError) as exc:
        conform(pa.Table.from_pylist([{**ROW, "ts_us": "soon"}]), EVENT_SCHEMA)
    assert exc.value.field == "ts_us" and "cannot be read" in exc.value.reason


def test_valid_tables_pass() -> None:
    assert check([ROW, IMP]).num_rows == 2
    assert validate_event_table(EVENT_SCHEMA.empty_table()).num_rows == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_id": None}, "event_id"),
        ({"actor": ""}, "actor"),
        ({"target": "t" * 129}, "target"),
        ({"event_id": "a\tb"}, "event_id"),
        ({"request_id": "r\x00"}, "request_id"),
        ({"ts_us": -1}, "ts"),
        ({"ts_us": 4_102_444_800_000_000}, "ts"),
        ({"type": "teleport"}, "type"),
        ({"value": float("nan")}, "value"),
        ({"value": -0.5}, "value"),
        ({"type": "view", "target_kind": "content", "value": 0.0}, "value"),
        ({"target_kind": "content"}, "target_kind"),
        ({"type": "block", "target_kind": "user", "target": "u1"}, "target"),
        ({"surface": "sidebar"}, "surface"),
    ],
)
def test_each_rule_names_the_field_and_the_row(change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        check([ROW, IMP, {**ROW, "event_id": "bad", **change}])
    assert exc.value.field == field
    assert exc.value.reason.endswith("(row 2)")


@pytest.mark.parametrize("missing", ["request_id", "surface", "position", "propensity"])
def test_impression_logging_fields_are_required(missing: str) -> None:
    with pytest.raises(ValidationError) as exc:
        check([{**IMP, missing: None}])
    assert exc.value.field == missing


@pytest.mark.parametrize(("change", "field"), [({"position": -1}, "position"), ({"propensity": 0.0}, "propensity"),
                                               ({"propensity": 1.5}, "propensity")])
def test_impression_value_ranges(change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        check([{**IMP, **change}])
    assert exc.value.field == field


def test_entity_tables() -> None:
    users = users_to_table([parse_user({"id": "u1", "created_at": 0, "interests": ["a"]})])
    communities = communities_to_table([parse_community({"id": "c1", "name": "n", "created_at": 0, "tags": "x,y"})])
    content = content_to_table([parse_content({"id": "x1", "community_id": "c1", "kind": "post", "created_at": 0})])
    assert users.schema == USER_SCHEMA and users.column("interests").to_pylist() == [["a"]]
    assert communities.schema == COMMUNITY_SCHEMA and communities.column("tags").to_pylist() == [["x", "y"]]
    assert content.schema == CONTENT_SCHEMA and content.column("kind").to_pylist() == ["post"]
    for kind, t in (("users", users), ("communities", communities), ("content", content)):
        assert validate_entity_table(kind, t).equals(t)


@pytest.mark.parametrize(
    ("kind", "change", "field"),
    [
        ("users", {"id": ""}, "id"),
        ("users", {"age_group": "baby"}, "age_group"),
        ("users", {"created_at_us": -5}, "created_at"),
        ("users", {"status": "gone"}, "status"),
    ],
)
def test_entity_table_errors(kind: str, change: dict, field: str) -> None:
    row = {"id": "u1", "created_at_us": 0, "age_group": "adult", "locale": "en", "interests": None, "status": "active"}
    with pytest.raises(ValidationError) as exc:
        validate_entity_table(kind, pa.Table.from_pylist([row, {**row, **change}], schema=USER_SCHEMA))
    assert exc.value.field == field and "(row 1)" in exc.value.reason


def test_concat_conforms_every_part() -> None:
    a = events_to_table([parse_event({k: v for k, v in ROW.items() if k != "ts_us"} | {"ts": 1})])
    b = pa.Table.from_pylist([{**ROW, "event_id": "e2"}])  # inferred types, missing nullable columns
    out = concat([a, b], EVENT_SCHEMA)
    assert out.schema == EVENT_SCHEMA and out.column("event_id").to_pylist() == ["e1", "e2"]
    assert concat([], EVENT_SCHEMA).num_rows == 0


_ids = st.text(alphabet=st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=20).filter(
    lambda s: s.strip() == s
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "event_id": _ids, "ts_us": st.integers(0, 4_102_444_799_999_999),
    "type": st.sampled_from(["join", "view", "message", "friend_accept"]), "actor": _ids, "target": _ids,
    "value": st.floats(0.001, 1e9),
}), max_size=20))
def test_bulk_and_row_validation_agree_on_valid_rows(rows: list[dict]) -> None:
    """Rows parse_event accepts pass validate_event_table unchanged (the two paths accept the same data)."""
    events = []
    for r in rows:
        data = {k: v for k, v in r.items() if k != "ts_us"} | {"ts": r["ts_us"] / 1e6}
        try:
            events.append(parse_event(data))
        except ValidationError:  # e.g. a friend_accept whose target is its actor
            continue
    table = events_to_table(events)
    assert table_to_events(validate_event_table(table)) == events
