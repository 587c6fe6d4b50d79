"""Batch jobs on an engine: in process (default) or as Ray Data pipelines on a Ray cluster (:mod:`.engine`):
batch scoring (:mod:`.score`), candidate precompute (:mod:`.precompute`), ``belong train``'s training lists and
LightGBM order model through Ray Train (:mod:`.train`). docs/BATCH_RAY.md."""

from belong.batch.engine import ENGINES, Engine, parse_engine, session

__all__ = ["ENGINES", "Engine", "parse_engine", "session"]
