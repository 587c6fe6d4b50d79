"""The benchmark functions behind ``belong bench sources`` / ``belong bench ann``, on a tiny simulated world
(shape of the figures only; the real runs are the CLI commands)."""

from __future__ import annotations

from belong.bench.sources import RECALL_K, bench_ann, bench_sources


def test_bench_sources_reports_every_source_union_blend_and_baseline():
    out = bench_sources(1500, 150, requests=15, holdout_days=20.0)
    assert out["world"]["test_users"] > 0
    names = {"ials_ann", "co_membership", "pixie", "friends_joined", "trending", "new_communities", "text_match"}
    assert set(out["sources"]) == names
    key = f"recall@{RECALL_K}"
    for r in out["sources"].values():
        assert r["p50_ms"] <= r["p99_ms"] and 0.0 <= r[key] <= 1.0
    assert out["union"][key] >= max(r[key] for r in out["sources"].values())  # a union never loses recall
    assert 0.0 <= out["blend"][key] <= 1.0 and key in out["baseline_most_popular"]


def test_bench_ann_chooses_per_size():
    out = bench_ann(1500, 150, [100, 1000])
    assert [s["size"] for s in out["sizes"]] == [100, 1000]
    for s in out["sizes"]:
        assert s["chosen"] in s["results"] and s["results"]["exact"]["recall"] == 1.0
