"""Service accounts over gRPC: UserAdminService's admin methods (mixed into its servicer) and
the mapping of accounts and tokens to protobuf."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from auth_service.domain.service_accounts import ServiceAccount
from auth_service.use_cases.service_accounts import ServiceAccounts, ServiceToken
from common.access.access_tokens import Principal
from common.rpc import pagination
from common.rpc.page_tokens import PageTokens, Position
from common.rpc.proto_time import timestamp
from common.rpc.validation import page_size, uuid_field
from protogen.loyalty.auth.v1 import auth_pb2

Context = Any
_LIST = "service_accounts"


def service_account_message(account: ServiceAccount) -> auth_pb2.ServiceAccount:
    return auth_pb2.ServiceAccount(
        id=account.account_id,
        name=account.name,
        scopes=list(account.scopes),
        created_at=timestamp(account.created_at),
        client_id=account.account_id,
    )


def service_token_message(token: ServiceToken) -> auth_pb2.ServiceToken:
    return auth_pb2.ServiceToken(
        access_token=token.access_token,
        token_type="Bearer",
        expires_in=token.expires_in,
        scope=token.scope,
    )


def _position(account: ServiceAccount) -> Position:
    assert account.created_at is not None  # every stored account has one
    return pagination.time_position(account.created_at, account.account_id)


class ServiceAccountAdmin:
    """The service-account methods of UserAdminService (admin only)."""

    _service_accounts: ServiceAccounts
    _tokens: PageTokens

    async def _admin(self, context: Context) -> Principal:
        raise NotImplementedError  # the servicer this is mixed into checks the role

    async def CreateServiceAccount(
        self, request: auth_pb2.CreateServiceAccountRequest, context: Context
    ) -> auth_pb2.CreateServiceAccountResponse:
        await self._admin(context)
        created = await self._service_accounts.create(request.name, list(request.scopes))
        return auth_pb2.CreateServiceAccountResponse(
            service_account=service_account_message(created.account),
            client_id=created.account.account_id,
            client_secret=created.client_secret,
        )

    async def ListServiceAccounts(
        self, request: auth_pb2.ListServiceAccountsRequest, context: Context
    ) -> auth_pb2.ListServiceAccountsResponse:
        await self._admin(context)
        size = page_size(request.page_size)
        after = pagination.time_cursor(self._tokens, _LIST, request.page_token)
        found = await self._service_accounts.list(after, size + 1)
        token = pagination.next_token(self._tokens, _LIST, found, size, _position)
        return auth_pb2.ListServiceAccountsResponse(
            service_accounts=[service_account_message(a) for a in found[:size]],
            next_page_token=token,
        )

    async def RotateServiceAccountSecret(
        self, request: auth_pb2.RotateServiceAccountSecretRequest, context: Context
    ) -> auth_pb2.RotateServiceAccountSecretResponse:
        await self._admin(context)
        secret = await self._service_accounts.rotate_secret(uuid_field(request.id, "id"))
        return auth_pb2.RotateServiceAccountSecretResponse(client_secret=secret)

    async def DeleteServiceAccount(
        self, request: auth_pb2.DeleteServiceAccountRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._admin(context)
        await self._service_accounts.delete(uuid_field(request.id, "id"))
        return empty_pb2.Empty()
