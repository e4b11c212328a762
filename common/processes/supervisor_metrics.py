"""One /metrics for a service that runs several workers: the supervisor serves, on the
service's metrics port, what its workers count, summed (counters and histograms: the calls of
the service), and what each worker measures of itself with a `worker` label (gauges: memory,
CPU, backlog).

Each worker keeps its own registry and serves it on a port of its own (the service's metrics
port + 100·(index + 1)); the supervisor reads those at scrape time. Chosen over prometheus-
client's multiprocess mode, which shares files between the workers but cannot carry the
per-process collectors (memory, CPU, garbage collection) this project's memory targets are
measured with, and needs a directory cleaned at every start."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

SCRAPE_TIMEOUT_S = 2.0


SUMMED = ("counter", "histogram", "summary")


class WorkersCollector(Collector):
    """Every worker's families merged by name: counts summed, gauges labelled by worker."""

    def __init__(self, addresses: list[str]) -> None:
        self._addresses = addresses

    def _read(self, address: str) -> str:
        try:
            with urllib.request.urlopen(
                f"http://{address}/metrics", timeout=SCRAPE_TIMEOUT_S
            ) as reply:
                text: str = reply.read().decode()
                return text
        except OSError:
            return ""  # a worker starting or stopping: its samples are missing this once

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for index, address in enumerate(self._addresses):
            for family in text_string_to_metric_families(self._read(address)):
                families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                into = values.setdefault(family.name, {})
                for sample in family.samples:
                    _add(into, family.type, sample.name, sample.labels, sample.value, index)
        for name, family in families.items():
            for (sample_name, labels), value in values[name].items():
                family.add_sample(sample_name, dict(labels), value)
            yield family


def _add(
    into: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    kind: str,
    name: str,
    labels: dict[str, str],
    value: float,
    worker: int,
) -> None:
    if kind not in SUMMED:
        into[(name, tuple(sorted({**labels, "worker": str(worker)}.items())))] = value
        return
    key = (name, tuple(labels.items()))
    if name.endswith("_created"):  # when the series began: the earliest worker's
        into[key] = min(into.get(key, value), value)
    else:
        into[key] = into.get(key, 0.0) + value


def worker_address(address: str, index: int) -> str:
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + 100 * (index + 1)}"


def serve(address: str, count: int) -> None:
    """The service's /metrics on `address`, gathered from its `count` workers."""
    if not address:
        return
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkersCollector([worker_address(address, i) for i in range(count)]))
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host, registry=registry)
