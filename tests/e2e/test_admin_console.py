"""The admin console in headless Chromium (Debian's), driven by Playwright, against the running
system: auth, loyalty and the gateway started as processes."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from bench.ports import free_port
from tests.e2e.processes import run, start, stop, wait_serving
from tests.fixtures.auth import PASSWORD, unique_email

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Set to a folder (docs/screenshots) to refresh the README's screenshots.
SCREENSHOTS = os.environ.get("CONSOLE_SCREENSHOTS", "")


@pytest.fixture(scope="module")
def system() -> Iterator[dict[str, str]]:
    yield from running_system({})


def running_system(extra_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Auth, loyalty and the gateway as processes, and an admin to sign in with."""
    env = {
        **os.environ,
        "AUTH_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "LOYALTY_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "GATEWAY_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        **extra_env,
    }
    for module in ("auth_service", "loyalty_service"):
        run([sys.executable, "-m", module, "migrate"], env)
    processes = [start(m, env) for m in ("auth_service", "loyalty_service", "gateway")]
    try:
        wait_serving(env["AUTH_GRPC_ADDR"], processes[0])
        wait_serving(env["LOYALTY_GRPC_ADDR"], processes[1])
        base = f"http://{env['GATEWAY_HTTP_ADDR']}"
        _wait_http(f"{base}/healthz")
        admin = unique_email("console-admin")
        run(
            [sys.executable, "-m", "auth_service", "create-admin", "--email", admin],
            {**env, "AUTH_ADMIN_PASSWORD": PASSWORD},
        )
        yield {**env, "BASE": base, "ADMIN": admin}
    finally:
        for process in processes:
            stop(process)


