"""The recommendation pipeline framework: sources -> hydrate -> filter -> score (:meth:`Pipeline.candidates`), then
live rules -> select -> hydrate -> explain (:meth:`Pipeline.finish`).

Entry points: :class:`Pipeline`, :class:`Request` and :class:`NewUser`; the component base classes and their
registry are in :mod:`belong.pipeline.components`. Importing this package registers the generic components it
ships (filters, the ``social`` hydrator, the ``weighted_rrf`` scorer, the ``top_k`` selector); the candidate sources
and the learned ranker are plugins, registered by :mod:`belong.surfaces` (the surface catalogue).
"""

from belong.pipeline import filters, hydrators, scorers, selectors  # noqa: F401  (register the generic components)
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.types import NewUser, Request, Response

__all__ = ["NewUser", "Pipeline", "Request", "Response"]
