"""OpenAPI Link Objects: which answer's field feeds which operation's parameter, declared once.

An operationId is the route function's name (`operation_id`), so a link reads like the route table:
`Feed("create_prediction", "201", {"prediction_id": "$response.body#/id"}, PREDICTION_ONE)` says the
201 of POST /predictions gives `prediction_id` to each operation in PREDICTION_ONE. `add_links`
writes them into the generated schema (`responses.<status>.links`) and refuses, when the app's
OpenAPI is built, a link to an operation or parameter that does not exist. Clients (and
schemathesis' stateful phase) follow them from a created or listed resource to the routes that
address it by id.

Rule: a DELETE is fed only by the operation that created the resource. A list or detail answer
holds things the caller did not create in this conversation (its own account, the organization's
seeded records), so links from them reach reads and reversible changes only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi.routing import APIRoute


def operation_id(route: APIRoute) -> str:
    """The operationId of a route: its function's name (stable, short; checked unique in add_links)."""
    return route.name


@dataclass(frozen=True)
class Feed:
    """The `status` answer of `source` gives `parameters` (name -> runtime expression) and, when set,
    `request_body` to each operation in `targets`. One Link Object per target, named after it."""

    source: str
    status: str
    parameters: Mapping[str, str]
    targets: tuple[str, ...]
    request_body: Mapping[str, Any] | None = None
    description: str = ""
    names: Mapping[str, str] = field(default_factory=dict)  # target -> link name, where not the target


ID = "$response.body#/id"
FIRST = "$response.body#/items/0/id"

PREDICTION_READ = ("get_prediction", "prediction_image", "prediction_heatmap", "prediction_report", "review_prediction")
BATCH_READ = ("get_batch", "batch_events", "batch_report")
USER_READ = ("get_user",)
USER_ADMIN = ("get_user", "set_role", "set_active", "delete_user", "unlock_user", "sign_user_out_everywhere")
MODEL_CHANGE = ("activate_model", "deprecate_model", "restore_model")
TRAINING_ONE = ("get_training", "cancel_training", "watch_training")
ADAPTATION_ONE = ("get_adaptation", "cancel_adaptation")

LINKS: tuple[Feed, ...] = (
    # predictions: created by one upload (or by a batch), then read, reviewed, reported, deleted
    Feed("create_prediction", "201", {"prediction_id": ID}, (*PREDICTION_READ, "delete_prediction")),
    Feed("list_predictions", "200", {"prediction_id": FIRST}, PREDICTION_READ),
    Feed("review_queue", "200", {"prediction_id": FIRST}, PREDICTION_READ),
    Feed("get_prediction", "200", {"prediction_id": ID}, ("review_prediction", "prediction_report")),
    Feed("get_batch", "200", {"prediction_id": "$response.body#/items/0/prediction_id"}, ("get_prediction",),
         description="the prediction made for the batch's first item"),
    # batches: accepted (202), then polled, watched, reported
    Feed("create_batch", "202", {"batch_id": ID}, BATCH_READ),
    Feed("list_batches", "200", {"batch_id": FIRST}, BATCH_READ),
    # accounts: a registered user signs in with what it registered; admins address users by id
    Feed("register", "201", {}, ("login",),
         request_body={"email": "$request.body#/email", "password": "$request.body#/password"},
         description="sign in with the account just registered"),
    Feed("register", "201", {"user_id": ID}, USER_ADMIN),
    Feed("accept_invitation", "201", {"user_id": ID}, USER_ADMIN),
    Feed("list_users", "200", {"user_id": FIRST}, USER_READ),
    Feed("me", "200", {"user_id": ID}, USER_READ),
    Feed("create_api_key", "201", {"key_id": ID}, ("revoke_api_key",)),
    # models: listed versions are read; a read version is activated, deprecated, restored (reversible)
    Feed("list_models", "200", {"version": "$response.body#/items/0/version", "name": "$response.body#/items/0/name"},
         ("get_model",)),
    Feed("get_model", "200", {"version": "$response.body#/version"}, MODEL_CHANGE),
    Feed("activate_model", "200", {"version": "$response.body#/version", "name": "$response.body#/name"},
         ("get_model",)),
    Feed("start_training", "201", {"job_id": ID}, TRAINING_ONE),
    Feed("list_training", "200", {"job_id": FIRST}, ("get_training", "watch_training")),
    Feed("start_adaptation", "202", {"adaptation_id": ID}, ADAPTATION_ONE),
    Feed("list_adaptations", "200", {"adaptation_id": FIRST}, ADAPTATION_ONE),
)

