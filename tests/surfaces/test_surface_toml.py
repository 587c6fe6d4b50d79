from __future__ import annotations

import tomllib

import pytest

from belong import surfaces
from belong.errors import ValidationError
from belong.pipeline import Pipeline
from belong.pipeline.components import REGISTRY
from belong.toml_writer import dumps


@pytest.mark.parametrize("surface", ["communities", "people", "content"])
def test_shipped_surfaces_round_trip(surface):
    p = surfaces.load(surface)
    text = p.to_toml()
    again = Pipeline.from_toml(text)
    assert again.to_dict() == p.to_dict()
    assert again.to_toml() == text
    assert tomllib.loads(text)["surface"] == surface


def test_configs_are_typed_and_overridable():
    text = """
surface = "people"
[[sources]]
type = "friends_of_friends"
name = "ra"
metric = "resource_allocation"
k = 7
weight = 2.5
[[sources]]
type = "friends_of_friends"
[[filters]]
type = "self"
[scorer]
type = "weighted_rrf"
c = 10.0
weights = { ra = 3.0 }
"""
    p = Pipeline.from_toml(text)
    ra, aa = p.sources
    assert (ra.name, ra.config.metric, ra.config.k, ra.config.weight) == ("ra", "resource_allocation", 7, 2.5)
    assert aa.name == "friends_of_friends" and aa.config.metric == "adamic_adar"
    assert p.scorer.weight("ra") == 3.0 and p.scorer.weight("friends_of_friends") == 1.0
    assert Pipeline.from_toml(p.to_toml()).to_dict() == p.to_dict()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('surface = "nope"\n[[sources]]\ntype = "trending"', "surface"),
        ('surface = "people"\n[[sources]]\ntype = "nope"', "sources[0].type"),
        ('surface = "people"\n[[sources]]\ntype = "trending"\nbogus = 1', "sources[0]"),
        ('surface = "people"\n[[sources]]\ntype = "trending"\nk = "many"', "sources[0]"),
        ('surface = "people"\n[[sources]]\nweight = 1.0', "sources[0].type"),
        ('surface = "people"', "sources"),
        ('surface = "people"\n[[sources]]\ntype = "trending"\n[[sources]]\ntype = "trending"', "sources"),
        ('surface = "people"\nextra = 1\n[[sources]]\ntype = "trending"', "extra"),
        ("surface = = ", "surface"),
    ],
)
def test_bad_declarations_name_the_field(text, field):
    with pytest.raises(ValidationError) as exc:
        Pipeline.from_toml(text)
    assert exc.value.field == field


def test_unknown_surface_name():
    listed = "communities, communities_ranked, communities_tuned, content, content_blend, content_ranked, people"
    with pytest.raises(ValidationError, match=listed) as exc:
        surfaces.load("no-such-surface")
    assert exc.value.field == "surface"


def test_every_registered_component_round_trips_its_default_config():
    for kind, types in REGISTRY.items():
        for name, cls in types.items():
            comp = cls()
            data = comp.to_dict()
            assert data["type"] == name, kind
            back = tomllib.loads(dumps({"c": data}))["c"]
            assert back == data


def test_writer_values():
    data = {"s": 'quote " and ü', "f": 1.5, "i": 3, "b": False, "l": ["a", "b"], "t": {"x": 1},
            "rows": [{"a": 1}, {"a": 2}], "none": None}
    assert tomllib.loads(dumps(data)) == {k: v for k, v in data.items() if v is not None}
