"""The Dockerfile's recipe, without an engine: the image's source list builds a wheel that,
laid out as the runtime stage lays it out, runs every command the compose file runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
STAGES = re.split(r"(?m)^FROM ", DOCKERFILE)[1:]


def _copies(stage: str) -> list[list[str]]:
    return [line.split()[1:] for line in stage.splitlines() if line.startswith("COPY ")]


def test_two_stages_a_slim_runtime_and_a_non_root_user() -> None:
    assert len(STAGES) == 2
    assert all(stage.startswith("python:3.11-slim") for stage in STAGES)
    runtime = STAGES[1]
    assert "--from=build" in runtime and "useradd" in runtime
    users = re.findall(r"(?m)^USER (\S+)", runtime)
    assert users and users[-1] not in ("root", "0")
    assert "constraints.txt" in STAGES[0] and "-c constraints.txt" in STAGES[0]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """site-packages as the image holds it, built only from what the Dockerfile copies."""
    source, site = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("site")
    for *sources, _ in _copies(STAGES[0]):  # each into its own name, as the Dockerfile does
        for what in sources:
            copy = shutil.copytree if (ROOT / what).is_dir() else shutil.copy
            copy(ROOT / what, source / what)
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", ".", "-w", "dist"],
        cwd=source,
        check=True,
        timeout=120,
    )
    wheel = next((source / "dist").glob("*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)
    [(what, where)] = [c for c in _copies(STAGES[1]) if not c[0].startswith("--from")]
    assert where.endswith("/site-packages/migrations"), where
    shutil.copytree(ROOT / what, site / "migrations")
    yield site


def _in_image(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Run from elsewhere, with the image's site-packages first: nothing comes from the repo.
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *args], cwd=site.parent, env=env, capture_output=True, text=True
    )


def test_the_image_holds_every_package_the_commands_import(image: Path) -> None:
    code = (
        "import auth_service.app, loyalty_service.app, gateway.app, common.processes.healthcheck; "
    )
    code += "print(auth_service.app.__file__)"
    done = _in_image(image, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(image))


@pytest.mark.parametrize("module", ["auth_service", "loyalty_service"])
def test_migrations_run_from_the_image_layout(image: Path, module: str) -> None:
    done = _in_image(image, "-m", module, "migrate")
    assert done.returncode == 0, done.stderr
    assert "migration(s) applied" in done.stdout


def test_the_container_health_check_fails_when_nothing_serves(image: Path) -> None:
    closed = free_port()
    for kind, target in (("grpc", f"127.0.0.1:{closed}"), ("http", f"http://127.0.0.1:{closed}/")):
        assert _in_image(image, "-m", "common.processes.healthcheck", kind, target).returncode == 1
