"""Fuzz harness of the API's input parsers: the event parser (``POST /v1/events`` rows), the impression parser
(``POST /v1/impressions`` bodies), the recommendation query parser (``GET /v1/recommendations/...``) and the
experiment-declaration parser (``POST /v1/experiments``, ``belong experiment create``).
:func:`check` turns arbitrary bytes into a structured input — a JSON-like object whose keys are mostly the real
field names and whose values are of every JSON type, often near the valid ones — and asserts the parser either
answers or raises its documented error (``belong.errors.ValidationError`` naming a field; for an impression body,
also pydantic's ``ValidationError``, which the API answers 422). Anything else is a crash.

Run by atheris (coverage-guided; ``python parsers_harness.py -runs=N``) or, where atheris is not installed, by
hypothesis (``tests/fuzz/test_fuzz_parsers.py``)."""

from __future__ import annotations

import sys
from typing import Any

EVENT_KEYS = ["event_id", "ts", "timestamp", "type", "actor", "target", "target_kind", "value", "request_id",
              "surface", "position", "propensity", "extra"]
IMPRESSION_KEYS = ["request_id", "user_id", "surface", "ts", "items", "extra"]
ITEM_KEYS = ["item_id", "position", "propensity", "extra"]
QUERY_KEYS = ["user_id", "k", "debug", "locale", "age_group", "interests"]
EXPERIMENT_KEYS = ["name", "surface", "arms", "unit", "layer", "traffic", "start", "stop", "primary_metric",
                   "guardrails", "salt", "description", "extra"]
ARM_KEYS = ["name", "weight", "override", "surface", "model", "extra"]
OVERRIDES: list[Any] = [{}, {"scorer.c": 5.0}, {"scorer.c": "x"}, {"select.epsilon": 0.1}, {"select.epsilon": 2.0},
                        {"sources.trending.k": 10}, {"sources.nope.k": 1}, {"nope": 1}, {"scorer": {"c": 1}}, []]
TYPES = ["join", "leave", "message", "reaction", "voice_minutes", "view", "friend_request", "friend_accept",
         "friend_remove", "block", "report", "impression", "click", "JOIN", "nope"]
PLAUSIBLE: dict[str, list[Any]] = {
    "event_id": ["e1", "e2", "e1", "", "e 1", "e\x00", "x" * 200], "type": TYPES,
    "ts": ["2026-11-01T00:00:00Z", 1_780_000_000, 1_780_000_000.5, "2026-11-01", -1, 1e20, "nan", True],
    "timestamp": ["2026-11-01T00:00:00+02:00", 0], "actor": ["u1", "u2", "", "u 1"],
    "target": ["c1", "u2", "u1", "x1"], "target_kind": ["user", "community", "content", "USER", "thing"],
    "value": [1, 2.5, 0, -1, "3", float("nan"), float("inf"), None], "request_id": ["r1", "", None, 5],
    "surface": ["communities", "people", "content", "nope", ""], "position": [0, 1, -1, "2", 2.5, True, 10**12],
    "propensity": [1.0, 0.5, 0, 1.5, "0.5", float("nan"), None], "user_id": ["u1", "u2", ""],
    "item_id": ["c1", "u2", ""], "k": ["10", "1_0", "0", "101", " 7", "+7", "7.0", "\uff17", "99999999999"],
    "debug": ["true", "false", "1", "maybe", ""], "locale": ["en", "pt-BR", "und", "x" * 40, "e n"],
    "age_group": ["teen", "adult", "unknown", "child", ""], "interests": ["gaming,music", "", ",,,", "a" * 2100],
    "name": ["exp-1", "control", "treatment", "Exp", "", "a" * 70, "b"], "weight": [0.5, 0.5, 1.0, 0, -0.1, "0.5"],
    "override": OVERRIDES, "model": ["v1", "", None], "unit": ["user", "cluster", "team"], "layer": ["default", ""],
    "traffic": [1.0, 0.5, 0, 2, float("nan")], "start": ["2026-11-01T00:00:00Z", 0, "soon"],
    "stop": ["2026-12-01T00:00:00Z", "2026-10-01T00:00:00Z", None], "salt": ["s", ""],
    "primary_metric": ["joins", "join_rate", "messages", "revenue"],
    "guardrails": [["reports", "blocks"], ["x"], "reports"],
    "description": ["d", 5],
}
WORDS = ["join", "leave", "view", "impression", "click", "block", "friend_request", "community", "user", "content",
         "communities", "people", "u1", "c1", "x1", "2026-11-01T00:00:00Z", "1e308", "nan", "inf", "-1", "0", "1",
         "", " ", "\x00", "é", "a" * 300, "2026-13-40T99:99:99Z", "1780000000", "true", "null"]


