"""Maximum-inner-product search over factor vectors behind one interface, and a measured choice of backend.

Backends: ``exact`` (faiss ``IndexFlatIP``: brute force, recall 1.0), ``faiss_hnsw`` (faiss ``IndexHNSWFlat``),
``usearch`` (HNSW, f32) and ``hnswlib`` when that optional package is installed, all on the raw inner product.
(The L2 reduction with one extra coordinate ``sqrt(M^2 - |v|^2)`` was measured too and lost recall on iALS
factors, whose norms vary with popularity, so it is not used.)

:func:`choose_backend` builds each candidate on the real vectors, measures recall@k against exact search and
single-query latency on real queries, and picks the fastest backend whose recall reaches ``min_recall``. At small
sizes brute force is both exact and fastest, so it wins; the choice switches as the catalogue grows. The
measurement is kept in :attr:`AnnIndex.meta` (and printed by ``belong bench ann``). :meth:`AnnIndex.save` and
:meth:`AnnIndex.load` keep an index in its library's own format (model artifacts; never pickle).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from belong.errors import ValidationError


def available_backends() -> list[str]:
    out = ["exact", "faiss_hnsw", "usearch"]
    if importlib.util.find_spec("hnswlib") is not None:
        out.append("hnswlib")
    return out


@dataclass
class AnnIndex:
    """A built index: ``search(queries, k) -> (ids, scores)`` with inner-product scores, best first."""

    backend: str
    dim: int
    size: int
    impl: Any
    meta: dict[str, Any] = field(default_factory=dict)
    build_args: dict[str, int] = field(default_factory=dict)

    def save(self, directory: Path, stem: str) -> dict[str, Any]:
        """Write the index in its library's own format under ``directory``: ``<stem>.faiss`` (faiss
        ``write_index``), ``<stem>.usearch.npy`` (usearch's saved bytes as a uint8 array), ``<stem>.hnsw``
        (hnswlib ``save_index``). Returns what :meth:`load` needs (JSON; the file name relative to
        ``directory``)."""
        directory = Path(directory)
        if self.backend in ("exact", "faiss_hnsw"):
            import faiss

            file = f"{stem}.faiss"
            faiss.write_index(self.impl, str(directory / file))
        elif self.backend == "usearch":
            file = f"{stem}.usearch.npy"
            np.save(directory / file, np.frombuffer(self.impl.save(), np.uint8), allow_pickle=False)
        else:
            file = f"{stem}.hnsw"
            self.impl.save_index(str(directory / file))
        return {"file": file, "backend": self.backend, "dim": self.dim, "size": self.size,
                "build_args": self.build_args, "meta": self.meta}

    @classmethod
    def load(cls, directory: Path, entry: dict[str, Any]) -> AnnIndex:
        """The index :meth:`save` wrote, with its search breadth (``build_args["ef_search"]``) set again."""
        path = str(Path(directory) / entry["file"])
        backend, dim, size = entry["backend"], int(entry["dim"]), int(entry["size"])
        if backend in ("exact", "faiss_hnsw"):
            import faiss

            faiss.omp_set_num_threads(1)
            impl: Any = faiss.read_index(path)
            shape: tuple[int, int] | None = (impl.ntotal, impl.d)
        elif backend == "usearch":
            from usearch.index import Index

            impl = Index.restore(np.load(path, allow_pickle=False).tobytes())
            shape = (len(impl), impl.ndim) if impl is not None else None
        elif backend == "hnswlib" and "hnswlib" in available_backends():
            import hnswlib

            impl = hnswlib.Index(space="ip", dim=dim)
            impl.load_index(path, max_elements=size)
            shape = (impl.get_current_count(), impl.dim)
        else:
            raise ValidationError("ann", f"unknown or unavailable backend {backend!r}")
        if shape != (size, dim):
            raise ValidationError("ann", f"{entry['file']}: expected {size} x {dim} vectors, found {shape}")
        index = cls(backend, dim, size, impl, dict(entry.get("meta", {})), dict(entry["build_args"]))
        _set_ef(index, index.build_args["ef_search"])
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, self.size)
        if k <= 0:
            return np.empty((q.shape[0], 0), np.int64), np.empty((q.shape[0], 0), np.float32)
        if self.backend in ("exact", "faiss_hnsw"):
            scores, ids = self.impl.search(q, k)
            return ids.astype(np.int64), scores
        if self.backend == "usearch":
            m = self.impl.search(q, k)
            ids = np.asarray(m.keys, np.int64).reshape(q.shape[0], -1)
            scores = (1.0 - np.asarray(m.distances, np.float32)).reshape(q.shape[0], -1)
            return ids, scores
        ids, dist = self.impl.knn_query(q, k=k)  # hnswlib
        return ids.astype(np.int64), (1.0 - dist).astype(np.float32)


def build_index(vectors: np.ndarray, backend: str = "exact", *, k: int = 100, m: int = 16,
                ef_construction: int = 100, ef_search: int = 0) -> AnnIndex:
    """Index ``vectors`` (n x d float32) with ``backend``, tuned for queries of ``k`` results.

    HNSW search breadth defaults to ``max(64, 2k)`` (it must exceed k). faiss runs single-threaded: serving asks
    one user at a time, and OpenMP threads only add latency then (and contend with other work)."""
    import faiss

    faiss.omp_set_num_threads(1)
    ef_search = ef_search or max(64, 2 * k)
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValidationError("vectors", f"must be a non-empty 2-D array, got shape {v.shape}")
    n, d = v.shape
    impl: Any
    if backend == "exact":
        impl = faiss.IndexFlatIP(d)
        impl.add(v)
    elif backend == "faiss_hnsw":
        impl = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        impl.hnsw.efConstruction = ef_construction
        impl.add(v)
        impl.hnsw.efSearch = ef_search
    elif backend == "usearch":
        from usearch.index import Index

        impl = Index(ndim=d, metric="ip", dtype="f32", connectivity=m, expansion_add=ef_construction,
                     expansion_search=ef_search, multi=False)
        impl.add(np.arange(n), v)
    elif backend == "hnswlib" and "hnswlib" in available_backends():
        import hnswlib

        impl = hnswlib.Index(space="ip", dim=d)
        impl.init_index(max_elements=n, ef_construction=ef_construction, M=m)
        impl.add_items(v, np.arange(n))
        impl.set_ef(ef_search)
    else:
        known = ", ".join(available_backends())
        raise ValidationError("ann", f"unknown or unavailable backend {backend!r}; choose from {known}")
    args = {"k": k, "m": m, "ef_construction": ef_construction, "ef_search": ef_search}
    return AnnIndex(backend, d, n, impl, {"backend": backend}, args)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, truth, strict=True))
    return hits / max(truth.size, 1)


def _latency_ms(index: AnnIndex, queries: np.ndarray, k: int) -> float:
    """Median single-query latency (ms): serving asks one user at a time."""
    index.search(queries[:1], k)  # warm-up
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], k)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _set_ef(index: AnnIndex, ef: int) -> None:
    """Change an HNSW index's search breadth in place."""
    if index.backend == "faiss_hnsw":
        index.impl.hnsw.efSearch = ef
    elif index.backend == "usearch":
        index.impl.expansion_search = ef
    elif index.backend == "hnswlib":
        index.impl.set_ef(ef)


def parse_choice(choice: str) -> tuple[str, int]:
    """``"faiss_hnsw:ef400"`` -> (``"faiss_hnsw"``, 400); ``"exact"`` -> (``"exact"``, 0)."""
    backend, _, ef = choice.partition(":ef")
    return backend, int(ef) if ef else 0


def measure(vectors: np.ndarray, queries: np.ndarray, *, k: int = 100, backends: list[str] | None = None,
            max_queries: int = 200, seed: int = 0, ef_factors: tuple[int, ...] = (2, 4, 8)
            ) -> dict[str, dict[str, float]]:
    """Per configuration: build seconds, recall@k vs exact, median single-query ms, QPS.

    HNSW backends are built once and searched at several breadths (``ef = factor * k``), reported as
    ``"<backend>:ef<ef>"``: the recall/speed trade-off is measured, not assumed."""
    rng = np.random.default_rng(seed)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.shape[0] > max_queries:
        q = q[rng.choice(q.shape[0], max_queries, replace=False)]
    k = min(k, vectors.shape[0])
    exact = build_index(vectors, "exact", k=k)
    truth, _ = exact.search(q, k)
    out: dict[str, dict[str, float]] = {}
    for b in backends or available_backends():
        t0 = time.perf_counter()
        idx = exact if b == "exact" else build_index(vectors, b, k=k)
        build_s = 0.0 if b == "exact" else time.perf_counter() - t0
        for ef in ([0] if b == "exact" else [f * k for f in ef_factors]):
            if ef:
                _set_ef(idx, ef)
            found, _ = idx.search(q, k)
            ms = _latency_ms(idx, q, k)
            out[f"{b}:ef{ef}" if ef else b] = {
                "build_s": round(build_s, 4), "recall": round(_recall(found, truth), 4), "p50_ms": round(ms, 4),
                "qps": round(1e3 / ms if ms > 0 else float("inf"), 1)}
    return out


def choose_backend(vectors: np.ndarray, queries: np.ndarray, *, k: int = 100, min_recall: float = 0.95,
                   backends: list[str] | None = None, seed: int = 0,
                   exact_budget_ms: float = 0.0) -> tuple[str, dict[str, Any]]:
    """The fastest configuration (backend, and search breadth for HNSW: ``"usearch:ef400"``) whose recall@k
    reaches ``min_recall`` (exact always qualifies), and the measurement.

    ``exact_budget_ms > 0``: exact search is measured first, and when its median latency is already within the
    budget the approximate indexes are not built (they could only trade recall for time nobody needs)."""
    if exact_budget_ms > 0:
        first = measure(vectors, queries, k=k, backends=["exact"], seed=seed)
        if first["exact"]["p50_ms"] <= exact_budget_ms:
            return "exact", {"chosen": "exact", "k": k, "min_recall": min_recall, "n": int(vectors.shape[0]),
                             "dim": int(vectors.shape[1]), "results": first,
                             "skipped": f"exact p50 {first['exact']['p50_ms']} ms <= budget {exact_budget_ms} ms"}
    results = measure(vectors, queries, k=k, backends=backends, seed=seed)
    ok = {b: r for b, r in results.items() if r["recall"] >= min_recall or b == "exact"}
    best = min(ok, key=lambda b: (ok[b]["p50_ms"], b != "exact"))
    return best, {"chosen": best, "k": k, "min_recall": min_recall, "n": int(vectors.shape[0]),
                  "dim": int(vectors.shape[1]), "results": results}


def auto_index(vectors: np.ndarray, queries: np.ndarray, *, backend: str = "auto", k: int = 100,
               min_recall: float = 0.95, seed: int = 0, exact_budget_ms: float = 0.0) -> AnnIndex:
    """``backend='auto'`` measures and chooses (see :func:`choose_backend`); otherwise builds the named one."""
    if backend != "auto":
        return build_index(vectors, backend, k=k)
    best, report = choose_backend(vectors, queries, k=k, min_recall=min_recall, seed=seed,
                                  exact_budget_ms=exact_budget_ms)
    backend_name, ef = parse_choice(best)
    index = build_index(vectors, backend_name, k=k, ef_search=ef)
    index.meta.update(report)
    return index
