"""The console's campaign parts in headless Chromium under a strict Content-Security-Policy:
a code's daily chart and budget bar, and CSV export and import."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Browser, Page, Route, expect

from tests.e2e.test_admin_console import (
    _codes_page,
    _msg,
    _shot,
    _signed_in,
    _user,
    browser,
    system,
)

__all__ = ["browser", "system"]  # the processes and browser, started once for this module

STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'"


async def _with_strict_csp(route: Route) -> None:
    """Serves the console with a CSP that forbids inline script and style, as production will."""
    response = await route.fetch()
    headers = response.headers | {"content-security-policy": STRICT_CSP}
    await route.fulfill(response=response, headers=headers)


async def _strict_page(browser: Browser, system: dict[str, str]) -> tuple[Page, list[str]]:
    page = await _signed_in(browser, system)
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    # The console's own files (the API's answers need no policy).
    await page.route(lambda url: urlsplit(url).path.startswith("/admin"), _with_strict_csp)
    await page.reload()
    await expect(page.locator("#campaigns-view")).to_be_visible()
    await _codes_page(page)
    return page, violations


async def _use(base: str, code: str) -> int:
    user = await _user(base)
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.post(
            "/v1/promocodes/use",
            json={"code": code, "tariffId": "monthly", "requestId": "console-1"},
            headers={"Authorization": f"Bearer {user['token']}"},
        )
    return response.status_code


async def test_a_codes_page_charts_its_days_and_its_budget(
    browser: Browser, system: dict[str, str]
) -> None:
    page, violations = await _strict_page(browser, system)
    code = f"WEB{uuid.uuid4().hex[:8].upper()}"
    form = page.locator("#create-code")
    await form.locator("[name=code]").fill(code)
    await form.locator("[name=value]").fill("50")
    await form.locator("[name=duration]").select_option("DURATION_REPEATING")
    await form.locator("[name=durationPeriods]").fill("3")
    await form.locator("[name=budget]").fill("598")  # roubles: 4 * 149.50
    await form.locator("[name=perUserLimit]").fill("0")
    await form.locator("button[type=submit]").click()
    await expect(page.locator(_msg("#create-code"))).to_have_text(f"Created {code}.")
    assert [await _use(system["BASE"], code) for _ in range(2)] == [200, 200]
    await page.goto(f"{system['BASE']}/admin#code/{code}")
    bar = page.locator("#budget-bar")
    await expect(bar).to_have_attribute("aria-valuenow", str(2 * 14950))
    await expect(bar).to_have_attribute("aria-valuemax", str(4 * 14950))
    await expect(page.locator("#budget-text")).to_have_text(
        "299.00 RUB of 598.00 RUB granted (50%)"
    )
    track, fill = await bar.bounding_box(), await bar.locator(".fill").bounding_box()
    assert track is not None and fill is not None
    assert abs(fill["width"] - track["width"] / 2) <= 2
    today = datetime.now(UTC).date().isoformat()
    day = page.locator(f'#daily-chart g.day[data-date="{today}"]')
    await expect(day.locator("rect.uses")).to_have_attribute("data-value", "2")
    await expect(day.locator("rect.rejections")).to_have_attribute("data-value", "0")
    uses_height = float(await day.locator("rect.uses").get_attribute("height") or 0)
    assert uses_height > 0
    await expect(day.locator("text.granted")).to_have_text("299.00 ₽")
    await expect(page.locator("#code-settings")).to_contain_text("3 periods")
    # Two more: the budget allows one, refuses the other; the bar fills, the chart counts it.
    assert sorted([await _use(system["BASE"], code) for _ in range(3)]) == [200, 200, 400]
    await page.reload()
    await expect(bar).to_have_class("meter full")
    await expect(day.locator("rect.rejections")).to_have_attribute("data-value", "1")
    await _shot(page, "code-budget-and-days")
    assert violations == []
    await page.unroute_all(behavior="ignoreErrors")
    await page.close()


async def test_export_and_import_from_the_console(
    browser: Browser, system: dict[str, str], tmp_path: Path
) -> None:
    page, violations = await _strict_page(browser, system)
    prefix = f"CSV{uuid.uuid4().hex[:6].upper()}"
    csv_text = (
        "code,percent_off,all_users,duration,duration_periods\n"
        f"{prefix}-1,50,true,REPEATING,3\n"
        f"{prefix}-2,500,true,,\n"
        f"{prefix}-3,10,true,FOREVER,\n"
    )
    upload = tmp_path / "codes.csv"
    upload.write_text(csv_text)
    await page.set_input_files("#import-file", upload)
    await page.click("#import-codes")
    await expect(page.locator("#import-summary")).to_have_text("Imported 2, failed 1.")
    bad = page.locator('#import-table tr[data-row="2"]')
    await expect(bad).to_contain_text("failed: INVALID_ARGUMENT percent_off")
    await page.fill("#code-search [name=query]", prefix)
    await page.click("#code-search button")
    await expect(page.locator("#codes-table tbody tr")).to_have_count(2)
    async with page.expect_download() as download_info:
        await page.click("#export-codes")
    target = tmp_path / "export.csv"
    await (await download_info.value).save_as(target)
    lines = target.read_text().splitlines()
    assert lines[0].startswith("code,percent_off,")
    assert [line.split(",")[0] for line in lines[1:]] == [f"{prefix}-1", f"{prefix}-3"]
    await _shot(page, "import")
    assert violations == []
    await page.unroute_all(behavior="ignoreErrors")
    await page.close()
