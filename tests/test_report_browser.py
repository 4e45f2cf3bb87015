"""The reports as a reader sees them: the quick demo report and the phase report rendered in
headless Chromium, checked from the rendered page (not the HTML source).

Checks, on each page: no console errors; every image loaded (``complete`` and a natural size) and
drawn at >= 150 device pixels per displayed inch (sharp on high-DPI screens); no element wider than
the viewport at 800 and 1400 px unless it sits in a box that scrolls sideways (a wide table's
wrapper); every ``#anchor`` link has its target. A screenshot of every section at 1400 px is kept
under the test's temporary directory (printed with ``-s``) for a person to look at.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (the ``test``
extra); Selenium is given both binaries' paths, so nothing is downloaded. Without them the test
is skipped, unless ``INITLAB_REQUIRE_BROWSER=1`` (CI sets it): then it fails.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

WIDTHS = (800, 1400)
SCREENSHOT_WIDTH = 1400
MIN_DPI = 150.0


def _browser() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or the reason they are unusable."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    names = ("chromium", "chromium-browser", "google-chrome")
    chrome = next((p for p in map(shutil.which, names) if p), None)
    driver = shutil.which("chromedriver")
    if chrome is None or driver is None:
        return "no chromium / chromedriver on PATH (apt-get install chromium chromium-driver)"
    return chrome, driver


def _require() -> tuple[str, str]:
    found = _browser()
    if isinstance(found, str):
        if os.environ.get("INITLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"INITLAB_REQUIRE_BROWSER=1 but {found}")
        pytest.skip(found)
    return found


def open_driver(chrome: str, chromedriver: str, width: int = SCREENSHOT_WIDTH, height: int = 1000) -> Any:
    """A headless Chromium driven through the given chromedriver (no Selenium Manager lookup)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--force-device-scale-factor=1", f"--window-size={width},{height}",
                "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)


def _set_width(driver: Any, width: int) -> None:
    """Make the layout viewport ``width`` CSS px wide (the window adds no chrome when headless)."""
    driver.set_window_size(width, 1000)
    inner = driver.execute_script("return window.innerWidth")
    if inner != width:
        driver.set_window_size(width + (width - inner), 1000)


_LOAD_JS = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
imgs.forEach(img => { img.loading = 'eager'; img.scrollIntoView(); });
window.scrollTo(0, 0);
Promise.all(imgs.map(img => img.complete ? null : new Promise(ok => { img.onload = img.onerror = ok; })))
  .then(() => done(true));
"""

_IMAGES_JS = """
return Array.from(document.images).map(img => {
  const r = img.getBoundingClientRect();
  return {src: img.getAttribute('src').slice(0, 80), complete: img.complete, natural: img.naturalWidth,
          shown: r.width};
});
"""

_OVERFLOW_JS = """
const limit = document.documentElement.clientWidth + 0.5;
function scrolls(el) {
  for (let p = el.parentElement; p; p = p.parentElement) {
    const o = getComputedStyle(p).overflowX;
    if ((o === 'auto' || o === 'scroll') && p.getBoundingClientRect().right <= limit) return true;
  }
  return false;
}
const wide = el => {
  const r = el.getBoundingClientRect();
  return r.width > 0 && r.right > limit && !scrolls(el);
};
const out = [];
for (const el of document.body.querySelectorAll('*')) {
  if (wide(el) && !(el.parentElement && el.parentElement !== document.body && wide(el.parentElement))) {
    const right = Math.round(el.getBoundingClientRect().right);
    out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' right=' + right);
  }
}
const page = document.documentElement.scrollWidth;
if (page > limit) out.push('page scrollWidth=' + page);
return out;
"""

_ANCHORS_JS = """
return Array.from(document.querySelectorAll('a[href^="#"]')).map(a => a.getAttribute('href'))
  .filter(h => h.length > 1 && !document.getElementById(decodeURIComponent(h.slice(1))));
"""


def inspect_page(driver: Any, url: str, shots: Path | None = None) -> list[str]:
    """Load ``url`` and return every problem a reader would meet (empty: the page is fine);
    with ``shots``, save a screenshot of every section (``section[id]``, else every ``h2`` block)
    at :data:`SCREENSHOT_WIDTH` px there."""
    problems = []
    _set_width(driver, SCREENSHOT_WIDTH)
    driver.set_script_timeout(60)
    driver.get(url)
    driver.execute_async_script(_LOAD_JS)  # what a reader scrolling through the page would load
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            problems.append(f"console error: {entry.get('message', '')[:200]}")
    for img in driver.execute_script(_IMAGES_JS):
        if not img["complete"] or not img["natural"]:
            problems.append(f"image not loaded: {img['src']}")
        elif img["shown"] and img["natural"] / (img["shown"] / 96.0) < MIN_DPI:
            problems.append(f"image {img['src']} has {img['natural'] / (img['shown'] / 96.0):.0f} pixels per "
                            f"displayed inch (< {MIN_DPI:g}): blurred on high-DPI screens")
    for width in WIDTHS:
        _set_width(driver, width)
        problems += [f"at {width} px, wider than the viewport: {what}"
                     for what in driver.execute_script(_OVERFLOW_JS)[:10]]
    problems += [f"anchor {href} has no target" for href in driver.execute_script(_ANCHORS_JS)]
    if shots is not None:
        _set_width(driver, SCREENSHOT_WIDTH)
        _screenshots(driver, shots)
    return problems


def _screenshots(driver: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    shots.mkdir(parents=True, exist_ok=True)
    sections = driver.find_elements(By.CSS_SELECTOR, "section[id]") or driver.find_elements(By.TAG_NAME, "h2")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(SCREENSHOT_WIDTH, min(max(height, 1000), 16000))
    for i, el in enumerate(sections, start=1):
        name = el.get_attribute("id") or f"part-{i}"
        el.screenshot(str(shots / f"{i:02d}-{name}.png"))


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file, from its header."""
    head = path.read_bytes()[:24]
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def browser() -> tuple[str, str]:
    """(chromium, chromedriver), or skip (fail under ``INITLAB_REQUIRE_BROWSER=1``) before any work."""
    return _require()


@pytest.fixture(scope="module")
def reports(browser, tmp_path_factory):
    """The quick phase report and the quick demo report, side by side (the demo links the phase)."""
    from initlab.cli import main

    root = tmp_path_factory.mktemp("browser")
    assert main(["phase", "--quick", "--no-progress", "--out", str(root / "initlab-phase")]) == 0
    assert main(["demo", "--quick", "--no-progress", "--out", str(root / "initlab-report")]) == 0
    return root


@pytest.mark.parametrize("page", ["initlab-report", "initlab-phase"])
def test_report_reads_well_in_a_browser(browser, reports, page, capsys):
    chrome, chromedriver = browser
    shots = reports / "screenshots" / page
    driver = open_driver(chrome, chromedriver)
    try:
        problems = inspect_page(driver, (reports / page / "index.html").as_uri(), shots)
    finally:
        driver.quit()
    with capsys.disabled():
        print(f"\nscreenshots of {page} at {SCREENSHOT_WIDTH} px: {shots}")
    assert not problems, "\n".join(problems)
    taken = sorted(shots.glob("*.png"))
    assert taken and all(png_size(p)[0] >= SCREENSHOT_WIDTH // 2 for p in taken)
    if page == "initlab-report":
        ids = {p.stem.split("-", 1)[1] for p in taken}
        assert {"symmetry", "training", "depth", "summary", "config"} <= ids
