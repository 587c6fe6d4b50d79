"""Learning to rank, re-ranking and safety rules: pipeline components beside the candidate sources.

Importing this package registers its components for surface TOML files:

================  ========  ==========================================================================
type              kind      idea
================  ========  ==========================================================================
``lgbm_ranker``   scorer    LightGBM LambdaRank (+ calibrated binary objectives), :mod:`.scorer`
``people_ranker`` scorer    people you may know by the learned p(friendship forms), :mod:`.people`
``content_ranker`` scorer   content by the learned p(engage) on graded engagement labels, :mod:`.content`
``people_two_sided`` scorer  p(request) x p(accept | request), one-sided without requests, :mod:`.people_two_sided`
``tuned_rrf``     scorer    the rank blend, its source weights tuned on a validation cut at fit, :mod:`.tuned_rrf`
``gated_rrf``     scorer    the rank blend, ``gated`` sources kept where a validation cut shows gains, :mod:`.gated_rrf`
``mmr``           selector  MMR diversity, per-source quotas, an exploration slot with propensity, :mod:`.rerank`
``safety_rules``  filter    every safety rule with a per-surface policy, :mod:`.rules`
``pending``       filter    pending friend requests in either direction, :mod:`.rules`
``strangers``     filter    no teen <-> adult strangers, :mod:`.rules`
================  ========  ==========================================================================
"""

from belong.ranking import content, gated_rrf, people, people_two_sided, rerank, rules, scorer, tuned_rrf  # noqa: F401
