"""The console's referral page in headless Chromium (Debian's), driven by Playwright, against
auth, loyalty and the gateway started as processes: the program set from the page, the
report it shows after a referral story played over HTTP, and a held referral approved.

Every HTTP client here is 127.0.0.1, so every referral is a same-address one: held for
review (taking the one cap slot), the second withheld by the cap."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Browser, expect

from tests.e2e.test_admin_console import _shot, _signed_in, _user, browser, system

__all__ = ["browser", "system"]  # the console's fixtures, shared with this module


async def _story(base: str, admin_token: str) -> tuple[dict[str, Any], list[str]]:
    """Alice refers Bob and Carol (both confirmed by the admin, as the payment side would)
    with a cap of 1, and tries her own code; the report and the two purchases."""
    alice, bob, carol = [await _user(base) for _ in range(3)]
    async with httpx.AsyncClient(base_url=base) as http:

        def auth(user: dict[str, str]) -> dict[str, str]:
            return {"Authorization": f"Bearer {user['token']}"}

        code = (await http.get("/v1/referral", headers=auth(alice))).json()["code"]
        own = await http.post(
            "/v1/promocodes/apply", json={"code": code, "tariffId": "monthly"}, headers=auth(alice)
        )
        assert own.status_code == 400
        purchases = []
        for referee in (bob, carol):
            used = await http.post(
                "/v1/promocodes/use",
                json={"code": code, "tariffId": "monthly"},
                headers=auth(referee),
            )
            assert used.status_code == 200, used.text
            purchase_id = used.json()["purchaseId"]
            purchases.append(purchase_id)
            done = await http.post(
                f"/v1/purchases/{purchase_id}/confirm",
                json={},
                headers={"Authorization": f"Bearer {admin_token}"},
            )
            assert done.status_code == 200, done.text
        report = await http.get(
            "/v1/admin/referral-report", headers={"Authorization": f"Bearer {admin_token}"}
        )
    result: dict[str, Any] = report.json()
    return result, purchases


async def test_set_the_program_and_read_the_report(
    browser: Browser, system: dict[str, str]
) -> None:
    page = await _signed_in(browser, system)
    await page.click("text=Referrals")
    form = page.locator("#referral-program")
    await expect(form.locator("[name=rewardValidDays]")).to_have_value("30")  # the default
    await form.locator("[name=enabled]").check()
    await form.locator("[name=refereeKind]").select_option("percentOff")
    await form.locator("[name=refereeValue]").fill("25")
    await form.locator("[name=rewardKind]").select_option("amountOff")
    await form.locator("[name=rewardValue]").fill("50")  # roubles
    await form.locator("[name=rewardValidDays]").fill("10")
    await form.locator("[name=maxRewardsPerReferrer]").fill("1")
    await form.locator("[name=rewardHoldSeconds]").fill("0")
    await form.locator("[name=maxRewardsPerReferrerPerDay]").fill("0")
    await form.locator("button[type=submit]").click()
    await expect(form.locator("output.msg")).to_have_text("Referral program saved.")

    token = await page.evaluate("sessionStorage.getItem('token')")
    report, (bob, _) = await _story(system["BASE"], token)
    await page.reload()
    await expect(form.locator("[name=rewardKind]")).to_have_value("amountOff")
    await expect(form.locator("[name=rewardValue]")).to_have_value("50.00")
    await expect(form.locator("[name=maxRewardsPerReferrer]")).to_have_value("1")
    await expect(form.locator("[name=rewardHoldSeconds]")).to_have_value("0")
    await expect(form.locator("[name=enabled]")).to_be_checked()
    totals = page.locator("#referral-totals .card")
    await expect(totals.filter(has_text="rewards issued").locator("b")).to_have_text(
        str(report["rewardsIssued"])
    )
    await expect(totals.filter(has_text="completed").locator("b")).to_have_text(
        str(report["referralsCompleted"])
    )
    capped = page.locator('#withheld-chart .bar[data-reason="REFERRAL_REWARD_CAP_REACHED"]')
    await expect(capped.locator(".count")).to_have_text(
        str(report["rewardsWithheldByReason"]["REFERRAL_REWARD_CAP_REACHED"])
    )
    self_use = page.locator('#referral-rejections-chart .bar[data-reason="REFERRAL_SELF_USE"]')
    await expect(self_use.locator(".count")).to_have_text(
        str(report["rejectionsByReason"]["REFERRAL_SELF_USE"])
    )
    rows = page.locator("#top-referrers tbody tr")
    await expect(rows).to_have_count(len(report["topReferrers"]))
    first = report["topReferrers"][0]
    await expect(rows.first).to_contain_text(first["code"])

    held = page.locator(f'#held-referrals tr[data-referral-id="{bob}"]')
    await expect(held).to_contain_text("same address")
    await _shot(page, "referrals")
    issued = int(report.get("rewardsIssued", "0"))
    await held.locator("button", has_text="Approve").click()
    await page.click("#confirm-yes")  # the console's own confirmation dialog
    await expect(page.locator("#held-referrals + output.msg")).to_have_text(
        "Referral approved: ISSUED."
    )
    await expect(held).to_have_count(0)
    await expect(totals.filter(has_text="rewards issued").locator("b")).to_have_text(
        str(issued + 1)
    )
    await page.close()


async def test_a_bad_program_is_refused_on_the_page(
    browser: Browser, system: dict[str, str]
) -> None:
    page = await _signed_in(browser, system)
    await page.click("text=Referrals")
    form = page.locator("#referral-program")
    await expect(form.locator("[name=rewardValidDays]")).not_to_have_value("")
    await form.locator("[name=refereeKind]").select_option("percentOff")
    await form.locator("[name=refereeValue]").fill("150")
    await form.locator("button[type=submit]").click()
    await expect(form.locator("output.msg")).to_contain_text("percent_off")
    await page.close()
