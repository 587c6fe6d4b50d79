from __future__ import annotations

import numpy as np
import orjson
import pytest

from belong.ann import AnnIndex, auto_index, available_backends, build_index, choose_backend, parse_choice
from belong.errors import ValidationError


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    return rng.normal(size=(600, 16)).astype(np.float32), rng.normal(size=(40, 16)).astype(np.float32)


@pytest.mark.parametrize("backend", available_backends())
def test_backends_find_the_exact_top_items(vectors, backend):
    items, queries = vectors
    truth = np.argsort(-(queries @ items.T), axis=1)[:, :10]
    ids, scores = build_index(items, backend).search(queries, 10)
    assert ids.shape == (40, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), truth.tolist(), strict=True)])
    assert recall >= 0.9
    np.testing.assert_allclose(scores[:, 0], (queries @ items.T).max(axis=1), rtol=1e-4)


def test_choose_backend_measures_and_exact_wins_when_small(vectors):
    items, queries = vectors
    best, report = choose_backend(items, queries, k=10)
    assert {parse_choice(c)[0] for c in report["results"]} == set(available_backends())
    assert report["results"]["exact"]["recall"] == 1.0
    for r in report["results"].values():
        assert {"recall", "p50_ms", "qps", "build_s"} <= set(r)
    ok = {b: r for b, r in report["results"].items() if r["recall"] >= 0.95}
    assert best == min(ok, key=lambda b: ok[b]["p50_ms"])


def test_auto_index_records_measurement(vectors):
    items, queries = vectors
    idx = auto_index(items, queries, k=10)
    assert parse_choice(idx.meta["chosen"])[0] == idx.backend and idx.meta["n"] == 600


def test_hnsw_breadths_are_measured_and_a_chosen_breadth_is_built(vectors):
    items, queries = vectors
    report = choose_backend(items, queries, k=10)[1]["results"]
    assert {"faiss_hnsw:ef20", "faiss_hnsw:ef40", "faiss_hnsw:ef80"} <= set(report)
    idx = build_index(items, "faiss_hnsw", k=10, ef_search=80)
    assert idx.impl.hnsw.efSearch == 80


def test_bad_input():
    with pytest.raises(ValidationError, match="backend"):
        build_index(np.ones((3, 2), np.float32), "nope")
    with pytest.raises(ValidationError, match="vectors"):
        build_index(np.ones((0, 2), np.float32))


def test_exact_within_budget_skips_approximate_indexes(vectors):
    items, queries = vectors
    best, report = choose_backend(items, queries, k=10, exact_budget_ms=1e6)
    assert best == "exact" and set(report["results"]) == {"exact"} and "budget" in report["skipped"]
    best, report = choose_backend(items, queries, k=10, exact_budget_ms=1e-9)  # over budget: measure all
    assert {parse_choice(c)[0] for c in report["results"]} == set(available_backends())


@pytest.mark.parametrize("backend", available_backends())
def test_indexes_save_and_load_in_their_own_format(vectors, backend, tmp_path):
    """Model artifacts keep an index in its library's format (no pickle): the loaded one answers identically,
    with the same search breadth."""
    items, queries = vectors
    idx = build_index(items, backend, k=10, ef_search=40)
    entry = orjson.loads(orjson.dumps(idx.save(tmp_path, "idx")))  # what the manifest keeps: JSON
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == [entry["file"]] and files[0].read_bytes()[:1] != b"\x80"
    again = AnnIndex.load(tmp_path, entry)
    assert (again.backend, again.dim, again.size, again.build_args) == (backend, 16, 600, idx.build_args)
    for a, b in zip(again.search(queries, 10), idx.search(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValidationError, match="expected 601 x 16"):
        AnnIndex.load(tmp_path, {**entry, "size": 601})
