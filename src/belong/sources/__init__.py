"""Candidate sources: each one a pipeline component (see :class:`belong.pipeline.components.CandidateSource`).

Importing this package registers every source type for surface TOML files:

=====================  =====================  =========================================================
type                   surfaces               idea
=====================  =====================  =========================================================
``ials_ann``           communities            iALS factors served through a measured ANN index; fold-in
``co_membership``      communities            item-to-item (EASE or ItemKNN, chosen by validation)
``pixie``              communities, people    random walks with restarts on users-communities-friends
``friends_of_friends`` people                 mutual friends (Adamic-Adar / resource allocation / count)
``co_members``         people                 people in the same small communities
``similar_people``     people                 declared interests and language in common (cold start)
``friend_pagerank``    people                 exact personalized PageRank over the friend graph (truncated)
``popular_people``     people                 the most connected people (fallback: no or few friends)
``friend_embedding``   people                 iALS factors of the friend graph (inner product); fold-in
``friends_joined``     communities, content   what your friends joined / engaged with
``trending``           communities, content   time-decayed popularity, overall and per locale / age
``new_communities``    communities            exploration pool of recently created communities
``text_match``         communities            text of names, descriptions, tags vs interests (cold start)
``community_content``  content                fresh content of your communities
=====================  =====================  =========================================================
"""

from belong.sources import (  # noqa: F401
    embedding,
    friends_joined,
    item2item,
    people,
    random_walk,
    text,
    trending,
)
