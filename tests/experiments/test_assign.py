from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter

from belong.experiments.assign import Assigner, arm_of, bucket, free_range
from belong.experiments.declaration import parse
from experiment_helpers import declaration

#: the vectors of docs/EXPERIMENTS.md (bucket = first 8 bytes of sha256("salt:unit"), big-endian, mod 10000)
#: (checked independently with coreutils: printf '%s' 'explore_more:u1' | sha256sum | cut -c1-16 -> ca0a551fd9ce41c9)
VECTORS = [("explore_more", "u1", 9897), ("explore_more", "u2", 4089), ("layer-a", "alice", 6494),
           ("s", "", 2920), ("été", "ü42", 6135)]


def test_bucket_matches_the_documented_vectors() -> None:
    for salt, unit, want in VECTORS:
        assert bucket(salt, unit) == want
        digest = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
        assert int.from_bytes(digest[:8], "big") % 10000 == want  # the spec, written out


def test_bucket_matches_coreutils_sha256sum() -> None:
    import shutil

    if shutil.which("sha256sum") is None:
        import pytest

        pytest.skip("no sha256sum")
    for salt, unit, want in VECTORS:
        out = subprocess.run(["sha256sum"], input=f"{salt}:{unit}".encode(), capture_output=True, check=True)
        assert int(out.stdout[:16], 16) % 10000 == want


def test_the_docs_carry_the_vectors() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "EXPERIMENTS.md").read_text()
    for salt, unit, want in VECTORS:
        assert f"| `{salt}` | `{unit}` | {want} |" in doc


def test_arms_split_by_weight() -> None:
    d = parse(declaration(arms=[{"name": "control", "weight": 0.2}, {"name": "b", "weight": 0.8}]))
    counts = Counter(arm_of(d, f"u{i}") for i in range(20_000))
    assert abs(counts["control"] / 20_000 - 0.2) < 0.01


def test_layers_are_mutually_exclusive_and_forced_arms_win() -> None:
    a = parse(declaration(name="a", traffic=0.5))
    b = parse(declaration(name="b", traffic=0.5))
    c = parse(declaration(name="c", layer="other"))
    ra = free_range(5000, [])
    rb = free_range(5000, [ra])
    assert ra == (0, 5000) and rb == (5000, 10000) and free_range(1, [ra, rb]) is None
    assigner = Assigner([(a, ra), (b, rb), (c, (0, 10000))], forced={"a": {"u7": "treatment"}})
    seen = Counter()
    for i in range(4000):
        names = [d.name for d, _ in assigner.assign(f"u{i}")]
        assert "c" in names and not ("a" in names and "b" in names)
        seen.update(names)
    assert 1800 < seen["a"] < 2200 and seen["a"] + seen["b"] >= 3999
    assert ("a", "treatment") in [(d.name, arm) for d, arm in assigner.assign("u7")]


def test_cluster_units_put_a_cluster_in_one_arm() -> None:
    d = parse(declaration(unit="cluster"))
    clusters = {f"u{i}": f"c{i % 10}" for i in range(200)}
    assigner = Assigner([(d, (0, 10000))], clusters={d.name: clusters})
    by_cluster: dict[str, set[str]] = {}
    for u, c in clusters.items():
        by_cluster.setdefault(c, set()).update(arm for _, arm in assigner.assign(u))
    assert all(len(arms) == 1 for arms in by_cluster.values())
    assert assigner.unit(d, "new-user") == "u:new-user"


def test_assignment_is_the_same_in_another_process() -> None:
    d = parse(declaration())
    users = [f"user-{i}" for i in range(300)]
    here = [arm_of(d, u) for u in users]
    code = ("import json,sys;from belong.experiments.declaration import from_stored;"
            "from belong.experiments.assign import arm_of;d=from_stored(json.loads(sys.argv[1]));"
            f"print(json.dumps([arm_of(d, u) for u in {users!r}]))")
    import json

    for _ in range(2):  # two fresh interpreters (hash randomisation differs in each)
        out = subprocess.run([sys.executable, "-c", code, json.dumps(d.to_dict())], capture_output=True, text=True,
                             check=True)
        assert json.loads(out.stdout) == here
