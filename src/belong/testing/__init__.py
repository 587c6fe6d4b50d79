"""Test support a user's own components can use too: the toy world and the conformance suites that belong's own
components pass (event stores, models, sources, filters, scorers, selectors), as lkpy's ``testing`` does.

Each contract is a plain class of pytest tests; subclass it as ``Test...`` and supply the fixture its docstring names
(a fresh component), and every check runs on yours — the same checks belong's shipped components pass::

    import pytest
    from belong.testing import SourceContract

    class TestMySource(SourceContract):
        @pytest.fixture
        def source(self):
            return MySource(MySource.Config(k=4))  # fresh and unprepared, with a small k

``EventStoreContract`` (``store_spec``), ``ModelContract`` (``make_model``), ``SourceContract`` (``source``),
``FilterContract`` (``filter_``), ``ScorerContract`` (``scorer``, class-scoped: it is fitted once) and
``SelectorContract`` (``selector``). Needs pytest (the ``test`` extra).
"""

import pytest

# the contracts' asserts report their values (as in test modules) when these are imported after this line
pytest.register_assert_rewrite("belong.testing.eventlog", "belong.testing.models", "belong.testing.components")

from belong.testing.components import (  # noqa: E402
    FilterContract,
    ScorerContract,
    SelectorContract,
    SourceContract,
)
from belong.testing.eventlog import EventStoreContract  # noqa: E402
from belong.testing.models import ModelContract, two_cliques, two_clusters  # noqa: E402

__all__ = [
    "EventStoreContract",
    "FilterContract",
    "ModelContract",
    "ScorerContract",
    "SelectorContract",
    "SourceContract",
    "two_cliques",
    "two_clusters",
]
