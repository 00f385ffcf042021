"""The panel in a real browser (Debian's chromium, driven by Playwright) against a real
server: sign-in, the users list, search, and the Deactivate action with its confirmation.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

from huddle.auth.models import User
from huddle.config import Settings
from tests.admin_panel.conftest import with_panel
from tests.conftest import skip_or_fail
from tests.world import add_user

CHROMIUM = "/usr/bin/chromium"
STEP_MS = 5000
PASSWORD = "correct horse battery"


async def test_superuser_deactivates_a_user_in_the_browser(
    make_settings: Callable[..., Settings],
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        skip_or_fail("chromium", f"needs {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        skip_or_fail("chromium", "needs the playwright package (pip install playwright)")
    from tests.realtime.wsclient import serve

    # Plain HTTP on loopback: the cookie cannot be Secure here.
    settings = make_settings(cookie_secure=False)
    app = with_panel(settings, cookie_secure=False)
    live = await serve(app)
    try:
        await add_user(app, "root", superuser=True)
        await add_user(app, "member")
        target, _ = await add_user(app, "target")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            try:
                await _session(browser, live.url, expect)
            finally:
                await browser.close()
        async with app.state.db.read_session() as session:
            user = await session.get(User, uuid.UUID(target["id"]))
            assert user is not None and user.is_active is False
    finally:
        await live.stop()


async def _login(page: Any, username: str) -> None:
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")


async def _session(browser: Any, url: str, expect: Any) -> None:
    page = await browser.new_page()
    page.set_default_timeout(STEP_MS)
    expect.set_options(timeout=STEP_MS)

    await page.goto(f"{url}/admin/")
    await expect(page).to_have_url(f"{url}/admin/login")

    # A member with the right password is refused.
    await _login(page, "member")
    await expect(page.locator(".invalid-feedback").first).to_contain_text("Invalid credentials")
    await expect(page).to_have_url(f"{url}/admin/login")

    await _login(page, "root")
    await expect(page).to_have_url(f"{url}/admin/")

    await page.goto(f"{url}/admin/user/list")
    rows = page.locator("tbody tr")
    await expect(rows).to_have_count(3)

    await page.fill("#search-input", "targ")
    await page.press("#search-input", "Enter")
    await expect(page).to_have_url(f"{url}/admin/user/list?search=targ")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("target@example.com")

    await rows.first.locator("input.select-box").check()
    await page.click("#dropdownMenuButton")
    await page.click("#action-customconfirm-deactivate")
    dialog = page.locator("#modal-confirmation-deactivate")
    await expect(dialog).to_be_visible()
    await dialog.locator("a.btn-blue").click()
    await expect(page).to_have_url(f"{url}/admin/user/list")
    await expect(page.locator(".toast-body").first).to_contain_text("1 user(s) deactivated")

    # The member cannot sign in in a fresh browser session either.
    other = await browser.new_page()
    other.set_default_timeout(STEP_MS)
    await other.goto(f"{url}/admin/login")
    await _login(other, "member")
    await expect(other).to_have_url(f"{url}/admin/login")
    await expect(other.locator(".invalid-feedback").first).to_be_visible()
    await other.goto(f"{url}/admin/user/list")
    await expect(other).to_have_url(f"{url}/admin/login")
