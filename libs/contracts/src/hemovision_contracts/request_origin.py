"""Where a request came from, as the gateway saw it, forwarded to every service on gRPC metadata.

The gateway sets these from the HTTP request (the real client behind its trusted proxies) on
every outgoing call; services read them for the audit log ("from where") and for sessions.
They are informational: nothing is authorized by them."""

from __future__ import annotations

from collections.abc import Iterable

CLIENT_IP_METADATA = "hv-client-ip"
USER_AGENT_METADATA = "hv-user-agent"
USER_AGENT_MAX_CHARS = 256


def origin_metadata(client_ip: str, user_agent: str) -> tuple[tuple[str, str], ...]:
    """The metadata pairs for one request (empty values left out; gRPC metadata is ASCII)."""
    pairs = []
    if client_ip:
        pairs.append((CLIENT_IP_METADATA, client_ip))
    if user_agent:
        clean = user_agent.encode("ascii", "replace").decode("ascii")[:USER_AGENT_MAX_CHARS]
        pairs.append((USER_AGENT_METADATA, clean))
    return tuple(pairs)


def origin_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[str, str]:
    """(client_ip, user_agent) from a call's invocation metadata; "" where absent."""
    client_ip = user_agent = ""
    for key, value in metadata or ():
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if key == CLIENT_IP_METADATA:
            client_ip = text[:64]
        elif key == USER_AGENT_METADATA:
            user_agent = text[:USER_AGENT_MAX_CHARS]
    return client_ip, user_agent
