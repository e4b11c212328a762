"""UserEvent messages for the outbox."""

from __future__ import annotations

import uuid

from auth_service.domain import User
from auth_service.use_cases.ports import Outbox
from common.rpc.proto_time import now_timestamp
from common.rpc.user_status_proto import to_proto
from protogen.loyalty.events.v1 import events_pb2

REGISTERED = "user.registered"
STATUS_CHANGED = "user.status_changed"


def user_event(user: User) -> events_pb2.UserEvent:
    return events_pb2.UserEvent(
        event_id=str(uuid.uuid4()),
        user_id=user.user_id,
        status=to_proto(user.status),
        version=user.version,
        occurred_at=now_timestamp(),
    )


async def record(outbox: Outbox, user: User, routing_key: str) -> None:
    event = user_event(user)
    await outbox.add(event.event_id, user.user_id, routing_key, event.SerializeToString())
    await outbox.notify()
