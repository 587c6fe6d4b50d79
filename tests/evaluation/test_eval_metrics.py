"""Every metric against hand-computed cases (LightGCN definitions: Recall divides by |test|, even when > K)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from belong.evaluation import metrics as M

L3, L5 = math.log2(3), math.log2(5)


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(rows), n_items))


# user 0: 5 test items (more than K = 4), hits at ranks 2 and 4; user 1: one test item, hit at rank 2, short list
TOP = np.array([[3, 1, 7, 2], [5, 6, -1, -1]])
USERS = np.array([0, 1])
TEST = csr([[1, 2, 9, 10, 11], [6]], 12)


@pytest.fixture()
def hits() -> np.ndarray:
    return M.hit_matrix(TOP, USERS, TEST)


def test_hit_matrix_marks_test_items_and_ignores_padding(hits: np.ndarray) -> None:
    assert hits.tolist() == [[False, True, False, True], [False, True, False, False]]
    # padding (-1) never hits, even if item 0 were relevant
    assert not M.hit_matrix(np.array([[-1]]), np.array([0]), csr([[0]], 1)).any()


def test_recall_divides_by_all_test_items(hits: np.ndarray) -> None:
    n_rel = np.array([5, 1])
    assert M.recall_at(hits, n_rel, 4) == pytest.approx([2 / 5, 1.0])
    assert M.recall_at(hits, n_rel, 2) == pytest.approx([1 / 5, 1.0])
    assert M.recall_at(hits, n_rel, 1) == pytest.approx([0.0, 0.0])


def test_precision_and_hit_rate(hits: np.ndarray) -> None:
    assert M.precision_at(hits, 4) == pytest.approx([2 / 4, 1 / 4])
    assert M.hr_at(hits, 4) == pytest.approx([1.0, 1.0])
    assert M.hr_at(hits, 1) == pytest.approx([0.0, 0.0])


def test_ndcg_idcg_over_min_of_test_size_and_k(hits: np.ndarray) -> None:
    n_rel = np.array([5, 1])
    idcg4 = 1 + 1 / L3 + 1 / 2 + 1 / L5  # four ideal hits (min(5, 4))
    assert M.ndcg_at(hits, n_rel, 4) == pytest.approx([(1 / L3 + 1 / L5) / idcg4, 1 / L3])
    assert M.ndcg_at(hits, n_rel, 2) == pytest.approx([(1 / L3) / (1 + 1 / L3), 1 / L3])


def test_ndcg_is_one_for_a_perfect_list() -> None:
    h = M.hit_matrix(np.array([[4, 2, 0]]), np.array([0]), csr([[0, 2, 4]], 5))
    assert M.ndcg_at(h, np.array([3]), 3) == pytest.approx([1.0])


def test_mrr_is_reciprocal_rank_of_first_hit(hits: np.ndarray) -> None:
    assert M.mrr_at(hits, 4) == pytest.approx([1 / 2, 1 / 2])
    assert M.mrr_at(hits, 1) == pytest.approx([0.0, 0.0])


def test_map_averages_precision_at_hit_ranks(hits: np.ndarray) -> None:
    n_rel = np.array([5, 1])
    # user 0: (P@2 + P@4) / min(5, 4) = (1/2 + 2/4) / 4; user 1: P@2 / 1
    assert M.map_at(hits, n_rel, 4) == pytest.approx([(1 / 2 + 2 / 4) / 4, 1 / 2])
    assert M.map_at(hits, n_rel, 2) == pytest.approx([(1 / 2) / 2, 1 / 2])


def test_coverage_counts_distinct_items_over_catalogue() -> None:
    assert M.coverage_at(TOP, 12, 4) == pytest.approx(6 / 12)
    assert M.coverage_at(TOP, 12, 1) == pytest.approx(2 / 12)


def test_popularity_and_novelty() -> None:
    # 4 training users; item popularity: item0 = 4 users, item1 = 2, item2 = 1, item3 = 0
    train = csr([[0, 1, 2], [0, 1], [0], [0]], 4)
    pop = np.asarray(train.sum(0)).ravel()
    top = np.array([[0, 1], [2, 3], [1, -1]])
    assert M.arp_at(top, pop, 2) == pytest.approx([3.0, 0.5, 2.0])
    expected = [
        (-math.log2(4 / 4) - math.log2(2 / 4)) / 2,
        (-math.log2(1 / 4) - math.log2(1 / 4)) / 2,  # an unseen item counts as one user
        -math.log2(2 / 4),
    ]
    assert M.novelty_at(top, pop, 4, 2) == pytest.approx(expected)


def test_intra_list_diversity() -> None:
    # items 0 and 1 have identical training columns, item 2 is disjoint from both
    train = csr([[0, 1], [0, 1], [2]], 3)
    top = np.array([[0, 1, 2], [0, 2, -1], [1, -1, -1]])
    ild = M.ild_at(top, train, [2, 3])
    assert ild[2][:2] == pytest.approx([0.0, 1.0], abs=1e-6)
    assert math.isnan(ild[2][2])  # one item: no pairs
    # three items: pairs (0,1)=1, (0,2)=0, (1,2)=0 -> mean similarity 1/3
    assert ild[3][0] == pytest.approx(1 - 1 / 3, abs=1e-6)
    # the per-batch path (similarities built batch by batch) gives the same numbers
    small = M.ild_at(top, train, [2, 3], max_dense_items=2)
    for k in (2, 3):
        np.testing.assert_allclose(small[k], ild[k], equal_nan=True)


def test_compute_names_and_means() -> None:
    train = csr([[0, 4], [3, 8]], 12)
    values = M.compute(TOP, USERS, TEST, train, [2, 4])
    means = values.means()
    assert set(means) == {f"{m}@{k}" for m in (*M.PER_USER, "coverage") for k in (2, 4)}
    assert means["recall@4"] == pytest.approx((2 / 5 + 1.0) / 2)
    assert means["coverage@4"] == pytest.approx(6 / 12)
    assert values.per_user["hr@4"].shape == (2,)
