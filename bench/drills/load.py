"""Traffic through the gateway while a drill runs: uses of a code with request ids, and a
probe that keeps presenting a revoked token."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class User:
    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Call:
    started: float
    status: int  # HTTP status; 0 when the gateway itself could not be reached


@dataclass
class Traffic:
    """Uses the code with a fresh request id each time, from several workers; a use that got
    no purchase stays pending until `settle` retries it with the same request id."""

    http: httpx.AsyncClient
    users: list[User]
    code: str
    calls: list[Call] = field(default_factory=list)
    purchases: dict[str, str] = field(default_factory=dict)  # request id -> purchase id
    pending: dict[str, User] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def use(self, user: User, request_id: str) -> int:
        body = {"code": self.code, "tariffId": "monthly", "requestId": request_id}
        try:
            answer = await self.http.post("/v1/promocodes/use", json=body, headers=user.headers)
        except httpx.HTTPError:
            return 0
        if answer.status_code == 200:
            self.purchases[request_id] = answer.json()["purchaseId"]
            self.pending.pop(request_id, None)
        else:
            self.pending[request_id] = user
        return answer.status_code

    async def _worker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            n = next(self._ids)
            started = time.monotonic()
            status = await self.use(self.users[n % len(self.users)], f"use-{n}")
            self.calls.append(Call(started, status))
            await asyncio.sleep(0.01)

    async def run(self, stop: asyncio.Event, workers: int = 6) -> None:
        await asyncio.gather(*(self._worker(stop) for _ in range(workers)))

    async def settle(self, seconds: float = 60) -> None:
        """Retries every pending use with its own request id until each has its purchase."""
        deadline = time.monotonic() + seconds
        while self.pending and time.monotonic() < deadline:
            for request_id, user in list(self.pending.items()):
                await self.use(user, request_id)
            await asyncio.sleep(0.2)


@dataclass
class RevokedProbe:
    """Presents a logged-out admin's token to loyalty and to auth, again and again."""

    http: httpx.AsyncClient
    revoked: User
    accepted: int = 0
    refused: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        paths = ["/v1/tariffs", f"/v1/admin/users/{self.revoked.user_id}"]
        for path in itertools.cycle(paths):
            if stop.is_set():
                return
            try:
                answer = await self.http.get(path, headers=self.revoked.headers)
            except httpx.HTTPError:
                continue
            if answer.status_code == 200:
                self.accepted += 1
            else:
                self.refused += 1
            await asyncio.sleep(0.05)
