"""AuthService and UserAdminService over gRPC."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from auth_service.api.mapping import admin_settable_status, token_pair_message, user_message
from auth_service.api.privacy_mapping import my_data_message
from auth_service.api.service_accounts import ServiceAccountAdmin, service_token_message
from auth_service.domain import User
from auth_service.domain.reasons import DOMAIN
from auth_service.token_issuer import TokenIssuer
from auth_service.use_cases.accounts import Accounts
from auth_service.use_cases.privacy import Privacy
from auth_service.use_cases.service_accounts import ServiceAccounts
from auth_service.use_cases.sessions import Sessions
from common.access.access_tokens import Principal, TokenVerifier, bearer_token
from common.access.client_address import PEER_ONLY, AddressRule, voucher
from common.access.people import person_of
from common.rpc import call_metadata, pagination
from common.rpc.audit_api import AuditReader, list_audit_events
from common.rpc.page_tokens import PageTokens, Position
from common.rpc.validation import page_size, uuid_field
from protogen.loyalty.audit.v1 import audit_pb2
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc

Context = Any


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        accounts: Accounts,
        sessions: Sessions,
        verifier: TokenVerifier,
        issuer: TokenIssuer,
        service_accounts: ServiceAccounts,
        addresses: AddressRule = PEER_ONLY,
        *,
        privacy: Privacy,
    ) -> None:
        self._privacy = privacy
        self._accounts = accounts
        self._service_accounts = service_accounts
        self._sessions = sessions
        self._verifier = verifier
        self._issuer = issuer
        self._addresses = addresses

    async def _client(self, context: Context) -> str:
        """The caller's address, as common/access/client_address.py believes it: the
        gateway's signed word, a scoped service's (x-client-address-authorization), or the
        peer (its x-forwarded-for only from a trusted peer)."""
        metadata = call_metadata.of(context)
        vouching = await voucher(metadata, self._verifier.verify_identity)
        return self._addresses.client_address(metadata, context.peer(), vouching)

    async def Register(self, request: auth_pb2.RegisterRequest, context: Context) -> auth_pb2.User:
        address = await self._client(context)
        user = await self._accounts.register(request.email, request.password, address)
        return user_message(user)

    async def Login(self, request: auth_pb2.LoginRequest, context: Context) -> auth_pb2.TokenPair:
        address = await self._client(context)
        pair = await self._sessions.login(request.email, request.password, address)
        return token_pair_message(pair)

    async def Refresh(
        self, request: auth_pb2.RefreshRequest, context: Context
    ) -> auth_pb2.TokenPair:
        return token_pair_message(await self._sessions.refresh(request.refresh_token))

    async def Logout(self, request: auth_pb2.LogoutRequest, context: Context) -> empty_pb2.Empty:
        await self._sessions.logout(request.refresh_token)
        return empty_pb2.Empty()

    async def DeleteAccount(
        self, request: auth_pb2.DeleteAccountRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = await self._verifier.verify(bearer_token(call_metadata.of(context)))
        await self._accounts.delete_account(principal.user_id)
        return empty_pb2.Empty()

    async def GetJwks(self, request: auth_pb2.GetJwksRequest, context: Context) -> auth_pb2.Jwks:
        jwks = await self._issuer.jwks()
        return auth_pb2.Jwks(keys=[auth_pb2.Jwk(**key) for key in jwks["keys"]])

    async def ExportMyData(
        self, request: auth_pb2.ExportMyDataRequest, context: Context
    ) -> auth_pb2.MyData:
        principal = await self._verifier.verify(bearer_token(call_metadata.of(context)))
        return my_data_message(await self._privacy.my_data(person_of(principal, DOMAIN)))

    async def IssueServiceToken(
        self, request: auth_pb2.IssueServiceTokenRequest, context: Context
    ) -> auth_pb2.ServiceToken:
        token = await self._service_accounts.issue_token(
            request.client_id, request.client_secret, await self._client(context)
        )
        return service_token_message(token)


class UserAdminServicer(ServiceAccountAdmin, auth_pb2_grpc.UserAdminServiceServicer):
    def __init__(
        self,
        accounts: Accounts,
        service_accounts: ServiceAccounts,
        verifier: TokenVerifier,
        page_tokens: PageTokens,
        *,
        audit: AuditReader,
    ) -> None:
        self._audit = audit
        self._accounts = accounts
        self._service_accounts = service_accounts
        self._verifier = verifier
        self._tokens = page_tokens

    async def _admin(self, context: Context) -> Principal:
        return await self._verifier.verify_admin(bearer_token(call_metadata.of(context)))

    async def SetUserStatus(
        self, request: auth_pb2.SetUserStatusRequest, context: Context
    ) -> auth_pb2.User:
        await self._admin(context)
        user_id = uuid_field(request.user_id, "user_id")
        status = admin_settable_status(request.status)
        return user_message(await self._accounts.set_status(user_id, status))

    async def GetUser(self, request: auth_pb2.GetUserRequest, context: Context) -> auth_pb2.User:
        await self._admin(context)
        return user_message(await self._accounts.get_user(uuid_field(request.user_id, "user_id")))

    async def ListUsers(
        self, request: auth_pb2.ListUsersRequest, context: Context
    ) -> auth_pb2.ListUsersResponse:
        await self._admin(context)
        size = page_size(request.page_size)
        after = pagination.time_cursor(self._tokens, "users", request.page_token)
        found = await self._accounts.list_users(after, size + 1, request.email)
        token = pagination.next_token(self._tokens, "users", found, size, _position)
        return auth_pb2.ListUsersResponse(
            users=[user_message(u) for u in found[:size]], next_page_token=token
        )

    async def LookupUsers(
        self, request: auth_pb2.LookupUsersRequest, context: Context
    ) -> auth_pb2.LookupUsersResponse:
        await self._admin(context)
        ids = [uuid_field(i, "user_ids") for i in request.user_ids]
        emails = await self._accounts.emails(ids)
        return auth_pb2.LookupUsersResponse(
            users=[auth_pb2.UserEmail(user_id=i, email=e) for i, e in emails.items()]
        )

    async def DeleteUser(
        self, request: auth_pb2.DeleteUserRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._admin(context)
        await self._accounts.delete_user(uuid_field(request.user_id, "user_id"))
        return empty_pb2.Empty()

    async def ListAuditEvents(
        self, request: audit_pb2.ListAuditEventsRequest, context: Context
    ) -> audit_pb2.ListAuditEventsResponse:
        await self._admin(context)
        return await list_audit_events(request, self._audit, self._tokens)


def _position(user: User) -> Position:
    """Where a page of users (by creation, then id) stopped."""
    assert user.created_at is not None  # every stored user has one
    return pagination.time_position(user.created_at, user.user_id)
