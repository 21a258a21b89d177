"""The web UI in Debian's Chromium through Playwright (run by tests/ui.rs).

Environment: FLEETDB_URL, one-time login URLs (ADMIN_LOGIN, ADMIN_LOGIN_2, VIEWER_LOGIN,
SHORT_LOGIN: a server whose sessions last 3 s), CHROMIUM, SCREENSHOTS (a directory).
"""

import os
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["FLEETDB_URL"]
SHOTS = os.environ["SCREENSHOTS"]
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

problems = []


def console(page, message):
    # A page answered with 401 or 403 on purpose (and checked) is logged by Chromium as a
    # failed load of the document itself; any other error counts.
    if message.type != "error":
        return
    if message.text.startswith("Failed to load resource") and message.location.get("url") == page.url:
        return
    problems.append(f"console: {message.text} ({message.location.get('url')})")


def watch(page, base=BASE):
    """Records console errors, page errors and requests that leave the server."""
    page.on("console", lambda m: console(page, m))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: r.url.startswith(base) or problems.append(f"request outside the server: {r.url}"))
    return page


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def step(text):
    print(f"== {text}", flush=True)


def log_in(page, url, user="fleetdb-admin"):
    """Opens a one-time URL: a page that names the user, whose button logs in."""
    page.goto(url)
    expect(page.locator("#login-user")).to_have_text(user)
    page.click("#login")


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ["CHROMIUM"], headless=True, args=FLAGS)
        context = browser.new_context(ignore_https_errors=True)
        page = watch(context.new_page())

        step("without a session: how to log in, and no data")
        answer = page.goto(f"{BASE}/ui/hosts")
        assert answer.status == 401, answer.status
        headers = answer.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], headers
        assert "script-src 'self'" in headers["content-security-policy"], headers
        assert headers["x-frame-options"] == "DENY", headers
        assert headers["x-content-type-options"] == "nosniff", headers
        assert headers["strict-transport-security"] == "max-age=31536000", headers
        assert headers["cache-control"] == "no-store", headers
        expect(page.locator("body")).to_contain_text("You are not logged in")
        expect(page.locator("body")).to_contain_text("fleetdb ui-login")
        assert "h07" not in page.content()

        step("a one-time URL logs in, into an HTTP-only secure cookie")
        login = os.environ["ADMIN_LOGIN"]
        log_in(page, login)
        page.wait_for_url(f"{BASE}/ui/")
        expect(page.locator("h1")).to_have_text("Overview")
        expect(page.locator(".tiles")).to_contain_text("31 hosts")
        expect(page.locator(".tiles")).to_contain_text("1 pending authorization")
        source = page.locator("#sources tr[data-name=dc-lab]")
        expect(source).to_contain_text("2026-12-01T06:00:00Z")
        expect(source).to_contain_text("cannot read /srv/lab.csv: no such file")
        [cookie] = [c for c in context.cookies() if c["name"] == "fleetdb-ui-session"]
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie
        shot(page, "overview")

        step("the same URL does not work twice")
        other = browser.new_context(ignore_https_errors=True)
        again = watch(other.new_page())
        answer = again.goto(login)
        assert answer.status == 401, answer.status
        expect(again.locator("h1")).to_have_text("This login link does not work")
        shot(again, "login-refused")
        other.close()

        step("hosts filtered by label, then by text; keyboard")
        page.goto(f"{BASE}/ui/hosts")
        page.fill("input[name=labelSelector]", "team=a")
        page.click("form.filters button[type=submit]")
        expect(page.locator(".summary")).to_contain_text("10 hosts match")
        names = page.locator("#hosts tbody tr").evaluate_all("rows => rows.map(r => r.dataset.name)")
        assert names == [f"h{i:02}" for i in range(0, 30, 3)], names
        assert "labelSelector=team%3Da" in page.url, page.url
        page.goto(f"{BASE}/ui/hosts")
        page.keyboard.press("/")
        expect(page.locator("#q")).to_be_focused()
        page.keyboard.type("10.0.0.7")
        page.keyboard.press("Enter")
        expect(page.locator(".summary")).to_contain_text("1 hosts match")
        expect(page.locator("#hosts tbody tr")).to_have_count(1)
        page.keyboard.press("j")
        expect(page.locator("#hosts tbody tr").first).to_be_focused()
        shot(page, "hosts")

        step("a host's history names who changed it")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{BASE}/ui/hosts/h07")
        timeline = page.locator("#history ol.timeline")
        expect(timeline).to_contain_text("alice")
        expect(timeline).to_contain_text("patch")
        expect(timeline).to_contain_text("fleetdb-admin")
        page.click("#blame summary")
        expect(page.locator("#blame")).to_contain_text("spec.role")
        row = page.locator("#blame tr", has_text="metadata.labels.rack")
        expect(row).to_contain_text("alice")
        timeline.locator("details summary").first.click()
        expect(timeline.locator("pre").first).to_contain_text("/spec/role")
        shot(page, "host")

        step("a certificate request is approved and a pending host authorized from the joins page")
        page.goto(f"{BASE}/ui/joins")
        request = page.locator("tr[data-name=bob-laptop]")
        expect(request).to_contain_text("kubernetes.io/kube-apiserver-client")
        pending = page.locator("tr[data-name=new-1]")
        expect(pending).to_have_count(1)
        shot(page, "joins")
        request.locator("button", has_text="Approve").click()
        page.wait_for_url(f"{BASE}/ui/joins")
        expect(page.locator("tr[data-name=bob-laptop]")).to_have_count(0)
        pending.locator("button", has_text="Authorize").click()
        page.wait_for_url(f"{BASE}/ui/joins")
        expect(page.locator("tr[data-name=new-1]")).to_have_count(0)

        step("maintenance on one page is seen live on another")
        live = watch(context.new_page())
        live.goto(f"{BASE}/ui/hosts?q=h03")
        expect(live.locator("html[data-live=on]")).to_have_count(1, timeout=10000)
        cell = live.locator("tr[data-name=h03] td.maintenance")
        expect(cell).to_have_text("no")
        page.goto(f"{BASE}/ui/hosts?q=h03")
        page.check("tr[data-name=h03] input[type=checkbox]")
        page.click("button[value=maintenance-on]")
        page.wait_for_url(re.compile(r".*/ui/hosts\?q=h03"))
        expect(cell).to_have_text("yes", timeout=10000)
        shot(live, "live")
        live.close()

        step("a login posted from another site is refused")
        forged_login = page.request.post(
            f"{BASE}/ui/login",
            form={"token": "anything"},
            headers={"origin": "https://evil.example"},
            max_redirects=0,
        )
        assert forged_login.status == 403, forged_login.status

        step("a forged form (no CSRF token) changes nothing")
        forged = page.request.post(
            f"{BASE}/ui/hosts/actions",
            form={"action": "maintenance-off", "host": "h03"},
            max_redirects=0,
        )
        assert forged.status == 403, forged.status

        step("someone who may only read hosts sees no actions, and the API refuses theirs")
        viewer = browser.new_context(ignore_https_errors=True)
        vpage = watch(viewer.new_page())
        log_in(vpage, os.environ["VIEWER_LOGIN"], "viewer")
        vpage.wait_for_url(f"{BASE}/ui/")
        vpage.goto(f"{BASE}/ui/hosts")
        expect(vpage.locator("#hosts tbody tr")).to_have_count(31)
        expect(vpage.locator("button[value=maintenance-on]")).to_have_count(0)
        csrf = vpage.locator("#bulk input[name=csrf]").get_attribute("value")
        refused = vpage.request.post(
            f"{BASE}/ui/hosts/actions",
            form={"csrf": csrf, "action": "maintenance-on", "host": "h01", "return": "/ui/hosts"},
            max_redirects=0,
        )
        assert refused.status == 200 and "forbidden" in refused.text(), refused.text()
        answer = vpage.goto(f"{BASE}/ui/sources")
        assert answer.status == 403, answer.status
        expect(vpage.locator(".problem")).to_contain_text('cannot list resource "sources"')
        shot(vpage, "viewer-denied")
        viewer.close()

        step("dark mode follows the system")
        dark = browser.new_context(ignore_https_errors=True, color_scheme="dark", storage_state=context.storage_state())
        dpage = watch(dark.new_page())
        dpage.goto(f"{BASE}/ui/hosts")
        background = dpage.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)", background
        shot(dpage, "dark")
        dark.close()

        step("logout ends the session on the server")
        cookie_header = {"cookie": f"fleetdb-ui-session={cookie['value']}"}
        page.goto(f"{BASE}/ui/")
        page.click("form.logout button")
        expect(page.locator("body")).to_contain_text("You are not logged in")
        replay = page.request.get(f"{BASE}/ui/hosts", headers=cookie_header)
        assert replay.status == 401, replay.status

        step("a second login works; an expired session is refused")
        log_in(page, os.environ["ADMIN_LOGIN_2"])
        expect(page.locator("h1")).to_have_text("Overview")
        short = browser.new_context(ignore_https_errors=True)
        spage = short.new_page()
        log_in(spage, os.environ["SHORT_LOGIN"])
        expect(spage.locator("h1")).to_have_text("Overview")
        time.sleep(3.5)
        answer = spage.reload()
        assert answer.status == 401, answer.status
        expect(spage.locator("body")).to_contain_text("You are not logged in")
        short.close()

        browser.close()
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
