"""Helpers of the experiments tests."""

from __future__ import annotations

from typing import Any


def declaration(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "explore_more", "surface": "communities", "unit": "user", "layer": "communities",
        "start": "2026-01-01T00:00:00Z", "primary_metric": "joins", "guardrails": ["reports", "blocks"],
        "arms": [{"name": "control", "weight": 0.5},
                 {"name": "treatment", "weight": 0.5, "override": {"scorer.c": 30.0}}],
    }
    base.update(over)
    return base
