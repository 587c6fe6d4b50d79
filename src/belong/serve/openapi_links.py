"""OpenAPI links between the API's operations: how a value one answer returns feeds the next request (a
recommendation's user and items to the similar routes, a model list's versions to activation). They document
the API's flows for client generators, and let a stateful fuzzer (schemathesis) chain real ids instead of
guessing them (``tests/serve/test_schemathesis.py``)."""

from __future__ import annotations

from typing import Any

#: (from operation, status, link name, to operation, parameters as runtime expressions)
LINKS: list[tuple[str, str, str, str, dict[str, str]]] = [
    ("recommendations", "200", "SimilarToTheUser", "similar_users", {"user_id": "$response.body#/user_id"}),
    ("recommendations", "200", "SimilarToTheFirstItem", "similar_communities",
     {"community_id": "$response.body#/items/0/id"}),
    ("similar_users", "200", "SimilarToAnAnswer", "similar_users", {"user_id": "$response.body#/items/0/id"}),
    ("similar_communities", "200", "SimilarToAnAnswer", "similar_communities",
     {"community_id": "$response.body#/items/0/id"}),
    ("list_models", "200", "ActivateTheActive", "activate_model", {"version": "$response.body#/active"}),
    ("build_model", "201", "ActivateTheActive", "activate_model", {"version": "$response.body#/active"}),
    ("build_model", "201", "RollBack", "activate_model", {"version": "$response.body#/previous"}),
]


def add_links(schema: dict[str, Any]) -> dict[str, Any]:
    """Add :data:`LINKS` to an OpenAPI document (operations are found by their endpoint's name, the prefix of
    FastAPI's operation ids; a link whose operation is absent is left out)."""
    ops: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in schema.get("paths", {}).values():
        for op in item.values():
            if isinstance(op, dict) and "operationId" in op:
                for name in {n for n, *_ in LINKS} | {t for *_, t, _ in LINKS}:
                    if op["operationId"].startswith(f"{name}_"):
                        ops[name] = (op["operationId"], op)
    for source, status, link, target, params in LINKS:
        if source in ops and target in ops:
            response = ops[source][1].setdefault("responses", {}).setdefault(status, {"description": "OK"})
            response.setdefault("links", {})[link] = {"operationId": ops[target][0], "parameters": params}
    return schema
