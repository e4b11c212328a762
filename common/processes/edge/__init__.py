"""The edge: HAProxy (Debian's, in C) in front of loyalty's workers, as `make run` starts it.

Why: a call refused for load by the service itself still costs a third of a served call in
Python (gRPC's own work per call), so past capacity the refusals eat the capacity they were
meant to protect and the queue grows. HAProxy refuses in about 20 µs of CPU. It holds at most
`in_flight` calls at the workers and lets `queued` more wait in its queue (at least one: the
refusal rule reads the queue's length) for at most `queue_timeout_ms`. It answers the rest at
once, and a call that waited that long then, with the services' own overload status
(RESOURCE_EXHAUSTED, ErrorInfo OVERLOADED, RetryInfo) as a trailers-only answer. Health
checks and reflection pass outside the cap, as the services' own limit lets them
(common.rpc.grpc_server): a probe must see the server as it is, even when it is busy.

Each worker listens on a unix socket of its own (`LOYALTY_EDGE_SOCKETS` + index + `.sock`),
so the proxy knows each worker's calls in flight exactly (one server line each), where a TCP
port shared by SO_REUSEPORT would hide which worker a connection reached.

Whose address: the proxy appends its TCP peer's address to `x-forwarded-for`, and the services
believe that header from a unix-socket peer (common.access.trust). Only the edge is one: the
sockets live in a folder only the system's user may enter. A caller's own `x-forwarded-for`
stays to the left of the address the proxy appends, where nothing is believed, so one abuser
cannot spend everyone's guessing budget, nor escape its own.

A replica whose workers all died must not show to the callers of its edge either: the
gateway's balancer still sees the edge up and keeps sending it calls. So the edge sends them
to the other replicas' workers meanwhile (their sockets are `backup` servers, all used at once,
each with a worker's share), and a dead server is skipped as soon as a connection to it fails.

`python -m common.processes.edge` runs it from its environment (the launcher sets it):
`EDGE_ADDR` (where it listens), `EDGE_SOCKETS` (the workers' socket prefix), `EDGE_WORKERS`,
`EDGE_BACKUP_SOCKETS` (the other replicas' prefixes, comma-separated), `EDGE_IN_FLIGHT`
(calls at each worker), `EDGE_QUEUED`, `EDGE_QUEUE_TIMEOUT_MS`. SIGTERM stops it softly:
calls in flight finish, for at most `hard-stop-after` (5 s)."""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from common.processes import supervisor as workers
from common.processes.parent_death import die_with_parent
from common.rpc import deadlines
from common.rpc.grpc_errors import overloaded_status

DETAILS = "grpc-status-details-bin"
RETRY_AFTER_S = 0.1
# The domain of loyalty's own overload answer: to a caller, a refusal is loyalty's, whichever
# part of it made it.
DOMAIN = "promo.loyalty"
REFUSER = "edge"
# Per worker: at two workers, 16 in flight and 16 queued did best in bench.edge_spike.
IN_FLIGHT = 8
QUEUED = 16
# The queue is bounded in time too: a call that waited this long for a worker is refused
# like the calls past the queue. The count alone bounds the wait only while the workers keep
# their pace (16 calls are 12-30 ms at capacity); when they stall (a slow database, a
# checkpoint), the wait would grow with the stall. Below capacity nothing waits: the queue
# only fills when every worker has its share. Why 100 ms and not 20 (which did better in paired
# 1.5x spikes, docs/performance-notes.md): while a replica dies, its edge's calls move to the
# other replica's workers, and at 20 ms `make drills` saw 2 of 2,313 uses refused in that
# moment (HTTP 429); a replica's death must not show, at 100 ms none was. Still so with every
# backup in use (`option allbackups`): 2 of 11 such bursts had refusals at 20 ms.
QUEUE_TIMEOUT_MS = 100
# The refusal as an HTTP/1 answer, in the proxy's folder: HAProxy answers with it when a
# call's `timeout queue` passed (its own 503).
OVERLOAD_FILE = "overload.http"
# Never capped, never queued behind the calls: probes and a person looking at a busy server.
UNCAPPED = "/grpc.health. /grpc.reflection."


