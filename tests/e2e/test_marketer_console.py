"""The marketer's story in the console (Debian's Chromium, strict CSP): a campaign made with
its budget in roubles, codes generated on its page, its budget bar and daily chart, pause with
confirmation and undo, a code deactivated and brought back, a user found by email; no row twice
after signing in; a session outliving its access token."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.test_admin_campaigns import _with_strict_csp
from tests.e2e.test_admin_console import _msg, _shot, _signed_in, _user, browser, running_system
from tests.fixtures.auth import PASSWORD

__all__ = ["browser"]


@pytest.fixture(scope="module")
def system() -> Iterator[dict[str, str]]:
    yield from running_system({})


async def _strict(browser: Browser, system: dict[str, str]) -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    # The console's own files (the API's answers need no policy).
    await page.route(lambda url: urlsplit(url).path.startswith("/admin"), _with_strict_csp)
    await page.goto(f"{system['BASE']}/admin")
    await page.fill("#sign-in [name=email]", system["ADMIN"])
    await page.fill("#sign-in [name=password]", PASSWORD)
    await page.click("#sign-in button")
    await expect(page.locator("#campaigns-view")).to_be_visible()
    return page, violations


async def _use(base: str, code: str) -> int:
    user = await _user(base)
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.post(
            "/v1/promocodes/use",
            json={"code": code, "tariffId": "monthly", "requestId": "marketer-1"},
            headers={"Authorization": f"Bearer {user['token']}"},
        )
    return response.status_code


async def test_the_marketers_story(browser: Browser, system: dict[str, str]) -> None:
    page, violations = await _strict(browser, system)
    name = f"Black Friday {uuid.uuid4().hex[:6]}"
    await page.click("#new-campaign-link")
    form = page.locator("#new-campaign")
    await form.locator("[name=name]").fill(name)
    await form.locator("[name=value]").fill("30")
    await form.locator("[name=duration]").select_option("DURATION_REPEATING")
    await form.locator("[name=durationPeriods]").fill("3")
    await form.locator("[name=perUserLimit]").fill("0")
    await form.locator("[name=budget]").fill("oops")
    await form.locator("button[type=submit]").click()
    await expect(form.locator("output.msg")).to_have_text(
        "Budget: enter roubles, e.g. 500 000 or 1234.50"
    )
    await form.locator("[name=budget]").fill("500 000")
    await _shot(page, "new-campaign")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#campaign-view")).to_be_visible()
    await expect(page.locator("#campaign-title")).to_have_text(name)
    await expect(page.locator(_msg("#add-codes"))).to_contain_text(f"Created {name}.")
    bar = page.locator("#campaign-budget-bar")
    await expect(bar).to_have_attribute("aria-valuemax", "50000000")  # kopecks, exactly
    await expect(page.locator("#campaign-budget-text")).to_contain_text("0.00 ₽ of 500 000.00 ₽")

    # Add codes: a form of its own; one named code, then a generated batch of single-use ones.
    add = page.locator("#add-codes")
    named = f"BF{uuid.uuid4().hex[:8].upper()}"
    await add.locator("[name=code]").fill(named)
    await add.locator("button[type=submit]").click()
    await expect(add.locator("output.msg")).to_contain_text("Added 1 code.")
    await expect(add.locator("[name=code]")).to_have_value("")  # nothing carried over
    await add.locator("input[value=generate]").check()
    await add.locator("[name=count]").fill("30")
    prefix = f"BF{uuid.uuid4().hex[:4].upper()}-"
    await add.locator("[name=prefix]").fill(prefix)
    await add.locator("[name=maxUsesPerCode]").fill("1")
    await _shot(page, "add-codes")
    await add.locator("button[type=submit]").click()
    await expect(add.locator("output.msg")).to_contain_text("Added 30 codes.")
    codes = page.locator("#campaign-codes tbody tr")
    await expect(codes).to_have_count(25)  # a page
    await page.click("#campaign-codes-more")
    await expect(codes).to_have_count(31)
    await expect(page.locator("#campaign-settings")).to_contain_text("31")

    # Two uses: the budget bar and the chart for today's range.
    first = (await codes.nth(0).get_attribute("data-code")) or ""
    second = (await codes.nth(1).get_attribute("data-code")) or ""
    assert [await _use(system["BASE"], c) for c in (first, second)] == [200, 200]
    today = datetime.now(UTC).date()
    rng = page.locator("#campaign-range")
    await rng.locator("[name=from]").fill((today - timedelta(days=6)).isoformat())
    await rng.locator("[name=to]").fill(today.isoformat())
    await rng.locator("button[type=submit]").click()
    day = page.locator(f'#campaign-chart g.day[data-date="{today.isoformat()}"]')
    await expect(day.locator("rect.uses")).to_have_attribute("data-value", "2")
    await expect(page.locator("#campaign-totals")).to_contain_text("2uses")
    await page.reload()  # the budget bar reads the campaign again
    # A positive amount, waited for: "not 0" also held while the reloaded page had no value yet.
    await expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^[1-9][0-9]*$"))
    spent = int(await bar.get_attribute("aria-valuenow") or 0)
    assert 0 < spent < 50_000_000
    await _shot(page, "campaign")

    # Pause: a confirmation first (cancel changes nothing), then Undo resumes.
    await page.click("#campaign-pause")
    dialog = page.locator("#confirm")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("stop working until you resume it")
    await _shot(page, "confirm")
    await page.click("#confirm-no")
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#campaign-settings")).to_contain_text("ACTIVE")
    await page.click("#campaign-pause")
    await page.click("#confirm-yes")
    actions_msg = page.locator("#campaign-actions + output.msg")
    await expect(actions_msg).to_contain_text(f"Paused {name}.")
    await expect(page.locator("#campaign-resume")).to_be_visible()
    third = (await codes.nth(2).get_attribute("data-code")) or ""
    assert await _use(system["BASE"], third) == 400  # paused: refused
    await actions_msg.locator("button", has_text="Undo").click()
    await expect(actions_msg).to_have_text(f"Resumed {name}.")
    await expect(page.locator("#campaign-pause")).to_be_visible()
    assert await _use(system["BASE"], third) == 200

    # Deactivate a code (confirmed), then Undo reactivates it.
    target = (await codes.nth(5).get_attribute("data-code")) or ""
    row = page.locator(f'#campaign-codes tr[data-code="{target}"]')
    await row.locator("button", has_text="Deactivate").click()
    await expect(dialog).to_contain_text(f"Deactivate {target}?")
    await page.click("#confirm-yes")
    await expect(row.locator(".status")).to_have_text("DEACTIVATED")
    await expect(row.locator("output.msg")).to_contain_text(f"Deactivated {target}.")
    await row.locator("button", has_text="Undo").click()
    await expect(row.locator(".status")).to_have_text("ACTIVE")
    await expect(row.locator("output.msg")).to_have_text(f"Reactivated {target}.")

    # End is final, and says so.
    await page.click("#campaign-end")
    await expect(dialog).to_contain_text("cannot be undone")
    await page.click("#confirm-no")

    # The history shows who did it, by email.
    history = page.locator("#campaign-audit tbody tr")
    await page.reload()
    await expect(history.filter(has_text="PAUSED").first).to_contain_text(system["ADMIN"])
    await expect(history.filter(has_text="CODE_REACTIVATED").first).to_be_visible()

    # The list: searched, with status, codes count and budget used.
    await page.click("#nav >> text=Campaigns")
    await page.fill("#campaign-search [name=query]", name)
    await page.click("#campaign-search button[type=submit]")
    listed = page.locator("#campaigns-table tbody tr")
    await expect(listed).to_have_count(1)
    await expect(listed.locator(".status")).to_have_text("ACTIVE")
    await expect(listed.locator(".codes")).to_have_text("31")
    await expect(listed.locator(".budget")).to_contain_text("of 500 000.00 ₽")
    await page.locator("#campaign-search [name=status]").select_option("CAMPAIGN_STATUS_PAUSED")
    await page.click("#campaign-search button[type=submit]")
    await expect(listed).to_have_count(1)
    await expect(listed).to_contain_text("No campaign found.")
    await page.fill("#campaign-search [name=query]", "")
    await page.locator("#campaign-search [name=status]").select_option("")
    await page.click("#campaign-search button[type=submit]")
    await expect(listed.first).to_be_visible()
    await _shot(page, "campaigns")
    assert violations == []
    await page.unroute_all(behavior="ignoreErrors")
    await page.close()


async def test_a_user_found_by_email(browser: Browser, system: dict[str, str]) -> None:
    user = await _user(system["BASE"])
    page = await _signed_in(browser, system)
    await page.click("#nav >> text=Users")
    await page.fill("#user-find [name=who]", user["email"][:-12].upper())  # a prefix, any case
    await page.click("#user-find button[type=submit]")
    rows = page.locator("#users-table tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(user["email"])
    await expect(page.locator(_msg("#user-find"))).to_contain_text("Found 1 users")
    await _shot(page, "user-search")
    await page.fill("#user-find [name=who]", f"nobody-{uuid.uuid4().hex}@")
    await page.click("#user-find button[type=submit]")
    await expect(page.locator(_msg("#user-find"))).to_contain_text("No user's email starts with")
    await page.close()


async def test_no_row_twice_after_signing_in(browser: Browser, system: dict[str, str]) -> None:
    admin_token = await _admin_token(system)
    name = f"Once {uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=system["BASE"]) as http:
        made = await http.post(
            "/v1/admin/campaigns",
            json={"name": name, "rules": {"percentOff": 10, "allUsers": True}},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert made.status_code == 200, made.text
    for start in ("", "#codes"):  # signing in from /admin, and from a page's address
        page = await browser.new_page()
        await page.goto(f"{system['BASE']}/admin{start}")
        await page.fill("#sign-in [name=email]", system["ADMIN"])
        await page.fill("#sign-in [name=password]", PASSWORD)
        await page.click("#sign-in button")
        await page.wait_for_load_state("networkidle")
        if start:
            rows = page.locator("#codes-table tbody tr")
            await expect(rows.first).to_be_visible()
            texts = await rows.locator("td:first-child").all_inner_texts()
        else:
            rows = page.locator("#campaigns-table tbody tr", has_text=name)
            await expect(rows).to_have_count(1)
            texts = await page.locator("#campaigns-table tbody tr").evaluate_all(
                "rows => rows.map(r => r.dataset.campaignId)"
            )
        assert len(texts) == len(set(texts)), "a row shown twice"
        await page.close()


async def _admin_token(system: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=system["BASE"]) as http:
        tokens = (
            await http.post("/v1/auth/login", json={"email": system["ADMIN"], "password": PASSWORD})
        ).json()
    return str(tokens["accessToken"])


@pytest.fixture(scope="module")
def short_lived() -> Iterator[dict[str, str]]:
    """A system whose access tokens live 5 seconds."""
    yield from running_system({"AUTH_ACCESS_TTL_SECONDS": "5"})


async def test_the_session_outlives_the_access_token(
    browser: Browser, short_lived: dict[str, str]
) -> None:
    page = await _signed_in(browser, short_lived)
    first = await page.evaluate("sessionStorage.getItem('token')")
    deadline = time.monotonic() + 30
    # Poll until the access token signed in with has expired (and been renewed).
    while time.monotonic() < deadline:
        expired = await page.evaluate(
            "(t) => JSON.parse(atob(t.split('.')[1].replace(/-/g,'+').replace(/_/g,'/'))).exp"
            " * 1000 < Date.now()",
            first,
        )
        if expired:
            break
        await page.wait_for_timeout(500)
    assert expired, "the first access token never expired"
    await page.click("#nav >> text=Users")
    await expect(page.locator("#users-table tbody tr").first).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('token')") != first
    await expect(page.locator("#users-view")).to_be_visible()
    await expect(page.locator("#sign-in-view")).to_be_hidden()
    # A refresh token that no longer works signs out, with the reason beside the form.
    await page.evaluate("sessionStorage.setItem('refresh', 'revoked')")
    await page.evaluate("sessionStorage.setItem('token', 'x.eyJleHAiOjF9.y')")
    await page.reload()
    await expect(page.locator("#sign-in-view")).to_be_visible()
    await expect(page.locator(_msg("#sign-in"))).to_have_text("Your session ended; sign in again.")
    await page.close()
