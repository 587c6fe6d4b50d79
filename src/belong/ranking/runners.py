"""Where the ranker's batch work runs: in this process (and its forks) by default; a batch engine
(:mod:`belong.batch`, e.g. Ray) installs its own runners here for the duration of a job (:func:`installed`).

* ``lists(context, chunks, progress) -> parts``: the training lists of each chunk of user indices, in order, from
  the builder's context (:func:`belong.ranking.dataset.lists_of`).
* ``order(params, train, valid, rounds, feature_names) -> Booster``: the ranker's order model; ``train`` and
  ``valid`` are ``(X, y, groups)``, the training rows grouped by whole lists (early stopping on ``valid``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ListsRunner = Callable[[tuple, list[list[int]], Callable[[int, int], None] | None], list[dict]]
OrderTrainer = Callable[[dict[str, Any], tuple, tuple, int, list[str]], Any]

_lists: ListsRunner | None = None
_order: OrderTrainer | None = None


def lists_runner() -> ListsRunner | None:
    return _lists


def order_trainer() -> OrderTrainer | None:
    return _order


@contextmanager
def installed(lists: ListsRunner | None = None, order: OrderTrainer | None = None) -> Iterator[None]:
    """Use ``lists`` / ``order`` (None: the in-process default) until the block ends."""
    global _lists, _order
    before = (_lists, _order)
    _lists, _order = lists, order
    try:
        yield
    finally:
        _lists, _order = before