def socket_path(prefix: str, worker: int) -> str:
    """Where worker `worker` of a service behind the edge listens (a filesystem path)."""
    return f"{prefix}{worker}.sock"


def listener(prefix: str) -> list[str]:
    """The gRPC address this process listens on for the edge: its worker's socket (worker 0
    when it runs alone); none when the service is not behind an edge (an empty prefix)."""
    if not prefix:
        return []
    worker = workers.current()
    return [f"unix:{socket_path(prefix, worker.index if worker else 0)}"]


def refusal_headers(retry_after_s: float, domain: str) -> dict[str, str]:
    """The gRPC status of a refusal for load as response headers: with no body they end the
    stream, which gRPC reads as a trailers-only answer. Binary metadata is base64, unpadded.
    Its ErrorInfo says the edge refused it (`refused_by`), for the logs and the bench."""
    status = overloaded_status(retry_after_s, domain, refused_by=REFUSER)
    headers = {"grpc-status": str(status.code.value[0]), "grpc-message": status.details}
    for key, value in status.trailing_metadata:
        assert key == DETAILS and isinstance(value, bytes)
        headers[key] = base64.b64encode(value).decode().rstrip("=")
    return headers


def overload_answer(retry_after_s: float = RETRY_AFTER_S, domain: str = DOMAIN) -> str:
    """The refusal for load as the raw HTTP/1 answer HAProxy's `errorfile` takes (it speaks it
    as HTTP/2 to the caller): status 200, no body, so gRPC reads a trailers-only answer."""
    lines = [
        "HTTP/1.1 200 OK",
        "content-type: application/grpc",
        "content-length: 0",
        *(f"{k}: {v}" for k, v in refusal_headers(retry_after_s, domain).items()),
    ]
    return "\r\n".join([*lines, "", ""])


# A server found dead (a connection refused, or a failed check every half second) is skipped
# at once and until a check finds it back: a call is then redispatched to another. Every
# server is watched: the proxy must know when none is up (UNAVAILABLE, below).
WATCHED = "check inter 500ms fall 1 rise 1 observe layer4 error-limit 1 on-error mark-down"
NO_WORKER = "no worker of loyalty is up"


def _servers(
    backs: Sequence[str], backups: Sequence[str], settings: Callable[[str], str]
) -> list[str]:
    """Each server of `backs`, then each of `backups` as a backup, with `settings(name)`."""
    return [
        *(f"  server s{i} {back} proto h2 {settings(f's{i}')}" for i, back in enumerate(backs)),
        *(f"  server b{i} {b} proto h2 backup {settings(f'b{i}')}" for i, b in enumerate(backups)),
    ]


def _unavailable_when_none_is_up(details: str) -> list[str]:
    # The proxy's own 503 is the overload answer (OVERLOAD_FILE), but a call refused because
    # no server is up at all was not refused for load: that is UNAVAILABLE, as a client
    # reaching a dead service directly would see. Only the edge's own answer (its `details`)
    # is rewritten.
    mine = f"{{ nbsrv(capped) eq 0 }} {{ res.hdr({DETAILS}) -m str {details} }}"
    return [
        f'  http-after-response set-header grpc-message "{NO_WORKER}" if {mine}',
        f"  http-after-response set-header grpc-status 14 if {mine}",
        f"  http-after-response del-header {DETAILS} if {mine}",
    ]


