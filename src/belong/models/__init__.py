"""Recommendation models behind one interface (see :mod:`belong.models.base`).

Build them by name with :func:`belong.models.registry.create`; tune them with :func:`belong.tuning.tune`.

=====================  ===========================================  ====================================
name (aliases)         model                                        module
=====================  ===========================================  ====================================
most-popular (toppop)  item popularity                              :mod:`belong.models.most_popular`
itemknn                item-item cosine with shrinkage, top-k       :mod:`belong.models.itemknn`
ease                   EASE^R closed form                           :mod:`belong.models.ease`
rp3beta                3-step random walk, popularity-penalised     :mod:`belong.models.rp3beta`
ials (als)             implicit ALS                                 :mod:`belong.models.ials`
bpr                    implicit BPR-MF                              :mod:`belong.models.bpr`
common-neighbours      friendship graph: shared friends             :mod:`belong.models.graph`
adamic-adar            shared friends weighted 1/log(degree)        :mod:`belong.models.graph`
resource-allocation    shared friends weighted 1/degree             :mod:`belong.models.graph`
ppr                    personalised PageRank                        :mod:`belong.models.ppr`
gf-cf (gfcf)           linear + ideal low-pass graph filter         :mod:`belong.models.graph_filter`
bspm                   blurring-sharpening graph filter             :mod:`belong.models.graph_filter`
=====================  ===========================================  ====================================
"""
