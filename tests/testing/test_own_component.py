"""A user's own components pass belong's contracts the way belong's do: subclass the contract, build the component."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from belong.domain import Surface
from belong.pipeline.components import CandidateSource, Selector, SourceConfig, register
from belong.pipeline.types import Candidate, Merged, Reason, Request
from belong.state import WorldState
from belong.testing import SelectorContract, SourceContract


@register("source", "test_locale_popular")
class LocalePopular(CandidateSource):
    """Communities with the most members among people who share the user's language."""

    def __init__(self, config: SourceConfig | None = None) -> None:
        super().__init__(config)
        self.counts: dict[str, np.ndarray] = {}

    def prepare(self, state: WorldState) -> None:
        members = state.membership_csr()
        locales = np.asarray(state.users.locale[: members.shape[0]])
        self.counts = {loc: np.asarray(members[locales == loc].sum(axis=0), np.float64).ravel()
                       for loc in sorted(set(locales.tolist()))}

    def fitted(self) -> dict[str, Any]:
        return {"locales": list(self.counts), "counts": np.vstack(list(self.counts.values()))}

    def restore(self, fitted: dict[str, Any], state: WorldState) -> None:
        self.counts = dict(zip(fitted["locales"], fitted["counts"], strict=True))

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        p = state.profile(request)  # unknown ids fail here
        counts = self.counts.get(p.locale)
        if request.surface is not Surface.COMMUNITIES or counts is None:
            return []
        top, vals = self._top(counts, self.config.k, exclude=p.communities)
        reason = Reason(f"popular among {p.locale} speakers", {"locale": p.locale})
        return [Candidate(int(j), self.name, float(s), reason) for j, s in zip(top, vals, strict=True)]


class OnePerSource(Selector):
    """Round robin over the candidates' main sources (best rank), each source's best first: a diverse list."""

    mutates = False
    deterministic = True

    def select(self, request: Request, cands: list[Merged], scores: np.ndarray) -> list[tuple[Merged, float]]:
        queues: dict[str, list[int]] = {}
        for i in sorted(range(len(cands)), key=lambda i: (-scores[i], cands[i].item)):
            hits = cands[i].hits
            queues.setdefault(min(hits, key=lambda s: hits[s][0]) if hits else "", []).append(i)
        chosen: list[int] = []
        while len(chosen) < request.k and any(queues.values()):
            for name in sorted(queues):
                if queues[name] and len(chosen) < request.k:
                    chosen.append(queues[name].pop(0))
        return [(cands[i], float(scores[i])) for i in chosen]


class TestLocalePopular(SourceContract):
    @pytest.fixture
    def source(self) -> CandidateSource:
        return LocalePopular(SourceConfig(k=4))


class TestOnePerSource(SelectorContract):
    @pytest.fixture
    def selector(self) -> Selector:
        return OnePerSource()


def test_own_source_is_a_pipeline_type() -> None:
    from belong.pipeline import Pipeline

    p = Pipeline.from_toml('surface = "communities"\n[[sources]]\ntype = "test_locale_popular"\nk = 3')
    assert isinstance(p.sources[0], LocalePopular) and p.sources[0].config.k == 3
