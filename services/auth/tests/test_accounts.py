"""Roles, invitations, user management, API keys, on-behalf-of tokens, organizations, the CLI."""

from __future__ import annotations

import io
import uuid

import grpc
import pytest

from hemovision.auth.v1 import auth_pb2
from hemovision.common.v1 import common_pb2
from hemovision_auth.__main__ import main as auth_main
from hemovision_auth.errors import InvalidArgument
from hemovision_auth.service.validation import normalize_email, one_line
from hemovision_tokens import TokenError, bearer_metadata as md

PASSWORD = "correct horse battery"
SERVICE_ID, SERVICE_SECRET = "batch-worker", "worker-secret-123"


async def rpc_error(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value


async def _invite(auth, admin_token: str, role=common_pb2.ROLE_LAB_USER):
    addr = f"tech-{uuid.uuid4().hex[:8]}@lab.example"
    inv = await auth.stub.InviteUser(auth_pb2.InviteUserRequest(email=addr, role=role), metadata=md(admin_token), timeout=10)
    token = auth.inbox.last_token(addr, "accept-invite")
    user = await auth.stub.AcceptInvitation(auth_pb2.AcceptInvitationRequest(token=token, password=PASSWORD), timeout=10)
    return inv, token, user, await auth.login(addr)


async def test_invitation_flow_and_org_roles(auth):
    admin, admin_pair = await auth.signed_up()
    inv, token, user, pair = await _invite(auth, admin_pair.access_token)
    assert inv.role == common_pb2.ROLE_LAB_USER and inv.expires_at.seconds > 0
    assert user.organization_id == admin.organization_id and user.role == common_pb2.ROLE_LAB_USER
    assert user.email_verified  # the link reached that mailbox
    mail = auth.inbox.to(user.email)[-1]
    assert admin.organization_name in mail["Subject"]

    # an invitation link works once
    err = await rpc_error(auth.stub.AcceptInvitation(auth_pb2.AcceptInvitationRequest(token=token, password=PASSWORD), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "invalid or has expired" in err.details()

    lab = pair.access_token
    err = await rpc_error(auth.stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=md(lab), timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = await rpc_error(auth.stub.InviteUser(auth_pb2.InviteUserRequest(email="x@lab.example"), metadata=md(lab), timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = await rpc_error(auth.stub.GetUser(auth_pb2.GetUserRequest(user_id=admin.id), metadata=md(lab), timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    own = await auth.stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id), metadata=md(lab), timeout=5)
    assert own.id == user.id

    # inviting an existing user, or into a platform role, is refused
    err = await rpc_error(auth.stub.InviteUser(auth_pb2.InviteUserRequest(email=user.email), metadata=md(admin_pair.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    err = await rpc_error(
        auth.stub.InviteUser(
            auth_pb2.InviteUserRequest(email="ml@lab.example", role=common_pb2.ROLE_ML_ENGINEER),
            metadata=md(admin_pair.access_token),
            timeout=5,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT

    # org_admin: lab_user <-> org_admin in its organization only
    admin_md = md(admin_pair.access_token)
    promoted = await auth.stub.SetUserRole(
        auth_pb2.SetUserRoleRequest(user_id=user.id, role=common_pb2.ROLE_ORG_ADMIN), metadata=admin_md, timeout=5
    )
    assert promoted.role == common_pb2.ROLE_ORG_ADMIN
    with pytest.raises(TokenError, match="token revoked"):  # the old token carried the old role
        await auth.verifier.verify(lab)
    refreshed = await auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=5)
    assert (await auth.verifier.verify(refreshed.access_token)).role == "org_admin"
    err = await rpc_error(
        auth.stub.SetUserRole(
            auth_pb2.SetUserRoleRequest(user_id=user.id, role=common_pb2.ROLE_PLATFORM_ADMIN), metadata=admin_md, timeout=5
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "platform_admin" in err.details()
    err = await rpc_error(
        auth.stub.SetUserRole(auth_pb2.SetUserRoleRequest(user_id=user.id), metadata=admin_md, timeout=5)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT

    # another organization's users are invisible (NOT_FOUND, never "forbidden")
    stranger, _ = await auth.signed_up()
    for call in (
        auth.stub.GetUser(auth_pb2.GetUserRequest(user_id=stranger.id), metadata=admin_md, timeout=5),
        auth.stub.SetUserActive(auth_pb2.SetUserActiveRequest(user_id=stranger.id), metadata=admin_md, timeout=5),
        auth.stub.DeleteUser(auth_pb2.DeleteUserRequest(user_id=stranger.id), metadata=admin_md, timeout=5),
    ):
        err = await rpc_error(call)
        assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(auth.stub.GetUser(auth_pb2.GetUserRequest(user_id="nope"), metadata=admin_md, timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_users_pagination_and_scope(auth):
    admin, admin_pair = await auth.signed_up()
    invited = [await _invite(auth, admin_pair.access_token) for _ in range(3)]
    seen: list[str] = []
    cursor = ""
    while True:
        page = await auth.stub.ListUsers(
            auth_pb2.ListUsersRequest(page=common_pb2.PageRequest(limit=2, cursor=cursor)),
            metadata=md(admin_pair.access_token),
            timeout=5,
        )
        seen += [u.id for u in page.users]
        assert all(u.organization_id == admin.organization_id for u in page.users)
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == [admin.id, *(i[2].id for i in invited)]
    # the contracts' limit rule: above 200 is lowered to 200, negative or a foreign cursor is refused
    big = await auth.stub.ListUsers(
        auth_pb2.ListUsersRequest(page=common_pb2.PageRequest(limit=500)), metadata=md(admin_pair.access_token), timeout=5
    )
    assert [u.id for u in big.users] == seen and big.next_cursor == ""
    for bad in (common_pb2.PageRequest(limit=-1), common_pb2.PageRequest(cursor="garbage!")):
        err = await rpc_error(
            auth.stub.ListUsers(auth_pb2.ListUsersRequest(page=bad), metadata=md(admin_pair.access_token), timeout=5)
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT

    orgs = await auth.stub.ListOrganizations(auth_pb2.ListOrganizationsRequest(), metadata=md(admin_pair.access_token), timeout=5)
    assert [(o.id, o.user_count) for o in orgs.organizations] == [(admin.organization_id, 4)]
    root = await auth.login(auth.platform_admin())
    everyone = await auth.stub.ListUsers(
        auth_pb2.ListUsersRequest(page=common_pb2.PageRequest(limit=200)), metadata=md(root.access_token), timeout=5
    )
    assert {admin.id} <= {u.id for u in everyone.users}
    all_orgs = await auth.stub.ListOrganizations(auth_pb2.ListOrganizationsRequest(), metadata=md(root.access_token), timeout=5)
    assert len(all_orgs.organizations) > 1


async def test_deactivate_and_delete(auth):
    admin, admin_pair = await auth.signed_up()
    _, _, user, pair = await _invite(auth, admin_pair.access_token)
    admin_md = md(admin_pair.access_token)
    err = await rpc_error(auth.stub.SetUserActive(auth_pb2.SetUserActiveRequest(user_id=admin.id), metadata=admin_md, timeout=5))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION

    off = await auth.stub.SetUserActive(auth_pb2.SetUserActiveRequest(user_id=user.id, active=False), metadata=admin_md, timeout=5)
    assert not off.active
    with pytest.raises(TokenError, match="token revoked"):
        await auth.verifier.verify(pair.access_token)
    err = await rpc_error(auth.login(user.email))
    assert (err.code(), err.details()) == (grpc.StatusCode.UNAUTHENTICATED, "this account is deactivated")
    err = await rpc_error(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED

    on = await auth.stub.SetUserActive(auth_pb2.SetUserActiveRequest(user_id=user.id, active=True), metadata=admin_md, timeout=5)
    assert on.active
    await auth.login(user.email)
    await auth.stub.DeleteUser(auth_pb2.DeleteUserRequest(user_id=user.id), metadata=admin_md, timeout=5)
    err = await rpc_error(auth.stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id), metadata=admin_md, timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(auth.login(user.email))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_platform_admin_grants_platform_roles(auth):
    user, pair = await auth.signed_up()
    root = await auth.login(auth.platform_admin())
    ml = await auth.stub.SetUserRole(
        auth_pb2.SetUserRoleRequest(user_id=user.id, role=common_pb2.ROLE_ML_ENGINEER), metadata=md(root.access_token), timeout=5
    )
    assert ml.role == common_pb2.ROLE_ML_ENGINEER
    fresh = await auth.login(user.email)
    assert (await auth.verifier.verify(fresh.access_token)).role == "ml_engineer"
    # platform_admin sees any organization's user
    got = await auth.stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id), metadata=md(root.access_token), timeout=5)
    assert got.organization_id == user.organization_id


async def test_api_keys(auth):
    user, pair = await auth.signed_up()
    key = await auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(name="LIS integration"), metadata=md(pair.access_token), timeout=5)
    assert key.secret.startswith("hv_") and len(key.secret) > 40 and key.secret.startswith(key.prefix)
    listed = await auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=md(pair.access_token), timeout=5)
    assert [(k.id, k.name, k.secret) for k in listed.keys] == [(key.id, "LIS integration", "")]
    assert not listed.keys[0].HasField("last_used_at")

    token = await auth.stub.ExchangeApiKey(auth_pb2.ExchangeApiKeyRequest(api_key=key.secret), timeout=5)
    principal = await auth.verifier.verify(token.access_token)
    assert (principal.user_id, principal.organization_id, principal.role) == (user.id, user.organization_id, "org_admin")
    listed = await auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=md(pair.access_token), timeout=5)
    assert listed.keys[0].HasField("last_used_at")

    other, other_pair = await auth.signed_up()
    err = await rpc_error(auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=key.id), metadata=md(other_pair.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    await auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=key.id), metadata=md(pair.access_token), timeout=5)
    err = await rpc_error(auth.stub.ExchangeApiKey(auth_pb2.ExchangeApiKeyRequest(api_key=key.secret), timeout=5))
    assert (err.code(), err.details()) == (grpc.StatusCode.UNAUTHENTICATED, "API key revoked")
    err = await rpc_error(auth.stub.ExchangeApiKey(auth_pb2.ExchangeApiKeyRequest(api_key="hv_wrong"), timeout=5))
    assert (err.code(), err.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
    err = await rpc_error(auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(name=" "), metadata=md(pair.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_nul_character_is_invalid_not_internal(auth):
    """schemathesis sent a NUL in an API key's name: PostgreSQL text cannot hold it, the INSERT
    failed, the caller saw INTERNAL (a 502). Names and addresses with one are INVALID_ARGUMENT:
    refused at the server's door (hemovision_grpc_server.text_fields) for gRPC callers, and by
    auth's own validation for in-process callers (the CLI)."""
    _, pair = await auth.signed_up()
    err = await rpc_error(auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(name="LIS\x00key"),
                                                 metadata=md(pair.access_token), timeout=5))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                           "name contains a NUL character (U+0000), which text cannot hold")
    err = await rpc_error(auth.stub.Register(auth_pb2.RegisterRequest(
        email=f"n-{uuid.uuid4().hex[:8]}@lab.example", password=PASSWORD, organization_name="Lab\x00"), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = await rpc_error(auth.stub.InviteUser(auth_pb2.InviteUserRequest(
        email="a\x00b@lab.example", role=common_pb2.ROLE_LAB_USER), metadata=md(pair.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(InvalidArgument, match="NUL"):
        one_line("LIS\x00key")
    with pytest.raises(InvalidArgument, match="NUL"):
        normalize_email("a\x00b@lab.example")


async def test_on_behalf_of(auth):
    user, _ = await auth.signed_up()
    req = dict(service_id=SERVICE_ID, service_secret=SERVICE_SECRET, user_id=user.id, purpose="batch 1234")
    token = await auth.stub.IssueOnBehalfOfToken(auth_pb2.IssueOnBehalfOfTokenRequest(**req), timeout=5)
    assert token.expires_in == 300
    principal = await auth.verifier.verify(token.access_token)
    assert principal.acting_service == SERVICE_ID and principal.user_id == user.id
    assert principal.organization_id == user.organization_id

    for bad in ({"service_secret": "nope"}, {"service_id": "intruder"}):
        err = await rpc_error(auth.stub.IssueOnBehalfOfToken(auth_pb2.IssueOnBehalfOfTokenRequest(**{**req, **bad}), timeout=5))
        assert (err.code(), err.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid service credentials")
    err = await rpc_error(auth.stub.IssueOnBehalfOfToken(auth_pb2.IssueOnBehalfOfTokenRequest(**{**req, "user_id": str(uuid.uuid4())}), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(auth.stub.IssueOnBehalfOfToken(auth_pb2.IssueOnBehalfOfTokenRequest(**{**req, "purpose": ""}), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    # an on-behalf-of token cannot mint credentials or change the password
    err = await rpc_error(auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(name="x"), metadata=md(token.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_create_admin_cli(migrated_url, monkeypatch, capsys):
    monkeypatch.setenv("HV_AUTH_DATABASE_URL", migrated_url)
    monkeypatch.setenv("HV_AUTH_ARGON2_MEMORY_KIB", "1024")
    addr = f"cli-{uuid.uuid4().hex[:6]}@hemovision.example"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert auth_main(["create-admin", "--email", addr, "--password-stdin"]) == 0
    assert "created platform_admin" in capsys.readouterr().out
    assert auth_main(["create-admin", "--email", addr, "--password", PASSWORD]) == 0
    assert "already a platform_admin" in capsys.readouterr().out
    assert auth_main(["create-admin", "--email", "bad", "--password", PASSWORD]) == 1
    assert "not a valid e-mail" in capsys.readouterr().err
