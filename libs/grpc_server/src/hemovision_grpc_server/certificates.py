"""A local certificate authority for mutual TLS in development and tests (`hemovision up --tls`).

    files = ensure_local_pki(var / "secrets" / "tls", ["auth", "gateway", ...])
    files["auth"]  # TlsSettings(cert_file=.../auth.pem, key_file=.../auth.key, ca_file=.../ca.pem)

One CA (ca.pem, ca.key) and one certificate per name (<name>.pem, <name>.key), each usable as
server and as client certificate (extended key usage serverAuth + clientAuth), its SANs: the
name itself (the Kubernetes / compose service name), `localhost` and `127.0.0.1` (the addresses
of the dev stack). Keys are ECDSA P-256, files 0600 in a 0700 directory. Existing files are
kept while they are valid (signed by the CA on disk, the same SANs, more than 30 days left), so a
restart reuses them; anything else is issued anew. Production certificates come from your own
PKI (e.g. cert-manager), not from here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from hemovision_grpc_server.tls import TlsSettings

LOCAL_HOSTS = ("localhost", "127.0.0.1")
_VALID_DAYS = 365
_RENEW_BEFORE = dt.timedelta(days=30)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write(path: Path, data: bytes, *, private: bool) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(hosts: Iterable[str]):
    from cryptography import x509

    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def create_ca(common_name: str = "HemoVision local CA", *, days: int = _VALID_DAYS) -> tuple[bytes, bytes]:
    """A self-signed CA: (certificate PEM, key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue_certificate(ca_cert_pem: bytes, ca_key_pem: bytes, name: str, hosts: Sequence[str] = (),
                      *, days: int = _VALID_DAYS) -> tuple[bytes, bytes]:
    """A certificate for `name` signed by the CA, SANs `name` + `hosts`, for server and client
    use: (certificate PEM, key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an ECDSA key made by create_ca()")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(_san(dict.fromkeys([name, *hosts])), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _still_valid(cert_path: Path, key_path: Path, *, issuer_pem: bytes | None, hosts: Sequence[str] = ()) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        return False  # a key written without its certificate (interrupted run)
    if cert.not_valid_after_utc - _now() < _RENEW_BEFORE:
        return False
    if issuer_pem is None:
        return True
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(issuer_pem))
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # noqa: BLE001 - any mismatch means: issue a new one
        return False
    return san == _san(dict.fromkeys(hosts))


def ensure_local_pki(directory: Path, names: Iterable[str], *, hosts: Sequence[str] = LOCAL_HOSTS
                     ) -> dict[str, TlsSettings]:
    """The CA and one certificate per name under `directory` (created or renewed as needed):
    name -> the TlsSettings (HV_TLS_* files) that process runs with."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_cert, ca_key = directory / "ca.pem", directory / "ca.key"
    if not _still_valid(ca_cert, ca_key, issuer_pem=None):
        cert, key = create_ca()
        _write(ca_key, key, private=True)
        _write(ca_cert, cert, private=False)
    ca_pem, ca_key_pem = ca_cert.read_bytes(), ca_key.read_bytes()
    out: dict[str, TlsSettings] = {}
    for name in names:
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        if not _still_valid(cert_path, key_path, issuer_pem=ca_pem, hosts=[name, *hosts]):
            cert, key = issue_certificate(ca_pem, ca_key_pem, name, hosts)
            _write(key_path, key, private=True)
            _write(cert_path, cert, private=False)
        out[name] = TlsSettings(cert_file=cert_path, key_file=key_path, ca_file=ca_cert)
    return out