# Operations addressed by a path parameter that no link feeds, and why. Anything else with a path
# parameter must be the target of a link (services/gateway/tests/test_openapi_links.py).
UNLINKED: dict[str, str] = {
    "revoke_session": "a session is made by login, whose answer does not carry its id; the only source is "
                      "GET /auth/sessions, whose newest item is usually the caller's own session",
}


class LinkError(ValueError):
    """A link names an operation, status or parameter the schema does not have."""


def operations(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """operationId -> operation object (with `_path` and `_method` for messages); raises on a duplicate."""
    found: dict[str, dict[str, Any]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "operationId" not in op:
                continue
            oid = op["operationId"]
            if oid in found:
                raise LinkError(f"duplicate operationId {oid!r}: {method.upper()} {path} and "
                                f"{found[oid]['_method'].upper()} {found[oid]['_path']}")
            found[oid] = {**op, "_path": path, "_method": method}
    return found


def parameter_names(op: Mapping[str, Any]) -> set[str]:
    """Names a link may set: `name` and `<in>.<name>` for each declared parameter."""
    names = set()
    for p in op.get("parameters", []):
        names |= {p["name"], f"{p['in']}.{p['name']}"}
    return names


def body_fields(spec: Mapping[str, Any], op: Mapping[str, Any]) -> set[str]:
    """Top-level JSON body properties of an operation (empty when it takes no JSON body)."""
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    for candidate in schema.get("anyOf", [schema]):
        ref = candidate.get("$ref")
        if ref:
            return set(spec["components"]["schemas"][ref.rsplit("/", 1)[1]].get("properties", {}))
    return set(schema.get("properties", {}))


def _link(feed: Feed, target: str) -> dict[str, Any]:
    link: dict[str, Any] = {"operationId": target}
    if feed.parameters:
        link["parameters"] = dict(feed.parameters)
    if feed.request_body is not None:
        link["requestBody"] = dict(feed.request_body)
    if feed.description:
        link["description"] = feed.description
    return link


def add_links(spec: dict[str, Any], links: tuple[Feed, ...] = LINKS) -> dict[str, Any]:
    """Writes each Feed's Link Objects into `spec` (in place) and returns it."""
    ops = operations(spec)
    for feed in links:
        source = ops.get(feed.source)
        if source is None:
            raise LinkError(f"link source {feed.source!r} is not an operationId")
        response = spec["paths"][source["_path"]][source["_method"]]["responses"].get(feed.status)
        if response is None:
            raise LinkError(f"{feed.source} does not answer {feed.status}")
        for target in feed.targets:
            op = ops.get(target)
            if op is None:
                raise LinkError(f"link target {target!r} (from {feed.source}) is not an operationId")
            unknown = set(feed.parameters) - parameter_names(op)
            if unknown:
                raise LinkError(f"{target} has no parameter {sorted(unknown)} (link from {feed.source})")
            unknown = set(feed.request_body or {}) - body_fields(spec, op)
            if unknown:
                raise LinkError(f"{target}'s body has no field {sorted(unknown)} (link from {feed.source})")
            if op["_method"] == "delete" and source["_method"] != "post":
                raise LinkError(f"{feed.source} may not feed {target}: only the creating operation feeds a DELETE")
            name = feed.names.get(target, target)
            existing = response.setdefault("links", {})
            if name in existing:
                raise LinkError(f"{feed.source} {feed.status} has two links named {name!r}")
            existing[name] = _link(feed, target)
    return spec
