"""The recommendation pipeline framework: sources -> hydrate -> filter -> score -> select -> respond.

Entry points: :class:`Pipeline` (``Pipeline.load("communities").fit(WorldState.from_store(...)).run(request)``),
:class:`WorldState`, :class:`Request` and :class:`NewUser`.
"""

from belong.pipeline.pipeline import Pipeline
from belong.pipeline.state import WorldState
from belong.pipeline.types import NewUser, Request, Response

__all__ = ["NewUser", "Pipeline", "Request", "Response", "WorldState"]