def config(
    front: str,
    backs: Sequence[str],
    in_flight: int,
    folder: str,
    queued: int = 0,
    forward_for: bool = False,
    backups: Sequence[str] = (),
    queue_timeout_ms: int = QUEUE_TIMEOUT_MS,
) -> str:
    """A frontend on `front` (h2c, as gRPC clients speak it) forwarding to the servers `backs`
    (HOST:PORT, or `unix@PATH`) at most `in_flight` calls at once in all (shared evenly);
    past those, up to `queued` calls (at least one) wait in the proxy's queue, each for at
    most `queue_timeout_ms`, and the rest are refused at once. `in_flight` 0 refuses every
    call. When every server of `backs` is dead, the calls go to `backups` (another replica's
    workers), each held to the same share. `folder` holds the overload answer (`write`). One
    thread: what one core's worth costs, and the services keep the other."""
    headers = refusal_headers(RETRY_AFTER_S, DOMAIN)
    refusal = " ".join(f'hdr {k} "{v}"' for k, v in headers.items())
    uncapped = f"{{ path_beg {UNCAPPED} }}"
    full = "TRUE" if in_flight == 0 else f"{{ queue(capped) ge {max(queued, 1)} }}"
    each = max(in_flight // len(backs), 1)
    # Without it HAProxy sends everything to the first backup alone: a dead replica's calls
    # then squeeze into one worker's share, queue, and are refused (`make drills` saw it).
    spread_over_backups = ["  option allbackups"] if backups else []
    return "\n".join(
        [
            "global",
            "  nbthread 1",
            "  hard-stop-after 5s",
            "defaults",
            "  mode http",
            *(["  option forwardfor"] if forward_for else []),
            "  timeout connect 1s",
            # Idle limits only: a call's deadline is its client's. Long enough for the slowest
            # call the gateway makes (a CSV import: GATEWAY_IMPORT_TIMEOUT_SECONDS, 300 s).
            "  timeout client 10m",
            "  timeout server 10m",
            f"  timeout queue {queue_timeout_ms}ms",
            # A worker that died meanwhile: the call goes to another, not to an error.
            "  retries 2",
            "  option redispatch",
            "frontend grpc",
            f"  bind {front} proto h2",
            f"  http-request return status 200 {refusal} if {full} !{uncapped}",
            # When the proxy took the call (a caller's own value replaced): the service takes
            # the call's wait in the queue off its deadline (common.rpc.deadlines).
            f"  http-request set-header {deadlines.RECEIVED_HEADER} %[date(0,ms)]",
            f"  use_backend uncapped if {uncapped}",
            "  default_backend capped",
            "backend capped",
            "  balance leastconn",
            *spread_over_backups,
            f"  errorfile 503 {Path(folder) / OVERLOAD_FILE}",
            *_unavailable_when_none_is_up(headers[DETAILS]),
            *_servers(backs, backups, lambda _: f"maxconn {each} {WATCHED}"),
            "backend uncapped",
            "  balance roundrobin",
            *spread_over_backups,
            # The same servers, each following its capped twin's state: a socket is checked once.
            *_servers(backs, backups, lambda name: f"track capped/{name}"),
            "",
        ]
    )


def write(folder: Path, text: str) -> Path:
    """The proxy's files in `folder`: its configuration `text` (made with this `folder`) and
    the overload answer; the configuration's path."""
    (folder / OVERLOAD_FILE).write_text(overload_answer())
    path = folder / "haproxy.cfg"
    path.write_text(text)
    return path


# Loyalty's settings the edge's placement changes (loyalty_service.config).
SERVICE_ADDRESS = "LOYALTY_GRPC_ADDR"
SERVICE_SOCKETS = "LOYALTY_EDGE_SOCKETS"
SERVICE_WORKERS = "LOYALTY_WORKERS"


def environments(
    env: dict[str, str], public: str, direct: str, sockets: str, backups: Sequence[str] = ()
) -> tuple[dict[str, str], dict[str, str]]:
    """Loyalty's and its edge's environments (from `env`) when the edge takes loyalty's
    `public` address: loyalty listens on `direct` and on its workers' sockets (the prefix
    `sockets`), the edge on `public`, forwarding to those sockets and, while they are all
    dead, to the `backups` (other replicas' socket prefixes). One place for both `make run`
    (common.processes.launcher) and the benchmarks (bench.system)."""
    loyalty = {**env, SERVICE_ADDRESS: direct, SERVICE_SOCKETS: sockets}
    edge = {
        **env,
        "EDGE_ADDR": public,
        "EDGE_SOCKETS": sockets,
        "EDGE_WORKERS": env.get(SERVICE_WORKERS, str(workers.DEFAULT_COUNT)),
        "EDGE_BACKUP_SOCKETS": ",".join(backups),
    }
    return loyalty, edge


def executable() -> str:
    """Debian installs it in /usr/sbin, which a user's PATH may lack (make system-deps)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if found is None:
        raise SystemExit("haproxy is not installed: make system-deps installs it")
    return found


@dataclass(frozen=True)
class EdgeSettings:
    address: str
    sockets: str
    workers: int
    in_flight: int = IN_FLIGHT  # at each worker
    queued: int = QUEUED
    queue_timeout_ms: int = QUEUE_TIMEOUT_MS
    # The other replicas' socket prefixes (each with as many workers): where the calls go
    # while every worker of this replica is dead, as a replica's death must not show.
    backups: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str]) -> EdgeSettings:
        try:
            settings = cls(
                env["EDGE_ADDR"],
                env["EDGE_SOCKETS"],
                int(env.get("EDGE_WORKERS", "1")),
                int(env.get("EDGE_IN_FLIGHT", str(IN_FLIGHT))),
                int(env.get("EDGE_QUEUED", str(QUEUED))),
                int(env.get("EDGE_QUEUE_TIMEOUT_MS", str(QUEUE_TIMEOUT_MS))),
                tuple(p for p in env.get("EDGE_BACKUP_SOCKETS", "").split(",") if p),
            )
        except (KeyError, ValueError) as error:
            raise SystemExit(f"edge: bad or missing setting: {error}") from None
        longest = round(deadlines.LONGEST_WAIT_S * 1000)
        if not 0 < settings.queue_timeout_ms <= longest:
            # The service believes a stamp for at most that long (common.rpc.deadlines).
            raise SystemExit(
                f"edge: EDGE_QUEUE_TIMEOUT_MS={settings.queue_timeout_ms} must be 1..{longest}"
            )
        return settings

    def _sockets(self, prefix: str) -> list[str]:
        return [f"unix@{socket_path(prefix, i)}" for i in range(self.workers)]

    def config(self, folder: str) -> str:
        backups = [s for prefix in self.backups for s in self._sockets(prefix)]
        return config(
            self.address,
            self._sockets(self.sockets),
            self.in_flight * self.workers,
            folder,
            self.queued,
            forward_for=True,
            backups=backups,
            queue_timeout_ms=self.queue_timeout_ms,
        )


def _child_setup() -> None:
    # The proxy must not outlive its wrapper (a SIGKILLed launcher's children get SIGTERM).
    die_with_parent(signal.SIGTERM)


def run(settings: EdgeSettings) -> int:
    """Runs HAProxy until it exits; SIGTERM or SIGINT asks it to stop softly (SIGUSR1), and
    a stop that was asked for is a clean exit, however the proxy ended its idle connections."""
    with tempfile.TemporaryDirectory(prefix="edge-") as folder:
        path = write(Path(folder), settings.config(folder))
        # -db: in the foreground, one process; its exit is this process's exit.
        proxy = subprocess.Popen(
            [executable(), "-db", "-q", "-f", str(path)], preexec_fn=_child_setup
        )
        asked = False

        def soft_stop(_signum: int, _frame: FrameType | None) -> None:
            nonlocal asked
            asked = True
            proxy.send_signal(signal.SIGUSR1)

        signal.signal(signal.SIGTERM, soft_stop)
        signal.signal(signal.SIGINT, soft_stop)
        code = proxy.wait()
        return 0 if asked else code
