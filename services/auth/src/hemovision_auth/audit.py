"""Audit events of auth: who did what, to whom, when, from where.

Every event is a row of auth.audit_outbox written in the transaction of the change it records
(`record`), so an event exists exactly when its change was committed. A failed sign-in has no
change: its event (and its lockout) commit in a transaction of their own.

The AuditForwarder (a background task of the auth server) sends the rows to history's
AppendAuditEvents in batches, with the outbox row id as the event id (history stores a
redelivered id once), marks them forwarded, and retries a failed batch with a doubling backoff.
A user's call never waits for it. It calls history with a service token auth signs for itself
(`ServiceTokenSource`: act="auth", sub="service:auth").
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Connection, Engine

from hemovision_auth import repository
from hemovision_auth.domain import NO_ORIGIN, Origin
from hemovision_tokens import Principal, bearer_metadata, issue_access_token

log = logging.getLogger(__name__)

# The actions auth records (history's AuditEvent.action). One place: docs/auth.md lists them.
LOGIN = "auth.login"
LOGIN_FAILED = "auth.login_failed"
LOGOUT = "auth.logout"
LOCKOUT = "auth.lockout"
UNLOCK = "auth.unlock"
REFRESH_REUSE = "auth.refresh_reuse"
SESSION_REVOKE = "auth.session_revoke"
SIGN_OUT_EVERYWHERE = "auth.sign_out_everywhere"
ROLE_CHANGE = "user.role_change"
ACTIVATE = "user.activate"
DEACTIVATE = "user.deactivate"
USER_DELETE = "user.delete"
PASSWORD_CHANGE = "user.password_change"
PASSWORD_RESET = "user.password_reset"
INVITATION_CREATE = "invitation.create"
INVITATION_ACCEPT = "invitation.accept"
API_KEY_CREATE = "api_key.create"
API_KEY_REVOKE = "api_key.revoke"

ACTIONS = (
    LOGIN, LOGIN_FAILED, LOGOUT, LOCKOUT, UNLOCK, REFRESH_REUSE, SESSION_REVOKE, SIGN_OUT_EVERYWHERE,
    ROLE_CHANGE, ACTIVATE, DEACTIVATE, USER_DELETE, PASSWORD_CHANGE, PASSWORD_RESET,
    INVITATION_CREATE, INVITATION_ACCEPT, API_KEY_CREATE, API_KEY_REVOKE,
)

# The user id of auth's own service token (not a UUID, so it can never be a real user's).
SERVICE_USER_ID = "service:auth"


def _id(value: Any) -> str:
    return str(value) if value else ""


def record(
    conn: Connection,
    action: str,
    *,
    origin: Origin = NO_ORIGIN,
    actor: Principal | None = None,
    user_id: Any = None,
    organization_id: Any = None,
    target_type: str = "",
    target_id: Any = None,
    details: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Adds one event to the outbox inside `conn`'s transaction. The actor is `actor` (the caller's
    token) or `user_id`; the organization defaults to the actor's. Never pass a password or a token
    in `details`."""
    assert action in ACTIONS, action
    details = dict(details or {})
    if actor is not None:
        user_id = user_id or actor.user_id
        organization_id = organization_id if organization_id is not None else actor.organization_id
        if actor.acting_service:
            details["acting_service"] = actor.acting_service
    if origin.user_agent and "user_agent" not in details:
        details["user_agent"] = origin.user_agent
    event_id = uuid.uuid4()
    repository.insert_audit_event(
        conn,
        id=event_id,
        occurred_at=datetime.now(UTC),
        action=action,
        organization_id=_id(organization_id),
        user_id=_id(user_id),
        target_type=target_type,
        target_id=_id(target_id),
        details_json=json.dumps(details, sort_keys=True, default=str),
        client_ip=origin.client_ip[:64],
    )
    return event_id


# ---- forwarding ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxEvent:
    """One outbox row on its way to history."""

    id: str
    occurred_at: datetime
    action: str
    organization_id: str
    user_id: str
    target_type: str
    target_id: str
    details_json: str
    client_ip: str

    @classmethod
    def from_row(cls, row: Any) -> OutboxEvent:
        return cls(
            str(row.id), row.occurred_at, row.action, row.organization_id, row.user_id, row.target_type,
            row.target_id, row.details_json, row.client_ip,
        )


class AuditSink(Protocol):
    """Where forwarded events go. `append` returns once every event is stored (idempotently, by
    id) and raises otherwise; it must give up within its own deadline."""

    async def append(self, events: Sequence[OutboxEvent]) -> None: ...


class ServiceTokenSource:
    """auth's own access token for calls to other services: act="auth", sub "service:auth", no
    organization, the least role (the verifier needs a known role; history authorizes by `act`).
    Signed with the current key, cached and renewed when less than a third of its life is left."""

    def __init__(self, current_key: Callable[[], Awaitable[Any]], *, ttl_s: int, issuer: str, audience: str,
                 act: str) -> None:
        self._current_key = current_key
        self._ttl_s = ttl_s
        self._issuer = issuer
        self._audience = audience
        self._act = act
        self._token = ""
        self._expires_at = 0.0

    async def token(self) -> str:
        if time.time() > self._expires_at - self._ttl_s / 3:
            key = await self._current_key()
            issued = issue_access_token(
                key.private_key, key.kid, user_id=SERVICE_USER_ID, organization_id="", role="lab_user", email="",
                ttl=self._ttl_s, act=self._act, issuer=self._issuer, audience=self._audience,
            )
            self._token, self._expires_at = issued.token, issued.expires_at
        return self._token


