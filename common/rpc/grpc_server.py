"""gRPC server wiring shared by both services: errors, request ids, logs, health, reflection,
and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import inspect
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextvars import ContextVar
from typing import Any, NoReturn

import grpc
import sentry_sdk
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from common.access.caller import caller_id
from common.errors import InvalidArgument, ServiceError
from common.processes import supervisor as workers
from common.rpc import call_metadata, deadlines
from common.rpc.admission import AdmissionSettings, ConcurrencyLimit, LatencyFloor
from common.rpc.audit import CallAudit, outcome_of
from common.rpc.grpc_errors import overloaded_status, plain_status, status_for
from common.rpc.loop_lag import LagSettings, LoopLagGate
from common.rpc.request_rules import check_request, undecodable_field
from common.storage.db_errors import is_data_exception
from common.telemetry.logs import get_logger, request_id_var
from common.telemetry.metrics import RpcMetrics

log = get_logger("rpc")

REQUEST_ID_HEADER = "x-request-id"
Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamHandler = Callable[[Any, grpc.aio.ServicerContext], Any]
# Why the call was refused (its ErrorInfo reason), for the call's log line.
refusal_reason: ContextVar[str] = ContextVar("refusal_reason", default="")
# Never refused for load: a balancer's probe must see the server as it is, and reflection is
# how a person looks at a busy server.
UNLIMITED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in call_metadata.of(context):
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


class Undecodable:
    """Request bytes protobuf refused (a string that is not UTF-8): INVALID_ARGUMENT, not the
    INTERNAL grpcio answers to a deserializer that raises."""

    def __init__(self, raw: bytes, message_type: Any) -> None:
        descriptor = getattr(message_type, "DESCRIPTOR", None)
        self.field = (undecodable_field(raw, descriptor) if descriptor else None) or "request"


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception:
            return Undecodable(raw, getattr(deserializer, "__self__", None))

    return parse


def _checked(request: Any) -> None:
    """The one rule for every request's fields (common.rpc.request_rules), before any handler."""
    if isinstance(request, Undecodable):
        raise InvalidArgument.of(request.field, "must be valid UTF-8 protobuf")
    if isinstance(request, Message):  # a generic handler may take raw bytes
        check_request(request)


async def _abort(error: Exception, context: grpc.aio.ServicerContext) -> NoReturn:
    if isinstance(error, ServiceError):
        refusal_reason.set(error.reason)
    status = status_for(error)
    if status is None:
        sentry_sdk.capture_exception(error)
        log.exception("rpc_failed")
        status = plain_status(grpc.StatusCode.INTERNAL, "internal error")
    elif status.code == grpc.StatusCode.UNAVAILABLE:
        log.warning("dependency_unavailable", error=repr(error))
    elif is_data_exception(error):
        # The request's rules should have caught it: a gap worth seeing in the logs.
        log.warning("data_exception", error=repr(error))
    await context.abort_with_status(status)
    raise AssertionError("abort_with_status returns only by raising")


async def _run(handler: Handler, request: Any, context: grpc.aio.ServicerContext) -> Any:
    try:
        if deadlines.passed():  # the caller stopped waiting while the call queued: not run
            raise deadlines.DeadlinePassed
        _checked(request)
        return await handler(request, context)
    except grpc.aio.AbortError:
        raise
    except Exception as error:
        await _abort(error, context)


def _begin(context: grpc.aio.ServicerContext) -> float:
    request_id_var.set(_request_id(context))
    refusal_reason.set("")
    context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id_var.get()),))
    return time.perf_counter()