class Reader:
    """Bytes read as a stream of small decisions (exhausted: zeros)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.i = data, 0

    def byte(self) -> int:
        b = self.data[self.i] if self.i < len(self.data) else 0
        self.i += 1
        return b

    def pick(self, seq: list[Any]) -> Any:
        return seq[self.byte() % len(seq)]

    def text(self) -> str:
        n = self.byte() % 12
        raw = bytes(self.byte() for _ in range(n))
        return raw.decode("utf-8", "replace")

    def number(self) -> Any:
        kind = self.byte() % 6
        b = int.from_bytes(bytes(self.byte() for _ in range(4)), "little", signed=True)
        return [b, b / 7.0, float("nan"), float("inf") * (1 if b >= 0 else -1), 2**64 + b, 1.0 / (1 + abs(b))][kind]

    def value(self, depth: int = 0) -> Any:
        kind = self.byte() % (9 if depth < 2 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return bool(self.byte() & 1)
        if kind == 2:
            return self.number()
        if kind == 3:
            return self.pick(WORDS)
        if kind in (4, 5):
            return self.text()
        if kind == 6:
            return [self.value(depth + 1) for _ in range(self.byte() % 3)]
        return {self.text(): self.value(depth + 1) for _ in range(self.byte() % 3)}

    def record(self, keys: list[str], depth: int = 0, items: bool = False) -> dict[str, Any]:
        """Each field: left out, a plausible value (the parser's happy and edge paths) or anything at all."""
        out: dict[str, Any] = {}
        for key in keys:
            b = self.byte() % 6
            if b == 0:
                continue
            if items and key == "items" and b > 1:
                out[key] = [self.record(ITEM_KEYS, depth + 1) for _ in range(1 + self.byte() % 3)]
            elif b == 1 or key not in PLAUSIBLE:
                out[key] = self.value(depth + 1)
            else:
                out[key] = self.pick(PLAUSIBLE[key])
        return out


def check(data: bytes) -> None:
    """One input: an event batch or an impression body, parsed; only the documented errors may escape."""
    import pydantic

    from belong.errors import ValidationError
    from belong.serve.batches import event_batch, impression_events
    from belong.serve.schemas import ImpressionBatch

    r = Reader(data)
    branch = r.byte() % 4
    if branch == 3:  # an experiment declaration (POST /v1/experiments, belong experiment create)
        from belong.experiments.declaration import parse

        body: Any = r.record(EXPERIMENT_KEYS)
        if "arms" in body and r.byte() % 4:
            body["arms"] = [r.record(ARM_KEYS) if r.byte() % 5 else r.value() for _ in range(r.byte() % 4)]
        if "surface" in body and r.byte() % 2:
            body["surface"] = r.pick(["communities", "people", "content", "communities_ranked", "nope", "../x.toml"])
        try:
            decl = parse(body if r.byte() % 8 else r.value())
        except ValidationError as exc:
            assert exc.field and exc.reason, exc
            return
        assert abs(sum(a.weight for a in decl.arms) - 1.0) < 1e-9 and len(decl.arms) >= 2
    elif branch == 2:  # the recommendation query (strings only, as a URL carries them)
        from belong.serve.params import parse_recommendation_query

        query = {k: (v if isinstance(v, str) else str(v)) for k, v in r.record(QUERY_KEYS).items()}
        try:
            q = parse_recommendation_query(query)
        except ValidationError as exc:
            assert exc.field and exc.reason, exc
            return
        assert 1 <= q.k <= 100 and q.user_id
    elif branch == 1:
        rows = [r.record(EVENT_KEYS) if r.byte() % 5 else r.value() for _ in range(r.byte() % 4)]
        try:
            events = event_batch(rows)
        except ValidationError as exc:
            assert exc.field and exc.reason, exc  # names the field and the problem
            return
        assert len(events) == len(rows)
        for e in events:
            assert e.event_id and e.actor and e.target and e.ts_us == int(e.ts_us)
    else:
        body = r.record(IMPRESSION_KEYS, items=True)
        try:
            events = impression_events(ImpressionBatch.model_validate(body))
        except pydantic.ValidationError:
            return  # the API answers 422 naming the field (belong.serve.errors)
        except ValidationError as exc:
            assert exc.field and exc.reason, exc
            return
        assert all(0 < (e.propensity or 0) <= 1 for e in events)


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["belong"]):
        import belong.domain  # noqa: F401
        import belong.experiments.declaration  # noqa: F401
        import belong.serve.batches  # noqa: F401
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
