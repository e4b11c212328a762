"""The operator's side of auth: create-admin's answers and the signing key at start."""

from __future__ import annotations

import os
import subprocess
import sys

from auth_service.keys import new_private_pem
from tests.e2e.processes import ROOT
from tests.fixtures.auth import AuthTestServer, unique_email


def auth_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auth_service", *args],
        env=dict(os.environ) | env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_create_admin_with_a_weak_password_says_one_line(auth_server: AuthTestServer) -> None:
    for password in ("short", "password1"):
        done = auth_command(
            "create-admin", "--email", unique_email("admin"), AUTH_ADMIN_PASSWORD=password
        )
        assert done.returncode != 0
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "password" in lines[0], done.stderr


def test_outside_development_auth_refuses_to_start_without_a_key(
    auth_server: AuthTestServer,
) -> None:
    done = auth_command("serve", ENVIRONMENT="production", AUTH_GRPC_ADDR="127.0.0.1:1")
    assert done.returncode != 0
    assert "AUTH_JWT_PRIVATE_KEY" in done.stderr and "Traceback" not in done.stderr


def test_outside_development_a_configured_key_is_used(auth_server: AuthTestServer) -> None:
    done = auth_command(
        "create-admin",
        "--email",
        unique_email("admin"),
        ENVIRONMENT="production",
        AUTH_JWT_PRIVATE_KEY=new_private_pem(),
        AUTH_ADMIN_PASSWORD="a long operator passphrase",
    )
    assert done.returncode == 0, done.stderr
    assert "development_signing_key" not in done.stderr


def test_in_development_the_generated_key_is_announced_once(auth_server: AuthTestServer) -> None:
    done = auth_command(
        "create-admin",
        "--email",
        unique_email("admin"),
        AUTH_ADMIN_PASSWORD="a long operator passphrase",
        AUTH_JWT_PRIVATE_KEY="",
        AUTH_JWT_PRIVATE_KEY_FILE="",
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "development_signing_key" in line]
    assert len(warnings) == 1 and '"level": "warning"' in warnings[0], done.stderr