class CallRecord:
    """A method's metric series, found once (a label lookup costs as much as a small call),
    and the share of its successful calls that get a log line (every failure gets one)."""

    def __init__(self, method: str, metrics: RpcMetrics, success_log_sample: float) -> None:
        self.method = method
        self._metrics = metrics
        self._latency = metrics.latency.labels(method)
        self._ok = metrics.requests.labels(method, grpc.StatusCode.OK.name)
        # Refusals are the calls that must cost least: their series are found once too.
        self._overloaded = metrics.overload_refusals.labels(method)
        self._exhausted = metrics.requests.labels(method, grpc.StatusCode.RESOURCE_EXHAUSTED.name)
        self._sample = success_log_sample
        self.floor = LatencyFloor()

    def finish(self, context: grpc.aio.ServicerContext, started: float) -> float:
        code = context.code()
        elapsed = time.perf_counter() - started
        self._latency.observe(elapsed)
        if code is None or code == grpc.StatusCode.OK:
            self._ok.inc()
            if self._sample >= 1.0 or random.random() < self._sample:
                log.info("rpc", method=self.method, code="OK", duration_ms=round(elapsed * 1000, 2))
            return elapsed
        name = getattr(code, "name", "UNKNOWN")
        self._metrics.requests.labels(self.method, name).inc()
        reason = {"reason": refusal_reason.get()} if refusal_reason.get() else {}
        log.info(
            "rpc", method=self.method, code=name, duration_ms=round(elapsed * 1000, 2), **reason
        )
        return elapsed

    def refused(self) -> None:
        self._overloaded.inc()
        self._exhausted.inc()


def _audited(method: str, handler: Handler, audit: CallAudit) -> Handler:
    """The handler, with its call recorded in the audit trail whatever its outcome (the
    request check runs here first so that refused input is recorded too)."""

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        caller_id.set("")
        try:
            _checked(request)
            result = await handler(request, context)
        except grpc.aio.AbortError:
            code = getattr(context.code(), "name", "UNKNOWN")
            await audit.record_failure(method, request, context, code)
            raise
        except Exception as error:
            await audit.record_failure(method, request, context, outcome_of(error))
            raise
        await audit.record(method, request, context, grpc.StatusCode.OK.name)
        return result

    return call


def _wrap(
    record: CallRecord,
    handler: Handler,
    audit: CallAudit | None = None,
    admission: ConcurrencyLimit | None = None,
    gate: LoopLagGate | None = None,
) -> Handler:
    if audit is not None and audit.covers(record.method):
        handler = _audited(record.method, handler, audit)

    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = _begin(context)
        deadlines.start(context.time_remaining(), call_metadata.of(context))
        try:
            return await _run(handler, request, context)
        finally:
            record.finish(context, started)

    if admission is None:
        return wrapped
    floor = record.floor

    async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
        # First of all, so that a refusal costs next to nothing: no log line (a metric counts
        # them), no request id, nothing parsed beyond what gRPC did.
        if not ((gate is None or gate.admits()) and admission.try_enter()):
            record.refused()
            await context.abort_with_status(
                overloaded_status(admission.settings.retry_after, admission.settings.domain)
            )
        started = time.monotonic()
        try:
            return await wrapped(request, context)
        finally:
            now = time.monotonic()
            admission.leave(floor.add(now - started), now)

    return admitted


def _audited_stream(method: str, handler: StreamHandler, audit: CallAudit) -> StreamHandler:
    """A streaming handler (an async generator: the audited ones are) recorded like a unary
    one; its items are already sent when it ends, so even a success is recorded quietly."""

    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        caller_id.set("")
        outcome = grpc.StatusCode.OK.name
        try:
            async for item in handler(request, context):
                yield item
        except grpc.aio.AbortError:
            outcome = getattr(context.code(), "name", "UNKNOWN")
            raise
        except Exception as error:
            outcome = outcome_of(error)
            raise
        finally:
            await audit.record_failure(method, request, context, outcome)

    return call


