"""Mutual TLS as a setting: a real server and real clients with certificates from a CA made here.
A call with this CA's client certificate works; no certificate, a certificate from another CA, a
plaintext client or a server name the certificate does not carry is refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hemovision_grpc_server import (
    GrpcServiceSettings,
    TlsError,
    TlsSettings,
    create_blocking_channel,
    create_channel,
    create_server,
    load_tls,
    wait_for_health,
)
from hemovision_grpc_server.certificates import ensure_local_pki, issue_certificate

SERVICE = "test.v1.EchoService"
ECHO = f"/{SERVICE}/Echo"


def _register(server: grpc.aio.Server) -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b"echo:" + request

    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),)
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return ensure_local_pki(tmp_path_factory.mktemp("tls"), ["server", "client"])


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory):
    """Another CA with a client certificate of the same name."""
    return ensure_local_pki(tmp_path_factory.mktemp("other-tls"), ["client"])


@pytest.fixture
async def server(pki):
    running = await create_server(GrpcServiceSettings(port=0), service_names=[SERVICE], register=_register,
                                  tls=pki["server"])
    assert running.tls
    yield running
    await running.stop(0)


async def _echo(channel: grpc.aio.Channel) -> bytes:
    return await channel.unary_unary(ECHO)(b"hi", timeout=5)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_client_with_a_certificate_of_the_ca_is_served(server, pki, host):
    address = f"{host}:{server.port}"
    async with create_channel(address, tls=pki["client"]) as channel:
        assert await _echo(channel) == b"echo:hi"
    await wait_for_health(address, SERVICE, timeout=5, tls=pki["client"])  # health checks speak mTLS too

    def blocking_check() -> int:  # the command-line / container health check path, off the server's loop
        with create_blocking_channel(address, tls=pki["client"]) as channel:
            request = health_pb2.HealthCheckRequest(service=SERVICE)
            return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status

    assert await asyncio.to_thread(blocking_check) == health_pb2.HealthCheckResponse.SERVING


async def test_a_plaintext_client_is_refused(server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _echo(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_tls_client_without_a_certificate_is_refused(server, pki):
    creds = grpc.ssl_channel_credentials(root_certificates=pki["client"].ca_file.read_bytes())
    async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", creds) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _echo(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_certificate_from_another_ca_is_refused(server, pki, other_pki):
    # trusts the right CA for the server, but its own certificate is signed by another one
    stranger = TlsSettings(cert_file=other_pki["client"].cert_file, key_file=other_pki["client"].key_file,
                           ca_file=pki["client"].ca_file)
    async with create_channel(f"127.0.0.1:{server.port}", tls=stranger) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _echo(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_server_from_another_ca_is_refused_by_the_client(server, other_pki):
    async with create_channel(f"127.0.0.1:{server.port}", tls=other_pki["client"]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _echo(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_server_certificate_must_name_the_host_the_client_dials(pki, tmp_path):
    """A certificate for `auth` alone (no 127.0.0.1 SAN) does not pass for 127.0.0.1."""
    ca = pki["server"].ca_file
    cert, key = issue_certificate(ca.read_bytes(), (ca.parent / "ca.key").read_bytes(), "auth", hosts=())
    (tmp_path / "auth.pem").write_bytes(cert)
    (tmp_path / "auth.key").write_bytes(key)
    only_auth = TlsSettings(cert_file=tmp_path / "auth.pem", key_file=tmp_path / "auth.key", ca_file=ca)
    running = await create_server(GrpcServiceSettings(port=0), service_names=[SERVICE], register=_register,
                                  tls=only_auth)
    try:
        async with create_channel(f"127.0.0.1:{running.port}", tls=pki["client"]) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _echo(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.stop(0)


async def test_the_environment_turns_mtls_on_for_servers_and_channels(pki, monkeypatch):
    server_files, client_files = pki["server"], pki["client"]
    for var, value in (("HV_TLS_CERT_FILE", server_files.cert_file), ("HV_TLS_KEY_FILE", server_files.key_file),
                       ("HV_TLS_CA_FILE", server_files.ca_file)):
        monkeypatch.setenv(var, str(value))
    running = await create_server(GrpcServiceSettings(port=0), service_names=[SERVICE], register=_register)
    try:
        assert running.tls
        monkeypatch.setenv("HV_TLS_CERT_FILE", str(client_files.cert_file))
        monkeypatch.setenv("HV_TLS_KEY_FILE", str(client_files.key_file))
        async with create_channel(f"127.0.0.1:{running.port}") as channel:
            assert await _echo(channel) == b"echo:hi"
    finally:
        await running.stop(0)


def test_plaintext_when_unset_and_a_clear_error_when_half_set_or_unreadable(pki, tmp_path, monkeypatch):
    for var in ("HV_TLS_CERT_FILE", "HV_TLS_KEY_FILE", "HV_TLS_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    assert load_tls() is None
    for var in ("HV_TLS_CERT_FILE", "HV_TLS_KEY_FILE", "HV_TLS_CA_FILE"):
        monkeypatch.setenv(var, "")  # compose's ${HV_TLS_CERT_FILE:-}: unset, not the directory "."
    assert load_tls() is None
    files = pki["server"]
    with pytest.raises(TlsError, match="HV_TLS_CA_FILE not"):
        load_tls(TlsSettings(cert_file=files.cert_file, key_file=files.key_file))
    with pytest.raises(TlsError, match=f"HV_TLS_KEY_FILE={tmp_path}/missing.key: cannot read it"):
        load_tls(TlsSettings(cert_file=files.cert_file, key_file=tmp_path / "missing.key", ca_file=files.ca_file))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TlsError, match="HV_TLS_CA_FILE=.*not a PEM file"):
        load_tls(TlsSettings(cert_file=files.cert_file, key_file=files.key_file, ca_file=tmp_path / "junk.pem"))


def test_a_service_with_a_missing_certificate_file_stops_at_start_with_the_setting_named(pki, tmp_path):
    """A real `serve` process (run()): exit status 2 and one line naming the setting and the path."""
    script = textwrap.dedent(f"""
        from hemovision_grpc_server import GrpcServiceSettings, create_server, run, Server
        async def create(settings):
            return Server(await create_server(settings, service_names=["{SERVICE}"], register=lambda s: None))
        run("echo", GrpcServiceSettings(port=0), create)
    """)
    env = {**os.environ, "HV_TLS_CERT_FILE": str(tmp_path / "gone.pem"),
           "HV_TLS_KEY_FILE": str(pki["server"].key_file), "HV_TLS_CA_FILE": str(pki["server"].ca_file)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"echo: cannot start: HV_TLS_CERT_FILE={tmp_path}/gone.pem: cannot read it" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_local_ca_is_kept_across_restarts_and_a_broken_certificate_reissued(tmp_path):
    first = ensure_local_pki(tmp_path, ["auth", "gateway"])
    ca, auth = first["auth"].ca_file.read_bytes(), first["auth"].cert_file.read_bytes()
    gateway_key = first["gateway"].key_file.read_bytes()
    assert oct(first["auth"].key_file.stat().st_mode & 0o777) == "0o600"
    first["gateway"].key_file.write_bytes(b"")  # interrupted write
    again = ensure_local_pki(tmp_path, ["auth", "gateway"])
    assert again["auth"].ca_file.read_bytes() == ca and again["auth"].cert_file.read_bytes() == auth
    assert again["gateway"].key_file.read_bytes() not in (b"", gateway_key)
    assert load_tls(again["gateway"]) is not None
