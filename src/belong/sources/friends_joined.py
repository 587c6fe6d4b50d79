"""``friends_joined``: communities the user's friends are members of (content: that friends engaged with)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from belong.domain import Surface
from belong.pipeline.components import CandidateSource, register
from belong.pipeline.types import Candidate, Proposals, Reason, Request
from belong.state import WorldState


@register("source", "friends_joined")
class FriendsJoined(CandidateSource):
    """Scored by how many friends are there (ties: the smaller community, where friends matter more)."""

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        p = state.profile(request)
        if request.surface is Surface.PEOPLE or p.friends.size == 0:
            return []
        content = request.surface is Surface.CONTENT
        who: dict[int, list[int]] = defaultdict(list)
        for f in p.friends.tolist():
            for j in (state.engaged.row(f) if content else state.communities_of(f)).tolist():
                who[j].append(f)
        have = set((state.engaged.row(p.idx) if content else p.communities).tolist()) if p.idx is not None else set()
        cand = [j for j in who if j not in have]
        # member counts without building member lists (exact under live edits: WorldState.member_counts)
        sizes = state.member_counts(np.array(cand, np.int64)).tolist() if cand and not content else [0] * len(cand)
        items = [(j, len(who[j]) + 1.0 / (2.0 + size)) for j, size in zip(cand, sizes, strict=True)]
        items.sort(key=lambda t: (-t[1], t[0]))
        out = []
        for j, s in items[: self.config.k]:
            friends = who[j]
            n = len(friends)
            names = ", ".join(state.users.ids[f] for f in friends[:2])
            if content:
                text = f"{n} of your friends engaged with this ({names}{'…' if n > 2 else ''})"
            elif n == 1:
                text = f"your friend {names} is a member"
            else:
                text = f"{n} of your friends are members ({names}{'…' if n > 2 else ''})"
            out.append(Candidate(j, self.name, s, Reason(text, {"friends": n})))
        return out

    def propose_batch(self, requests: list[Request], state: WorldState) -> list[Proposals]:
        """:meth:`generate`'s items and scores without candidate objects (communities: the friends' memberships
        counted at once; content: one request at a time)."""
        out = []
        for r in requests:
            p = state.profile(r)
            if r.surface is not Surface.COMMUNITIES or p.friends.size == 0:
                out.append(Proposals.of(self.generate(r, state), self.config.k))
                continue
            rows = [state.communities_of(f) for f in p.friends.tolist()]
            linked = np.concatenate(rows) if rows else np.empty(0, np.int64)
            cand, n = np.unique(linked.astype(np.int64, copy=False), return_counts=True)
            if p.idx is not None and p.communities.size:
                keep = ~np.isin(cand, p.communities)
                cand, n = cand[keep], n[keep]
            if not cand.size:
                out.append(Proposals.empty())
                continue
            score = n + 1.0 / (2.0 + state.member_counts(cand))
            out.append(Proposals(cand, score.astype(np.float64)).best(self.config.k))
        return out
