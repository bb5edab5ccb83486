"""Reports and the gallery opened in headless Chromium (Playwright driving the system's
browser): no console errors, every image and video loads, one checks-table row per check
with its pass/fail class, every link resolves to a file, nothing from the run directory
executes, sortable tables sort, and the page fits a phone's width.

Needs the `playwright` package (in the dev extra) and a Chromium: the system's
(`apt-get install chromium`; `.ci/run` installs it) or the one named by MFNN_CHROMIUM.
Without them the module is skipped with a one-line message (tests/conftest.py prints it),
unless MFNN_REQUIRE_BROWSER=1 (as `.ci/run` sets), where a missing browser fails.
"""

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from report_dirs import EVIL_NAME, shared_dirs

BROWSER_SKIP = (
    "browser tests skipped: {why}; to run them install Chromium (apt-get install chromium) "
    "and Playwright (pip install -e '.[dev]'), or set MFNN_CHROMIUM to a Chromium binary"
)


def _chromium() -> str | None:
    named = os.environ.get("MFNN_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(why: str) -> None:
    if os.environ.get("MFNN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"MFNN_REQUIRE_BROWSER=1 but {why}", pytrace=False)
    pytest.skip(BROWSER_SKIP.format(why=why), allow_module_level=True)


try:
    from playwright.sync_api import sync_playwright
except ImportError:
    _unavailable("no playwright package")
CHROMIUM = _chromium()
if CHROMIUM is None:
    _unavailable("no Chromium found")

PHONE = {"width": 375, "height": 740}

# waits for every <img> and <video> to load or fail, then reports each one's natural size
_MEDIA = """async () => {
  const els = [...document.querySelectorAll("img, video")];
  await Promise.all(els.map(e => {
    if (e.tagName === "IMG") {
      return e.complete ? null : new Promise(r => { e.onload = r; e.onerror = r; });
    }
    return e.readyState >= 1 ? null : new Promise(r => {
      e.onloadedmetadata = r; e.onerror = r; setTimeout(r, 5000);
    });
  }));
  return els.map(e => e.tagName === "IMG"
    ? [e.getAttribute("src"), e.naturalWidth, e.naturalHeight]
    : [e.getAttribute("src"), e.videoWidth, e.videoHeight]);
}"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    d = shared_dirs(tmp_path_factory, tmp_path_factory.mktemp("browse"))
    return {
        "run": d["run"] / "report.html",
        "experiment": d["experiment"] / "report.html",
        "sub-run": d["experiment"] / "runs" / "m8" / "report.html",
        "sweep": d["sweep"] / "report.html",
        "gallery": d["experiment"].parent / "index.html",
    }


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, path: Path, viewport=None):
    """A page at ``path`` with its console errors and uncaught exceptions collected."""
    page = browser.new_page(viewport=viewport or {"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, errors


def broken_media(page) -> list:
    return [m for m in page.evaluate(_MEDIA) if not (m[1] > 0 and m[2] > 0)]


def missing_links(page) -> list[str]:
    urls = page.eval_on_selector_all(
        "a[href], img[src], video[src]", "els => els.map(e => e.href || e.src)"
    )
    bad = []
    for url in urls:
        parsed = urlparse(url)
        if parsed.scheme != "file" or not Path(unquote(parsed.path)).exists():
            bad.append(url)
    return bad


def overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


KINDS = ["run", "experiment", "sub-run", "sweep", "gallery"]


@pytest.mark.parametrize("kind", KINDS)
def test_page_loads_clean_with_every_image_and_link(browser, pages, kind):
    page, errors = open_page(browser, pages[kind])
    try:
        assert errors == []
        media = page.evaluate(_MEDIA)
        assert media and broken_media(page) == []
        assert missing_links(page) == []
        assert page.evaluate("window.__pwned") is None
    finally:
        page.close()


@pytest.mark.parametrize("kind", KINDS)
def test_page_fits_a_phone(browser, pages, kind):
    page, errors = open_page(browser, pages[kind], viewport=PHONE)
    try:
        assert overflow(page) <= 0 and errors == []
    finally:
        page.close()


@pytest.mark.parametrize("kind", ["run", "experiment", "sub-run"])
def test_checks_table_has_a_row_per_check_with_its_class(browser, pages, kind):
    summary = json.loads((pages[kind].parent / "summary.json").read_text())
    want = [
        "info" if c.get("informational") else ("pass" if c["passed"] else "fail")
        for c in summary["checks"].values()
    ]
    page, _ = open_page(browser, pages[kind])
    try:
        got = page.eval_on_selector_all(
            "table.checks tbody tr",
            "rows => rows.map(r => [...r.classList].filter(c => c !== 'check').join(' '))",
        )
        shown = page.eval_on_selector_all(
            "table.checks tbody tr td:first-child", "cells => cells.map(c => c.textContent)"
        )
    finally:
        page.close()
    assert got == want and shown == list(summary["checks"])


def test_the_run_directory_cannot_execute_anything(browser, pages, tmp_path):
    page, errors = open_page(browser, pages["run"])
    try:
        assert EVIL_NAME in page.inner_text("h1")  # shown as text
        assert page.evaluate("window.__pwned") is None
    finally:
        page.close()
    # negative control: the same string written raw does run, so the check can fail
    control = tmp_path / "control.html"
    control.write_text(f"<!DOCTYPE html><html><body><h1>{EVIL_NAME}</h1></body></html>")
    page, _ = open_page(browser, control)
    try:
        page.wait_for_function("window.__pwned === 1", timeout=5000)
    finally:
        page.close()


def test_the_checks_can_fail_on_a_doctored_page(browser, tmp_path):
    """Negative controls of the page checks: a missing image, a dead link, a wide element
    and a script error are each caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img src="nope.png"><a href="gone.html">x</a>'
        '<div style="width:2000px">wide</div><script>undefined_function()</script></body></html>'
    )
    page, errors = open_page(browser, bad, viewport=PHONE)
    try:
        assert len(broken_media(page)) == 1 and len(missing_links(page)) == 2
        assert overflow(page) > 0 and any("undefined_function" in e for e in errors)
    finally:
        page.close()


def test_sweep_table_sorts_by_a_column(browser, pages):
    page, errors = open_page(browser, pages["sweep"])
    try:
        heads = page.eval_on_selector_all(
            "table.points thead th", "hs => hs.map(h => h.textContent)"
        )
        col = heads.index("final_loss")
        cell = f"table.points tbody tr td:nth-child({col + 1})"
        header = page.locator("table.points thead th").nth(col)
        header.click()
        up = [float(v) for v in page.eval_on_selector_all(cell, "cs => cs.map(c => c.textContent)")]
        header.click()
        down = [
            float(v) for v in page.eval_on_selector_all(cell, "cs => cs.map(c => c.textContent)")
        ]
    finally:
        page.close()
    assert up == sorted(up) and down == sorted(up, reverse=True) and errors == []
