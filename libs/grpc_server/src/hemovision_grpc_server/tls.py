"""Mutual TLS between the services, as a setting read in this one place.

    HV_TLS_CERT_FILE   this process's certificate (PEM; chain allowed), presented as server and as client
    HV_TLS_KEY_FILE    its private key (PEM)
    HV_TLS_CA_FILE     the CA (PEM) that signs every peer's certificate

All three unset (or empty): plaintext (the one-machine default). All three set: every server built by
create_server() requires a client certificate signed by the CA, and every channel from
create_channel() / create_blocking_channel() / wait_for_health() presents this certificate and
verifies the server's against the CA, host name included: a certificate names (SANs) every
host its clients dial (docs/deployment.md "Mutual TLS"). One or two set, or a file missing or
unreadable: TlsError, naming the setting and the path. Files are read when a server or channel
is created (a restart picks up renewed certificates).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_NAMES = {"cert_file": "HV_TLS_CERT_FILE", "key_file": "HV_TLS_KEY_FILE", "ca_file": "HV_TLS_CA_FILE"}


class TlsError(RuntimeError):
    """The TLS settings are incomplete or a file cannot be used; the message says which."""


@dataclass(frozen=True)
class TlsMaterial:
    """The PEM bytes of this process's certificate, key and the CA."""

    cert: bytes
    key: bytes
    ca: bytes

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server side: present `cert`, require a client certificate signed by `ca`."""
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client side: verify the server against `ca`, present `cert`."""
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert)


class TlsSettings(BaseSettings):
    """HV_TLS_CERT_FILE, HV_TLS_KEY_FILE, HV_TLS_CA_FILE (also from .env, like every setting)."""

    model_config = SettingsConfigDict(env_prefix="HV_TLS_", env_file=".env", extra="ignore")

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None

    @field_validator("cert_file", "key_file", "ca_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `HV_TLS_CERT_FILE=` (e.g. compose's ${HV_TLS_CERT_FILE:-}) means unset, not the directory "."
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f) for f in ENV_NAMES)

    def load(self) -> TlsMaterial | None:
        """None when TLS is off; the files' bytes when on; TlsError when half set or unreadable."""
        values = {f: getattr(self, f) for f in ENV_NAMES}
        if not any(values.values()):
            return None
        missing = [ENV_NAMES[f] for f, v in values.items() if not v]
        if missing:
            given = ", ".join(ENV_NAMES[f] for f, v in values.items() if v)
            raise TlsError(f"mutual TLS needs all of HV_TLS_CERT_FILE, HV_TLS_KEY_FILE, HV_TLS_CA_FILE: "
                           f"{given} set but {', '.join(missing)} not (unset all three for plaintext)")
        return TlsMaterial(**{f.removesuffix("_file"): _read_pem(ENV_NAMES[f], v) for f, v in values.items()})


def _read_pem(setting: str, path: Path) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"{setting}={path}: cannot read it ({exc.strerror or exc})") from None
    if b"-----BEGIN " not in data:
        raise TlsError(f"{setting}={path}: not a PEM file (no -----BEGIN line)")
    return data


def load_tls(tls: TlsSettings | None = None) -> TlsMaterial | None:
    """The TLS material of `tls`, or of the environment (HV_TLS_*) when None; None = plaintext."""
    return (tls if tls is not None else TlsSettings()).load()
