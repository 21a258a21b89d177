"""Measures the web UI in Debian's Chromium (run by `fleetdb-bench ui`).

Environment: LOGIN (a one-time login URL), BASE (the server's URL), FILTERED (a hosts page
query), HOST (a host with a long history), CHROMIUM, RUNS. Prints one JSON object.
"""

import json
import os
import statistics

from playwright.sync_api import sync_playwright

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def timings(page, url):
    """Navigates to url; milliseconds to the first contentful paint and to the load event."""
    page.goto(url, wait_until="load")
    # "rendered": the first frame after the load event (two animation frames later), in
    # milliseconds from the navigation's start.
    return page.evaluate(
        """() => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(() => {
            const nav = performance.getEntriesByType('navigation')[0];
            resolve({
              response: nav.responseEnd - nav.startTime,
              load: nav.loadEventEnd - nav.startTime,
              rendered: performance.now(),
              bytes: nav.transferSize,
            });
        })))"""
    )


def median(runs, key):
    values = [r[key] for r in runs if r[key] is not None]
    return round(statistics.median(values), 1) if values else None


def chromium_rss_mib():
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().split(b"\0")[0]
            if not command.endswith(b"chromium"):
                continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def main():
    base = os.environ["BASE"]
    runs = int(os.environ.get("RUNS", "5"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ["CHROMIUM"], headless=True, args=FLAGS)
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.goto(os.environ["LOGIN"])
        page.click("#login")
        page.wait_for_url(f"{base}/ui/")
        # One navigation to warm the server's host index and the connection.
        page.goto(f"{base}/ui/hosts")
        result = {}
        for name, url in [
            ("hosts", f"{base}/ui/hosts"),
            ("filtered", f"{base}/ui/hosts?{os.environ['FILTERED']}"),
            ("host", f"{base}/ui/hosts/{os.environ['HOST']}"),
        ]:
            measured = [timings(page, url) for _ in range(runs)]
            result[name] = {key: median(measured, key) for key in ["response", "load", "rendered", "bytes"]}
        result["history_entries"] = page.locator("#history ol.timeline > li").count()
        # Ten pages of the table, each scrolled to its end, then the browser's memory.
        page.goto(f"{base}/ui/hosts")
        for _ in range(10):
            page.mouse.wheel(0, 20000)
            page.click("a[rel=next]")
            page.wait_for_load_state("load")
        page.mouse.wheel(0, 20000)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        result["after_10_pages"] = {
            "js_heap_used_mib": round(metrics.get("JSHeapUsedSize", 0) / 2**20, 1),
            "dom_nodes": metrics.get("Nodes"),
            "chromium_rss_mib": chromium_rss_mib(),
        }
        browser.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
