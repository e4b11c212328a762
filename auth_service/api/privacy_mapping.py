"""The user's export (auth's part) to protobuf."""

from __future__ import annotations

from auth_service.api.mapping import user_message
from auth_service.domain.privacy import SessionRecord
from auth_service.use_cases.privacy import MyData
from common.rpc.audit_api import event_message
from common.rpc.proto_time import timestamp
from protogen.loyalty.auth.v1 import auth_pb2


def session_record(session: SessionRecord) -> auth_pb2.SessionRecord:
    return auth_pb2.SessionRecord(
        session_id=session.session_id,
        created_at=timestamp(session.created_at),
        expires_at=timestamp(session.expires_at),
        revoked_at=timestamp(session.revoked_at),
    )


def my_data_message(data: MyData) -> auth_pb2.MyData:
    return auth_pb2.MyData(
        account=user_message(data.account),
        sessions=[session_record(s) for s in data.sessions],
        audit_events=[event_message(e) for e in data.audit_events],
    )
