"""One /metrics for a service that runs several workers: the supervisor serves, on the
service's metrics port, every worker's metrics with a `worker` label added.

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


class WorkersCollector(Collector):
    """Every worker's families, merged by name, each sample labelled with its worker."""

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
        merged: dict[str, Metric] = {}
        for index, address in enumerate(self._addresses):
            for family in text_string_to_metric_families(self._read(address)):
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    into.add_sample(
                        sample.name, {**sample.labels, "worker": str(index)}, sample.value
                    )
        yield from merged.values()


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
