"""The pages in headless Chromium (Debian ``chromium`` driven by Playwright, no browser download).

Log in with a token, open the worklist (stat first, highlighted), open the stat study, edit and sign the
draft, see the status change and the deliveries queued, then the outbox page.  Screenshots go to
``build/test-artefacts/pages/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.api.auth import Role
from store import audit
from tests.peers import require_binary
from tests.service.conftest import STAT_ECG, Service
from tests.service.live import serve

ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artefacts" / "pages"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = require_binary("/usr/bin/chromium")
    from playwright import sync_api  # a test extra: missing, the test fails rather than skips

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_login_worklist_review_sign_outbox(service_factory: Callable[..., Service], browser) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory()
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    token = svc.token(Role.CLINICIAN, Role.INTEGRATOR, sub="dr.page", name="Dr Page")
    with serve(svc.client.app) as base:  # type: ignore[arg-type]
        # without a session the pages send the browser to the login form; the API stays bearer-only
        assert httpx.get(f"{base}/ui/worklist", follow_redirects=False).status_code == 303
        page = browser.new_page()
        page.goto(f"{base}/ui/worklist")
        assert "/ui/login" in page.url
        page.fill("#token", "not-a-token")
        page.click("#sign-in")
        assert page.locator(".error").is_visible()
        page.fill("#token", token)
        page.click("#sign-in")
        page.wait_for_url(re.compile(r".*/ui/worklist"))
        first = page.locator("#worklist-rows tr").first
        assert first.get_attribute("data-study") == STAT_ECG
        assert "stat" in (first.get_attribute("class") or "")
        assert first.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(253, 232, 232)"
        page.screenshot(path=str(ARTEFACTS / "worklist.png"), full_page=True)

        first.locator("a").click()
        page.wait_for_url(re.compile(rf".*/ui/studies/{re.escape(STAT_ECG)}"))
        assert page.locator("#report-status").inner_text() == "preliminary"
        page.wait_for_function("() => document.querySelector('img.ecg').naturalWidth > 0")
        narrative = page.locator("textarea[name='section_18810-2']")
        narrative.fill(narrative.input_value() + "\nReviewed: QT prolongation confirmed.")
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        page.click("#sign")
        page.wait_for_selector("#message")
        assert dialogs and "Sign this report as Dr Page" in dialogs[0]
        assert page.locator("#report-status").inner_text() == "final"
        assert "final" in page.locator("#message").inner_text()
        rows = page.locator("#deliveries tbody tr")
        kinds = {
            (rows.nth(i).locator("td").nth(0).inner_text(), rows.nth(i).locator("td").nth(1).inner_text())
            for i in range(rows.count())
        }
        assert {("2", "fhir"), ("2", "pdf")} <= kinds
        page.screenshot(path=str(ARTEFACTS / "study_signed.png"), full_page=True)

        page.goto(f"{base}/ui/worklist")
        assert page.locator(f"#worklist-rows tr[data-study='{STAT_ECG}']").count() == 0  # signed: not waiting

        page.goto(f"{base}/ui/outbox")
        assert page.locator("#outbox tbody tr").count() >= 4
        page.screenshot(path=str(ARTEFACTS / "outbox.png"), full_page=True)
        page.close()
    with svc.ctx.db.session() as session:
        trail = [(e.actor, e.action, e.origin) for e in audit.search(session, actor="user:dr.page")]
    assert ("user:dr.page", "login", "127.0.0.1") in trail
    assert ("user:dr.page", "report.sign", "127.0.0.1") in trail


def test_forms_need_the_csrf_token(service_factory: Callable[..., Service]) -> None:
    svc = service_factory()
    token = svc.token(Role.CLINICIAN, sub="dr.csrf")
    svc.client.cookies.set("mmdx_session", token)
    page = svc.client.get(f"/ui/studies/{STAT_ECG}")
    assert page.status_code == 200
    forged = svc.client.post(
        f"/ui/studies/{STAT_ECG}/action", data={"action": "sign", "csrf": "0" * 64}, follow_redirects=False
    )
    assert forged.status_code == 403
    csrf = re.findall(r'name="csrf" value="([0-9a-f]+)"', page.text)[0]
    url = f"/ui/studies/{STAT_ECG}/action"
    ok = svc.client.post(url, data={"action": "sign", "csrf": csrf}, follow_redirects=False)
    assert ok.status_code == 303 and "final" in ok.headers["location"]
    # a technologist's session cannot open the review page
    svc.client.cookies.set("mmdx_session", svc.token(Role.TECHNOLOGIST))
    denied = svc.client.get(f"/ui/studies/{STAT_ECG}")
    assert denied.status_code == 403 and "Not allowed" in denied.text and "clinician" in denied.text
    assert svc.client.get("/api/v1/worklist").status_code == 401  # the cookie is for pages: the API wants a bearer


def test_viewer_link_and_refresh_rows(service_factory: Callable[..., Service]) -> None:
    svc = service_factory(service={"viewer_url": "http://ohif.local/viewer?StudyInstanceUIDs={study_uid}"})
    svc.client.cookies.set("mmdx_session", svc.token(Role.CLINICIAN, sub="dr.view"))
    page = svc.client.get(f"/ui/studies/{STAT_ECG}").text
    assert f"http://ohif.local/viewer?StudyInstanceUIDs={STAT_ECG}" in page
    worklist = svc.client.get("/ui/worklist").text
    assert 'data-refresh-url="/ui/worklist/rows?' in worklist and 'data-refresh-s="30"' in worklist
    rows = svc.client.get("/ui/worklist/rows").text  # what the page's script swaps in
    assert rows.count("<tr") == 2 and 'class="prio-stat stat"' in rows and "user:dr.view" in rows  # opened by
