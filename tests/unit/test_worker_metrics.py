"""The supervisor's /metrics: counts of every worker summed, gauges kept per worker."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from common.processes.supervisor_metrics import WorkersCollector, worker_address

WORKER_0 = """# HELP rpc_requests_total gRPC calls served
# TYPE rpc_requests_total counter
rpc_requests_total{method="/a",code="OK"} 3.0
rpc_requests_total{method="/b",code="OK"} 1.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 100.0
"""
WORKER_1 = """# HELP rpc_requests_total gRPC calls served
# TYPE rpc_requests_total counter
rpc_requests_total{method="/a",code="OK"} 4.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 200.0
"""


class Canned(WorkersCollector):
    def __init__(self, texts: dict[str, str]) -> None:
        super().__init__(list(texts))
        self._texts = texts

    def _read(self, address: str) -> str:
        return self._texts[address]


def exposition(texts: dict[str, str]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Canned(texts))
    return generate_latest(registry).decode()


def test_counts_are_summed_over_the_workers_with_their_own_labels() -> None:
    text = exposition({"w0": WORKER_0, "w1": WORKER_1})
    assert 'rpc_requests_total{code="OK",method="/a"} 7.0' in text
    assert 'rpc_requests_total{code="OK",method="/b"} 1.0' in text


def test_each_workers_gauges_keep_a_worker_label() -> None:
    text = exposition({"w0": WORKER_0, "w1": WORKER_1})
    assert 'process_resident_memory_bytes{worker="0"} 100.0' in text
    assert 'process_resident_memory_bytes{worker="1"} 200.0' in text


def test_a_silent_worker_leaves_the_others_counted() -> None:
    text = exposition({"w0": WORKER_0, "w1": ""})
    assert 'rpc_requests_total{code="OK",method="/a"} 3.0' in text
    assert 'worker="1"' not in text


def test_worker_k_serves_on_the_service_port_plus_100_times_k_plus_1() -> None:
    assert worker_address("127.0.0.1:9102", 0) == "127.0.0.1:9202"
    assert worker_address("127.0.0.1:9102", 1) == "127.0.0.1:9302"
