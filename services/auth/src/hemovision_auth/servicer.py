"""AuthServiceServicer: protobuf <-> domain objects (and the request origin from the gateway's
metadata); each RPC calls the AuthService part that owns it (service/)."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from hemovision.auth.v1 import auth_pb2, auth_pb2_grpc
from hemovision_auth.domain import AccessToken, ApiKey, Organization, Origin, Session, TokenPair, User
from hemovision_auth.errors import RETRY_AFTER_METADATA, LockedOut
from hemovision_auth.service import AuthService
from hemovision_contracts import origin_from_metadata, role_from_proto, role_to_proto
from hemovision_tokens import current_principal

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
_PREFIX = f"/{SERVICE_NAME}/"
PUBLIC_METHODS = {
    _PREFIX + name
    for name in (
        "Register",
        "Login",
        "Refresh",
        "GetPublicKeys",
        "AcceptInvitation",
        "VerifyEmail",
        "RequestPasswordReset",
        "ResetPassword",
        "ExchangeApiKey",
        "IssueOnBehalfOfToken",
    )
}


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def user_pb(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=user.id,
        email=user.email,
        organization_id=user.organization_id,
        organization_name=user.organization_name,
        role=role_to_proto(user.role),
        active=user.active,
        email_verified=user.email_verified,
        created_at=_ts(user.created_at),
        locked_until=_ts(user.locked_until),
    )


def _origin(context) -> Origin:  # noqa: ANN001
    client_ip, user_agent = origin_from_metadata(context.invocation_metadata())
    return Origin(client_ip, user_agent)


def _session(s: Session) -> auth_pb2.Session:
    return auth_pb2.Session(
        id=s.id, created_at=_ts(s.created_at), last_used_at=_ts(s.last_used_at), client_ip=s.client_ip,
        user_agent=s.user_agent, current=s.current,
    )


def _pair(pair: TokenPair) -> auth_pb2.TokenPair:
    return auth_pb2.TokenPair(
        access_token=pair.access_token, refresh_token=pair.refresh_token, token_type="bearer", expires_in=pair.expires_in
    )


def _access(token: AccessToken) -> auth_pb2.AccessToken:
    return auth_pb2.AccessToken(access_token=token.access_token, token_type="bearer", expires_in=token.expires_in)


def _api_key(key: ApiKey) -> auth_pb2.ApiKey:
    return auth_pb2.ApiKey(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        secret=key.secret,
        created_at=_ts(key.created_at),
        last_used_at=_ts(key.last_used_at),
        revoked_at=_ts(key.revoked_at),
    )


def _org(org: Organization) -> auth_pb2.Organization:
    return auth_pb2.Organization(id=org.id, name=org.name, user_count=org.user_count, created_at=_ts(org.created_at))


class AuthServiceServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, service: AuthService) -> None:
        self.service = service

    async def Register(self, request, context):
        return user_pb(
            await self.service.organizations.register(
                email=request.email, password=request.password, organization_name=request.organization_name
            )
        )

    async def Login(self, request, context):
        try:
            pair = await self.service.sessions.login(
                email=request.email, password=request.password, origin=_origin(context)
            )
        except LockedOut as exc:
            # kept by the error interceptor's abort: RESOURCE_EXHAUSTED + retry-after (the gateway's Retry-After)
            context.set_trailing_metadata(((RETRY_AFTER_METADATA, str(exc.retry_after_s)),))
            raise
        return _pair(pair)

    async def Refresh(self, request, context):
        return _pair(await self.service.sessions.refresh(refresh_token=request.refresh_token))

    async def Logout(self, request, context):
        await self.service.sessions.logout(
            current_principal(), refresh_token=request.refresh_token, origin=_origin(context)
        )
        return empty_pb2.Empty()

    async def GetPublicKeys(self, request, context):
        keys = await self.service.sessions.public_keys()
        settings = self.service.settings
        return auth_pb2.PublicKeySet(
            keys=[
                auth_pb2.PublicKey(
                    kid=k.kid,
                    algorithm=k.algorithm,
                    public_key_pem=k.public_key_pem,
                    created_at=_ts(k.created_at),
                    current=k.current,
                )
                for k in keys
            ],
            issuer=settings.issuer,
            audience=settings.audience,
            max_age_seconds=settings.public_keys_max_age_s,
        )

    async def RotateSigningKey(self, request, context):
        k = await self.service.sessions.rotate_signing_key(current_principal())
        return auth_pb2.PublicKey(
            kid=k.kid, algorithm=k.algorithm, public_key_pem=k.public_key_pem, created_at=_ts(k.created_at), current=True
        )

    async def GetMe(self, request, context):
        return user_pb(await self.service.users.get_me(current_principal()))

    async def GetUser(self, request, context):
        return user_pb(await self.service.users.get_user(current_principal(), user_id=request.user_id))

    async def ListUsers(self, request, context):
        page = await self.service.users.list_users(
            current_principal(), limit=request.page.limit, cursor=request.page.cursor
        )
        return auth_pb2.ListUsersResponse(users=[user_pb(u) for u in page.items], next_cursor=page.next_cursor)

    async def SetUserRole(self, request, context):
        return user_pb(
            await self.service.users.set_user_role(
                current_principal(), user_id=request.user_id, role=role_from_proto(request.role), origin=_origin(context)
            )
        )

    async def SetUserActive(self, request, context):
        return user_pb(
            await self.service.users.set_user_active(
                current_principal(), user_id=request.user_id, active=request.active, origin=_origin(context)
            )
        )

    async def DeleteUser(self, request, context):
        await self.service.users.delete_user(current_principal(), user_id=request.user_id, origin=_origin(context))
        return empty_pb2.Empty()

    async def ChangePassword(self, request, context):
        await self.service.users.change_password(
            current_principal(),
            current_password=request.current_password,
            new_password=request.new_password,
            origin=_origin(context),
        )
        return empty_pb2.Empty()

    async def InviteUser(self, request, context):
        inv = await self.service.invitations.invite_user(
            current_principal(), email=request.email, role=role_from_proto(request.role), origin=_origin(context)
        )
        return auth_pb2.Invitation(
            id=inv.id, email=inv.email, role=role_to_proto(inv.role), expires_at=_ts(inv.expires_at)
        )

    async def AcceptInvitation(self, request, context):
        return user_pb(
            await self.service.invitations.accept_invitation(
                token=request.token, password=request.password, origin=_origin(context)
            )
        )

    async def RequestEmailVerification(self, request, context):
        await self.service.email_flows.request_email_verification(current_principal())
        return empty_pb2.Empty()

    async def VerifyEmail(self, request, context):
        return user_pb(await self.service.email_flows.verify_email(token=request.token))

    async def RequestPasswordReset(self, request, context):
        await self.service.email_flows.request_password_reset(email=request.email)
        return empty_pb2.Empty()

    async def ResetPassword(self, request, context):
        await self.service.email_flows.reset_password(
            token=request.token, new_password=request.new_password, origin=_origin(context)
        )
        return empty_pb2.Empty()

    async def CreateApiKey(self, request, context):
        return _api_key(
            await self.service.api_keys.create_api_key(current_principal(), name=request.name, origin=_origin(context))
        )

    async def ListApiKeys(self, request, context):
        keys = await self.service.api_keys.list_api_keys(current_principal())
        return auth_pb2.ListApiKeysResponse(keys=[_api_key(k) for k in keys])

    async def RevokeApiKey(self, request, context):
        await self.service.api_keys.revoke_api_key(current_principal(), key_id=request.key_id, origin=_origin(context))
        return empty_pb2.Empty()

    async def ExchangeApiKey(self, request, context):
        return _access(await self.service.api_keys.exchange_api_key(api_key=request.api_key))

    async def IssueOnBehalfOfToken(self, request, context):
        return _access(
            await self.service.sessions.issue_on_behalf_of(
                service_id=request.service_id,
                service_secret=request.service_secret,
                user_id=request.user_id,
                purpose=request.purpose,
            )
        )

    async def ListOrganizations(self, request, context):
        page = await self.service.organizations.list_organizations(
            current_principal(), limit=request.page.limit, cursor=request.page.cursor
        )
        return auth_pb2.ListOrganizationsResponse(
            organizations=[_org(o) for o in page.items], next_cursor=page.next_cursor
        )

    async def ListSessions(self, request, context):
        sessions = await self.service.sessions.list_sessions(current_principal())
        return auth_pb2.ListSessionsResponse(items=[_session(s) for s in sessions])

    async def RevokeSession(self, request, context):
        await self.service.sessions.revoke_session(
            current_principal(), session_id=request.session_id, origin=_origin(context)
        )
        return empty_pb2.Empty()

    async def SignOutEverywhere(self, request, context):
        ended = await self.service.users.sign_out_everywhere(
            current_principal(), user_id=request.user_id, origin=_origin(context)
        )
        return auth_pb2.SignOutEverywhereResponse(sessions_ended=ended)

    async def UnlockUser(self, request, context):
        return user_pb(
            await self.service.users.unlock_user(current_principal(), user_id=request.user_id, origin=_origin(context))
        )
