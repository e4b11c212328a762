"""The user's export (loyalty's part) to protobuf."""

from __future__ import annotations

from common.rpc.proto_time import timestamp
from loyalty_service.api import mapping
from loyalty_service.domain.privacy import MyReferral, MyReward
from loyalty_service.use_cases.privacy import MyData
from protogen.loyalty.promo.v1 import promo_pb2


def my_referral(value: MyReferral) -> promo_pb2.MyReferral:
    return promo_pb2.MyReferral(
        role=value.role,
        code=value.code,
        status=value.status,
        created_at=timestamp(value.created_at),
        purchase_id=value.purchase_id,
    )


def my_reward(value: MyReward) -> promo_pb2.MyReward:
    return promo_pb2.MyReward(
        outcome=value.outcome, code=value.code, created_at=timestamp(value.created_at)
    )


def my_data_message(data: MyData) -> promo_pb2.MyData:
    return promo_pb2.MyData(
        user_id=data.user_id,
        purchases=[mapping.purchase(p) for p in data.purchases],
        referral_code=data.referral_code,
        referrals=[my_referral(r) for r in data.referrals],
        rewards=[my_reward(r) for r in data.rewards],
        rejections=[mapping.rejection(r) for r in data.rejections],
    )
