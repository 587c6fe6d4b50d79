from __future__ import annotations

import pytest

from belong.errors import ValidationError
from belong.experiments.declaration import arm_declaration, from_stored, from_toml, parse
from experiment_helpers import declaration


def test_a_valid_declaration_parses_and_round_trips() -> None:
    d = parse(declaration())
    assert d.control == "control" and d.salt == "explore_more" and d.metrics == ["joins", "reports", "blocks"]
    assert from_stored(d.to_dict()) == d


@pytest.mark.parametrize(("over", "field", "words"), [
    ({"primary_metric": "revenue"}, "primary_metric", "unknown metric 'revenue'"),
    ({"guardrails": ["reports", "likes"]}, "guardrails[1]", "unknown metric 'likes'"),
    ({"surface": "nope"}, "surface", "unknown surface 'nope'"),
    ({"unit": "team"}, "unit", "must be one of user, cluster"),
    ({"arms": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.4}]}, "arms", "weights must sum to 1"),
    ({"arms": [{"name": "a", "weight": 1.0}]}, "arms", "at least two arms"),
    ({"arms": [{"name": "a", "weight": 0.5}, {"name": "a", "weight": 0.5}]}, "arms", "repeated: a"),
    ({"arms": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5, "surface": "nope"}]}, "arms[1].surface",
     "unknown surface"),
    ({"arms": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5, "surface": "people"}]}, "arms[1].surface",
     "is a people surface"),
    ({"arms": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5, "override": {"sources.nope.k": 3}}]},
     "arms[1].override.sources.nope.k", "no source named 'nope'"),
    ({"arms": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5, "override": {"bogus": 3}}]},
     "arms[1].override.bogus", "must be"),
    ({"arms": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5, "colour": "red"}]}, "arms[1].colour",
     "is not a field"),
    ({"stop": "2025-01-01"}, "stop", "after start"),
    ({"traffic": 0}, "traffic", "must be in"),
    ({"name": "Bad Name"}, "name", "lower-case"),
    ({"colour": 1}, "colour", "is not a field"),
])
def test_bad_declarations_name_the_field_and_reason(over, field, words) -> None:
    with pytest.raises(ValidationError) as err:
        parse(declaration(**over))
    assert err.value.field == field
    assert words in err.value.reason


def test_an_override_to_an_unknown_parameter_is_refused_naming_it() -> None:
    bad = declaration(arms=[{"name": "a", "weight": 0.5},
                            {"name": "b", "weight": 0.5, "override": {"sources.trending.colour": 1}}])
    with pytest.raises(ValidationError) as err:
        parse(bad)
    assert err.value.field.startswith("arms[1].override.")
    assert "colour" in str(err.value)


def test_an_override_changes_only_its_parameter() -> None:
    d = parse(declaration(arms=[{"name": "a", "weight": 0.5},
                                {"name": "b", "weight": 0.5, "override": {"sources.trending.weight": 0.9,
                                                                          "selector.max_per_source": 3}}]))
    _, control = arm_declaration(d, d.arms[0])
    _, treat = arm_declaration(d, d.arms[1])
    trending = [s for s in treat["sources"] if s["type"] == "trending"][0]
    assert trending["weight"] == 0.9 and treat["selector"]["max_per_source"] == 3
    assert [s for s in control["sources"] if s["type"] == "trending"][0]["weight"] == 0.2
    rest = [s for s in treat["sources"] if s["type"] != "trending"]
    assert rest == [s for s in control["sources"] if s["type"] != "trending"]


def test_from_toml(tmp_path) -> None:
    p = tmp_path / "exp.toml"
    p.write_text('name = "t1"\nsurface = "people"\nprimary_metric = "pymk_accepts"\n'
                 '[[arms]]\nname = "control"\nweight = 0.5\n[[arms]]\nname = "b"\nweight = 0.5\n')
    d = from_toml(p)
    assert d.name == "t1" and [a.name for a in d.arms] == ["control", "b"]
    p.write_text("name = ")
    with pytest.raises(ValidationError) as err:
        from_toml(p)
    assert err.value.field == "file"
