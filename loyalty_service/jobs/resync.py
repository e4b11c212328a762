"""`python -m loyalty_service resync`: rebuild the users mirror from auth's own list.

For when the events queue was lost or purged: it pages through UserAdminService.ListUsers as
an admin and applies each user's (status, version) with the same newer-version rule as the
consumer, so running it at any time, even beside the consumer, is safe."""

from __future__ import annotations

from dataclasses import dataclass

from common.config import ConfigError
from common.rpc.channels import method_names, open_channel
from common.rpc.user_status_proto import from_proto
from common.storage.db import Pool
from loyalty_service.config import LoyaltySettings
from loyalty_service.store.users import apply_user_status
from protogen.loyalty.auth.v1 import auth_pb2, auth_pb2_grpc

# ListUsers is a read, safe to send twice; Login is not retried (it opens a session).
RETRIED = method_names(["/loyalty.auth.v1.UserAdminService/ListUsers"])


@dataclass
class ResyncReport:
    seen: int = 0
    applied: int = 0


async def _admin_token(auth: auth_pb2_grpc.AuthServiceStub, settings: LoyaltySettings) -> str:
    if not settings.loyalty_resync_email or not settings.loyalty_resync_password:
        raise ConfigError(
            "LOYALTY_RESYNC_EMAIL and LOYALTY_RESYNC_PASSWORD must name an admin account"
        )
    pair = await auth.Login(
        auth_pb2.LoginRequest(
            email=settings.loyalty_resync_email, password=settings.loyalty_resync_password
        )
    )
    token: str = pair.access_token
    return token


async def resync(settings: LoyaltySettings, pool: Pool) -> ResyncReport:
    report = ResyncReport()
    async with open_channel(settings.auth_grpc_addr, RETRIED) as channel:
        token = await _admin_token(auth_pb2_grpc.AuthServiceStub(channel), settings)
        admin = auth_pb2_grpc.UserAdminServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        page_token = ""
        while True:
            page = await admin.ListUsers(
                auth_pb2.ListUsersRequest(page_size=1000, page_token=page_token),
                metadata=metadata,
            )
            for user in page.users:
                status = from_proto(user.status)
                report.seen += 1
                if status is not None:
                    report.applied += await apply_user_status(
                        pool, user.user_id, status, user.version
                    )
            page_token = page.next_page_token
            if not page_token:
                return report
