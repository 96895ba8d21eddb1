"""The OpenAPI's Link Objects (openapi_links.LINKS): each names a real operation and parameter, its
runtime expression points at a field the source answer documents, and every route addressed by an id
is reachable by a link — so a new id-addressed route without one fails here, not in a client or in
schemathesis' stateful phase (tests/e2e/test_schemathesis.py)."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import schemathesis

sys.path.insert(0, str(Path(__file__).parent))

from gateway_fakes import SERVICE_SECRET  # noqa: E402

from hemovision_gateway import Settings, create_app  # noqa: E402
from hemovision_gateway.openapi_links import UNLINKED, Feed, LinkError, add_links, operations  # noqa: E402


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    app = create_app(Settings(service_secret=SERVICE_SECRET, redis_url="redis://127.0.0.1:1/0"))
    return app.openapi()  # built without starting the app: no peer is dialled


def _links(spec):
    """(source operationId, status, link name, link) for every Link Object in the document."""
    for item in spec["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                for name, link in response.get("links", {}).items():
                    yield op["operationId"], status, name, link


def _deref(spec, schema):
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _has_pointer(spec, schema, segments) -> bool:
    """Whether a JSON pointer can resolve in a document valid against `schema` (any anyOf branch)."""
    schema = _deref(spec, schema)
    if "anyOf" in schema or "oneOf" in schema:
        return any(_has_pointer(spec, s, segments) for s in schema.get("anyOf", schema.get("oneOf")))
    if not segments:
        return True
    head, rest = segments[0], segments[1:]
    if head.isdigit():
        return schema.get("type") == "array" and _has_pointer(spec, schema.get("items", {}), rest)
    prop = schema.get("properties", {}).get(head)
    return prop is not None and _has_pointer(spec, prop, rest)


def _json_schema(op, status=None, *, request=False):
    holder = op.get("requestBody", {}) if request else op["responses"][status]
    return holder.get("content", {}).get("application/json", {}).get("schema", {})


def test_the_document_is_valid_openapi_with_unique_function_named_operation_ids(spec):
    schemathesis.openapi.from_dict(copy.deepcopy(spec)).validate()
    ops = operations(spec)  # raises on a duplicate operationId
    assert {"create_prediction", "get_prediction", "create_batch", "revoke_api_key"} <= set(ops)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", oid) for oid in ops), sorted(ops)


def test_every_link_names_a_real_operation_parameter_and_source_field(spec):
    ops = operations(spec)
    seen = 0
    for source, status, name, link in _links(spec):
        seen += 1
        where = f"{source} {status} -> {name}"
        target = ops.get(link["operationId"])
        assert target is not None, where
        params = {p["name"]: p for p in target.get("parameters", [])}
        expressions = dict(link.get("parameters", {}))
        for key in link.get("parameters", {}):
            assert key.split(".", 1)[-1] in params, f"{where}: no parameter {key}"
        required_path = {n for n, p in params.items() if p["in"] == "path"}
        assert required_path <= {k.split(".", 1)[-1] for k in expressions}, f"{where}: path parameter not fed"
        body = link.get("requestBody", {})
        body_props = _deref(spec, _json_schema(target, request=True)).get("properties", {})
        assert set(body) <= set(body_props), where
        expressions |= body
        for expr in expressions.values():
            m = re.fullmatch(r"\$(response|request)\.body#/(.+)", expr)
            assert m, f"{where}: unsupported expression {expr}"
            holder = _json_schema(ops[source], status) if m[1] == "response" else \
                _json_schema(ops[source], request=True)
            assert _has_pointer(spec, holder, m[2].split("/")), f"{where}: {expr} is not in {source}'s schema"
        if target["_method"] == "delete":
            assert ops[source]["_method"] == "post", f"{where}: only the creating operation feeds a DELETE"
    assert seen >= 40


def test_every_id_addressed_route_is_reached_by_a_link(spec):
    ops = operations(spec)
    fed = {link["operationId"] for _, _, _, link in _links(spec)}
    addressed = {oid for oid, op in ops.items() if any(p["in"] == "path" for p in op.get("parameters", []))}
    missing = addressed - fed - set(UNLINKED)
    assert not missing, f"routes addressed by an id that no link reaches (add a Feed to openapi_links.LINKS): {missing}"
    assert set(UNLINKED) <= addressed and not (set(UNLINKED) & fed), "UNLINKED lists a stale entry"


def test_the_creating_operation_feeds_every_route_of_its_collection(spec):
    ops = operations(spec)
    creators = {op["_path"]: oid for oid, op in ops.items()
                if op["_method"] == "post" and {"201", "202"} & set(op["responses"])}
    fed_by = {(source, link["operationId"]) for source, _, _, link in _links(spec)}
    unfed = []
    for oid, op in ops.items():
        if "{" not in op["_path"]:
            continue
        collection = op["_path"].split("{", 1)[0].rstrip("/")
        creator = creators.get(collection)
        if creator and (creator, oid) not in fed_by:
            unfed.append(f"{creator} -> {oid}")
    assert not unfed, unfed
    assert {("create_prediction", "delete_prediction"), ("create_batch", "get_batch"),
            ("create_api_key", "revoke_api_key"), ("start_training", "get_training"),
            ("start_adaptation", "cancel_adaptation")} <= fed_by


def test_a_link_to_something_missing_is_refused_when_the_document_is_built(spec):
    bad = [
        Feed("create_prediction", "201", {"prediction_id": "$response.body#/id"}, ("no_such_operation",)),
        Feed("create_prediction", "201", {"batch_id": "$response.body#/id"}, ("get_prediction",)),
        Feed("create_prediction", "418", {"prediction_id": "$response.body#/id"}, ("get_prediction",)),
        Feed("register", "201", {}, ("login",), request_body={"nope": "$request.body#/email"}),
        Feed("list_predictions", "200", {"prediction_id": "$response.body#/items/0/id"}, ("delete_prediction",)),
    ]
    for feed in bad:
        with pytest.raises(LinkError):
            add_links(copy.deepcopy({k: v for k, v in spec.items()}), (feed,))