def _wait_http(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        import time

        time.sleep(0.1)
    raise AssertionError(f"{url} never answered 200")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        await chromium.close()


async def _user(base: str) -> dict[str, str]:
    """A user made through the HTTP API, as an app would."""
    email = unique_email("console-user")
    async with httpx.AsyncClient(base_url=base) as http:
        user = (
            await http.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
        ).json()
        tokens = (
            await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        ).json()
    return {"id": user["userId"], "email": email, "token": tokens["accessToken"]}


async def _signed_in(browser: Browser, system: dict[str, str], width: int = 1280) -> Page:
    page = await browser.new_page(viewport={"width": width, "height": 900}, accept_downloads=True)
    await page.goto(f"{system['BASE']}/admin")
    await page.fill("#sign-in [name=email]", system["ADMIN"])
    await page.fill("#sign-in [name=password]", PASSWORD)
    await page.click("#sign-in button")
    await expect(page.locator("#campaigns-view")).to_be_visible()  # the console opens on them
    return page


async def _codes_page(page: Page) -> None:
    await page.click("#nav >> text=Promo codes")
    await expect(page.locator("#codes-view")).to_be_visible()


def _msg(selector: str) -> str:
    """The message shown next to a form or control."""
    return f"{selector} output.msg"


async def _shot(page: Page, name: str) -> None:
    if SCREENSHOTS:  # Playwright makes the folder
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


async def test_a_non_admin_is_refused(browser: Browser, system: dict[str, str]) -> None:
    user = await _user(system["BASE"])
    page = await browser.new_page()
    await page.goto(f"{system['BASE']}/admin")
    await page.fill("#sign-in [name=email]", user["email"])
    await page.fill("#sign-in [name=password]", PASSWORD)
    await page.click("#sign-in button")
    await expect(page.locator(_msg("#sign-in"))).to_have_text(
        "This account is not an administrator."
    )
    await expect(page.locator("#campaigns-view")).to_be_hidden()
    await page.close()


async def test_sign_in_create_a_code_and_generate_a_batch(
    browser: Browser, system: dict[str, str], tmp_path: Path
) -> None:
    page = await _signed_in(browser, system)
    await _codes_page(page)
    code = f"WEB{uuid.uuid4().hex[:8].upper()}"
    form = page.locator("#create-code")
    await form.locator("[name=code]").fill(code)
    await form.locator("[name=kind]").select_option("percentOff")
    await form.locator("[name=value]").fill("15")
    await form.locator("[name=maxUses]").fill("5")
    await form.locator("[name=tariffIds]").fill("yearly")
    await form.locator("button[type=submit]").click()
    await expect(page.locator(_msg("#create-code"))).to_have_text(f"Created {code}.")
    await page.fill("#code-search [name=query]", code)
    await page.click("#code-search button")
    row = page.locator("#codes-table tbody tr", has_text=code)
    await expect(row).to_contain_text("15% off")
    await expect(row).to_contain_text("ACTIVE")
    await form.locator("[name=code]").fill("")
    await form.locator("[name=count]").fill("20")
    prefix = f"B{uuid.uuid4().hex[:4].upper()}-"
    await form.locator("[name=prefix]").fill(prefix)
    async with page.expect_download() as download_info:
        await page.click("#generate")
    download = await download_info.value
    target = tmp_path / "batch.csv"
    await download.save_as(target)
    rows = target.read_text().splitlines()
    assert rows[0] == "code" and len(rows) == 21
    assert all(r.startswith(prefix) for r in rows[1:])
    await expect(page.locator(_msg("#create-code"))).to_have_text("Generated 20 codes.")
    await page.fill("#code-search [name=query]", "")
    await page.click("#code-search button")
    await _shot(page, "codes")
    await page.close()


async def test_a_codes_page_counts_the_rejected_attempt(
    browser: Browser, system: dict[str, str]
) -> None:
    page = await _signed_in(browser, system)
    await _codes_page(page)
    code = f"WEB{uuid.uuid4().hex[:8].upper()}"
    form = page.locator("#create-code")
    await form.locator("[name=code]").fill(code)
    await form.locator("[name=value]").fill("10")
    await form.locator("[name=tariffIds]").fill("yearly")
    await form.locator("button[type=submit]").click()
    await expect(page.locator(_msg("#create-code"))).to_have_text(f"Created {code}.")
    user = await _user(system["BASE"])
    async with httpx.AsyncClient(base_url=system["BASE"]) as http:
        refused = await http.post(
            "/v1/promocodes/apply",
            json={"code": code, "tariffId": "monthly"},
            headers={"Authorization": f"Bearer {user['token']}"},
        )
    assert refused.status_code == 400
    await page.goto(f"{system['BASE']}/admin#code/{code}")
    bar = page.locator('#rejections-chart .bar[data-reason="PROMO_CODE_NOT_FOR_TARIFF"]')
    await expect(bar.locator(".count")).to_have_text("1")
    recent = page.locator("#rejections-table tbody tr")
    await expect(recent).to_have_count(1)
    await expect(recent.first).to_contain_text(user["email"])  # the person, by email
    await expect(recent.first.locator(".person")).to_have_attribute("title", user["id"])
    await expect(recent.first).to_contain_text("monthly")
    await _shot(page, "code-report")
    await page.close()


async def test_block_a_user(browser: Browser, system: dict[str, str]) -> None:
    user = await _user(system["BASE"])
    page = await _signed_in(browser, system)
    await page.click("text=Users")
    await page.fill("#user-find [name=who]", user["id"])
    await page.click("#user-find button[type=submit]")
    row = page.locator(f'#users-table tr[data-user-id="{user["id"]}"]')
    await expect(row.locator(".status")).to_have_text("ACTIVE")
    await row.locator("button", has_text="Block").click()
    await expect(row.locator(".status")).to_have_text("BLOCKED")
    await expect(row.locator("output.msg")).to_have_text("User blocked.")
    async with httpx.AsyncClient(base_url=system["BASE"]) as http:
        login = await http.post(
            "/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
    assert login.status_code == 403
    await _shot(page, "users")
    await page.close()


async def test_bulk_apply_shows_partial_success(browser: Browser, system: dict[str, str]) -> None:
    users = [await _user(system["BASE"]) for _ in range(3)]
    page = await _signed_in(browser, system)
    await _codes_page(page)
    code = f"WEB{uuid.uuid4().hex[:8].upper()}"
    form = page.locator("#create-code")
    await form.locator("[name=code]").fill(code)
    await form.locator("[name=value]").fill("50")
    await form.locator("[name=maxUses]").fill("2")
    await form.locator("button[type=submit]").click()
    await expect(page.locator(_msg("#create-code"))).to_have_text(f"Created {code}.")
    await page.click("text=Bulk apply")
    await page.fill("#bulk-apply [name=code]", code)
    await page.fill("#bulk-apply [name=userIds]", "\n".join(u["id"] for u in users))
    await page.click("#bulk-apply button[type=submit]")
    await expect(page.locator("#apply-summary")).to_have_text(
        "Partial success: applied for 2 of 3 users."
    )
    last = page.locator(f'#apply-table tr[data-user-id="{users[2]["id"]}"]')
    await expect(last).to_contain_text("failed: PROMO_CODE_EXHAUSTED")
    await _shot(page, "bulk-apply")
    await page.close()


async def test_the_console_fits_a_phone(browser: Browser, system: dict[str, str]) -> None:
    page = await _signed_in(browser, system, width=390)
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    await page.click("#sign-out")
    await expect(page.locator("#sign-in-view")).to_be_visible()
    await _shot(page, "phone-sign-in")
    await page.close()


async def test_console_and_api_page_work_under_their_content_security_policy(
    browser: Browser, system: dict[str, str]
) -> None:
    page = await browser.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    await page.goto(f"{system['BASE']}/admin")
    await page.fill("#sign-in [name=email]", system["ADMIN"])
    await page.fill("#sign-in [name=password]", PASSWORD)
    await page.click("#sign-in button")
    await expect(page.locator("#campaigns-view")).to_be_visible()
    await page.goto(f"{system['BASE']}/docs")
    await expect(page.locator("#routes details").first).to_be_visible()
    answer = await page.request.get(f"{system['BASE']}/admin")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert refused == []
    await page.close()


async def test_the_audit_page_shows_both_trails(browser: Browser, system: dict[str, str]) -> None:
    user = await _user(system["BASE"])
    page = await _signed_in(browser, system)
    await page.click("text=Users")
    await page.fill("#user-find [name=who]", user["id"])
    await page.click("#user-find button[type=submit]")
    await expect(page.locator(f'#users-table tr[data-user-id="{user["id"]}"]')).to_have_count(1)

    await page.click("text=Audit")
    form = page.locator("#audit-filter")
    await form.locator("[name=target]").fill(user["id"])
    await form.locator("button[type=submit]").click()
    # GetUser, and (the page showing people by email) the LookupUsers that named them.
    rows = page.locator("#audit-table tbody tr", has_text="GetUser")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator(".status")).to_have_text("OK")
    await expect(rows.first).to_contain_text(user["email"])  # the target, by email

    # Loyalty's trail holds the console's own listing of codes, under the same admin.
    await _codes_page(page)
    await page.click("text=Audit")
    await form.locator("[name=target]").fill("")
    await form.locator("[name=trail]").select_option("/v1/admin/promo-audit")
    await form.locator("button[type=submit]").click()
    await expect(
        page.locator("#audit-table tbody tr", has_text="ListPromoCodes").first
    ).to_be_visible()
    await _shot(page, "audit")
    await page.close()