class HistoryAuditSink:
    """history's AppendAuditEvents over one reused channel, with a deadline on every call."""

    def __init__(self, channel: Any, tokens: ServiceTokenSource, *, timeout_s: float) -> None:
        from hemovision.history.v1 import history_pb2_grpc

        self._stub = history_pb2_grpc.HistoryServiceStub(channel)
        self._tokens = tokens
        self._timeout_s = timeout_s

    async def append(self, events: Sequence[OutboxEvent]) -> None:
        from hemovision.history.v1 import history_pb2

        items = []
        for e in events:
            occurred = Timestamp()
            occurred.FromDatetime(e.occurred_at)
            items.append(
                history_pb2.AuditEventInput(
                    id=e.id, organization_id=e.organization_id, user_id=e.user_id, action=e.action,
                    target_type=e.target_type, target_id=e.target_id, details_json=e.details_json,
                    occurred_at=occurred, client_ip=e.client_ip,
                )
            )
        reply = await self._stub.AppendAuditEvents(
            history_pb2.AppendAuditEventsRequest(events=items),
            metadata=bearer_metadata(await self._tokens.token()),
            timeout=self._timeout_s,
        )
        missing = {e.id for e in events} - set(reply.ids)
        if missing:
            raise RuntimeError(f"history did not store {len(missing)} of {len(events)} events")


class AuditForwarder:
    """Moves outbox rows to an AuditSink: oldest first, `batch` at a time; a failed batch is retried
    after base * 2^attempts seconds (at most `retry_max_s`); when history refuses a batch as invalid
    its events are sent one by one, so one bad event holds back only itself. Rows are leased while
    in flight, so several replicas can forward side by side (housekeeping.py deletes old forwarded rows)."""

    def __init__(
        self,
        engine: Engine,
        sink: AuditSink,
        *,
        batch: int = 100,
        interval_s: float = 1.0,
        retry_base_s: float = 1.0,
        retry_max_s: float = 300.0,
        lease_s: float = 60.0,
    ) -> None:
        self.engine = engine
        self.sink = sink
        self.batch = batch
        self.interval_s = interval_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.lease_s = lease_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Forward now instead of at the next poll."""
        self._wake.set()

    def _claim(self) -> list[Any]:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            return repository.claim_audit_events(
                conn, now=now, lease_until=now + timedelta(seconds=self.lease_s), limit=self.batch
            )

    def _done(self, ids: list[uuid.UUID]) -> None:
        with self.engine.begin() as conn:
            repository.mark_audit_events_forwarded(conn, ids=ids, at=datetime.now(UTC))

    def _defer(self, rows: list[Any], error: str) -> float:
        attempts = max(r.attempts for r in rows)
        delay = min(self.retry_base_s * 2**attempts, self.retry_max_s)
        with self.engine.begin() as conn:
            repository.defer_audit_events(
                conn, ids=[r.id for r in rows], next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay), error=error
            )
        return delay

    async def forward_once(self) -> int:
        """Sends one batch of due events; returns how many were forwarded (0: none due, or failed)."""
        rows = await asyncio.to_thread(self._claim)
        if not rows:
            return 0
        error = await self._send(rows)
        if error is None:
            return len(rows)
        if error.startswith(f"{grpc.StatusCode.INVALID_ARGUMENT.name}:") and len(rows) > 1:
            # history refused the batch for one bad event: send them one by one, so only that one waits
            sent = 0
            for row in rows:
                if await self._send([row]) is None:
                    sent += 1
            return sent
        return 0

    async def _send(self, rows: list[Any]) -> str | None:
        """Appends `rows` to the sink and marks them forwarded; on failure defers them (backoff)
        and returns the error."""
        try:
            await self.sink.append([OutboxEvent.from_row(r) for r in rows])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: retry later, never lose the rows
            if isinstance(exc, grpc.aio.AioRpcError):
                error = f"{exc.code().name}: {exc.details()}"
            else:
                error = f"{type(exc).__name__}: {exc}"
            delay = await asyncio.to_thread(self._defer, rows, error)
            log.warning("audit forwarding failed; retrying", extra={"events": len(rows), "retry_in_s": delay,
                                                                     "error": error[:200]})
            return error
        await asyncio.to_thread(self._done, [r.id for r in rows])
        return None

    async def run(self) -> None:
        """Forwards until cancelled; a database or sink failure is logged and the loop goes on."""
        while True:
            try:
                sent = await self.forward_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - e.g. the database restarting: try again next round
                log.exception("audit forwarder round failed")
                sent = 0
            if sent >= self.batch:
                continue  # more may be waiting
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)
            except TimeoutError:
                pass