def _wrap_stream(
    record: CallRecord, handler: StreamHandler, audit: CallAudit | None = None
) -> StreamHandler:
    """The same for a server-streaming call: an error mid-stream ends it with its status. The
    handler is an async generator, or a coroutine writing with context.write (health Watch)."""
    if audit is not None and audit.covers(record.method):
        handler = _audited_stream(record.method, handler, audit)

    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started = _begin(context)
        try:
            _checked(request)
            result = handler(request, context)
            if inspect.isawaitable(result):
                await result
                return
            async for item in result:
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(error, context)
        finally:
            record.finish(context, started)

    return wrapped


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Maps errors to statuses in one place and writes one log line per unary call; records
    the calls `audit` covers in the audit trail; refuses calls past the admission limit.
    A method's wrapped handler is built once and kept while the handler beneath it stays the
    same object (it does, unless a later interceptor builds one per call)."""

    def __init__(
        self,
        metrics: RpcMetrics,
        audit: CallAudit | None = None,
        admission: AdmissionSettings | None = None,
        success_log_sample: float = 1.0,
    ) -> None:
        self._metrics = metrics
        self._audit = audit
        self._admission = (
            ConcurrencyLimit(admission) if admission is not None and admission.enabled else None
        )
        # Shedding on the loop's lag is off unless configured: at its first settings it refused
        # calls of a lightly loaded server after a pause (make drills), and at 1.5 of capacity
        # it did not reach the queue that forms before Python (docs/performance-notes.md).
        lag = admission.loop_lag_target if admission is not None else 0.0
        self._gate = (
            LoopLagGate(LagSettings(target=lag))
            if self._admission is not None and lag > 0
            else None
        )
        self._sample = success_log_sample
        self._built: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._records: dict[str, CallRecord] = {}

    @property
    def admission(self) -> ConcurrencyLimit | None:
        return self._admission

    def close(self) -> None:
        if self._gate is not None:
            self._gate.stop()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        call_metadata.keep(handler_call_details.invocation_metadata)
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        built = self._built.get(method)
        if built is not None and built[0] is handler:
            return built[1]
        wrapped = self._wrapped(method, handler)
        if wrapped is not None:
            self._built[method] = (handler, wrapped)
        return wrapped

    def _wrapped(self, method: str, handler: Any) -> Any:
        if handler is None:  # no such method: nothing is kept for a name a caller made up
            return None
        # One record a method, kept when its handler is wrapped anew (tracing's interceptors
        # build one per call): its metric series and latency floor outlive the wrapper.
        record = self._records.get(method)
        if record is None:
            record = self._records[method] = CallRecord(method, self._metrics, self._sample)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(record, handler.unary_stream, self._audit),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is None:
            return handler
        limited = not method.startswith(UNLIMITED_PREFIXES)
        return grpc.unary_unary_rpc_method_handler(
            _wrap(
                record,
                handler.unary_unary,
                self._audit,
                self._admission if limited else None,
                self._gate,
            ),
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


class GrpcServer:
    """A grpc.aio server with health and reflection for the given services."""

    def __init__(
        self,
        address: str,
        service_names: Iterable[str],
        metrics: RpcMetrics,
        interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
        audit: CallAudit | None = None,
        admission: AdmissionSettings | None = None,
        success_log_sample: float = 1.0,
        also: Iterable[str] = (),
    ) -> None:
        self.address = address
        # More addresses to listen on: the edge's unix socket (common.processes.edge).
        self.also = list(also)
        self.service_names = list(service_names)
        self.interceptor = ServiceInterceptor(metrics, audit, admission, success_log_sample)
        self.server = grpc.aio.server(
            interceptors=[self.interceptor, *interceptors],
            # Off for a server alone, so a taken port fails loudly; on for the workers of one
            # service, whose supervisor checked the port first (common.processes.supervisor).
            options=[
                ("grpc.so_reuseport", 1 if workers.shares_port() else 0),
                *(admission.server_options() if admission is not None else ()),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port = 0
        self._stopping = False

    async def start(self) -> int:
        self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise SystemExit(f"cannot listen on {self.address}")
        for address in self.also:
            if self.server.add_insecure_port(address) == 0:
                raise SystemExit(f"cannot listen on {address}")
        await self.server.start()
        await self.set_serving(True)
        return self.port

    async def set_serving(self, serving: bool) -> None:
        # Once stopping, nothing (say, the broker coming back during the drain) may announce
        # SERVING again and draw new calls to a server that is going away.
        if serving and self._stopping:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        self._stopping = True
        await self.set_serving(False)
        await self.server.stop(grace)
        self.interceptor.close()


async def run_until_signal(
    server: GrpcServer,
    loops: Iterable[Callable[[], Coroutine[Any, Any, None]]],
    grace: float,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve and run background loops until SIGTERM/SIGINT, then stop them in order."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    tasks = [asyncio.create_task(make()) for make in loops]
    waiter = asyncio.create_task(stopping.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception():
            log.error("background_loop_died", error=repr(task.exception()))
    log.info("shutting_down", grace=grace)
    await server.stop(grace)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if on_stop is not None:
        await on_stop()
    waiter.cancel()
