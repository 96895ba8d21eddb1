"""Publishing model versions' drift references for history (docs/operations.md "Drift").

A version's reference lives with the version (hemovision.json["drift_reference"], or
assets.extra/drift_reference.json for versions exported before references existed: computed from
PBC val at registration, `ml.drift_reference.ensure_reference`). History reads it from Redis under
`hemovision_contracts.drift.reference_key(name, version)`, where this module puts it: after
`register-existing`, after a worker registers a version, and for every registered version when the
server starts (so a flushed Redis heals on the next start). Publishing never fails the caller: a
missing reference or an unreachable Redis is logged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hemovision_contracts import drift

log = logging.getLogger(__name__)


def publish_reference(redis_client: Any, name: str, version: int, reference: dict[str, Any]) -> None:
    redis_client.set(drift.reference_key(name, version), json.dumps(drift.validate_reference(reference)))


def publish_version(redis_url: str, name: str, version: int, path: str | Path, *,
                    data_dir: str | Path | None = None) -> bool:
    """Publishes one version's reference (computing it from `data_dir`'s PBC val when the version
    has none and `data_dir` is given). True when published."""
    from hemovision_training.ml.drift_reference import ensure_reference

    try:
        ref = ensure_reference(path, data_dir)
    except Exception as exc:  # noqa: BLE001 - a reference is an add-on: never fail a registration
        log.warning("drift reference of %s %s not computed: %s", name, version, exc)
        return False
    if ref is None:
        log.warning("%s %s has no drift reference (and no data folder to compute one)", name, version)
        return False
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        publish_reference(client, name, version, ref)
    except Exception as exc:  # noqa: BLE001
        log.warning("drift reference of %s %s not published: %s", name, version, exc)
        return False
    finally:
        client.close()
    return True


def publish_registered(engine: Any, redis_url: str, name: str, *, data_dir: str | Path | None = None) -> list[int]:
    """Publishes the reference of every registered version of `name` (platform and adapted);
    returns the versions published."""
    from hemovision_training import repository as repo

    try:
        with engine.connect() as conn:
            versions = repo.list_versions(conn, name=name, every_organization=True)
    except Exception as exc:  # noqa: BLE001 - the registry unreachable: publish nothing now
        log.warning("drift references not published: %s", exc)
        return []
    return [v.version for v in versions
            if publish_version(redis_url, name, v.version, v.path, data_dir=data_dir)]
