"""A real browser for the report test: Debian's chromium (and its chromedriver) driven by
Selenium, with the browser's path given, so nothing is downloaded.

The paths come from $AUTOMIXER_CHROMIUM / $AUTOMIXER_CHROMEDRIVER or the PATH. Without a browser
the test is skipped, unless $AUTOMIXER_REQUIRE_BROWSER is set (CI sets it: .ci/browser.sh
installs Debian's `chromium` and `chromium-driver`), where it fails.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Page:
    title: str
    text: str
    images: int
    broken_images: list[str]
    console_errors: list[str]


def _find(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    return next((p for n in names if (p := shutil.which(n))), None)


def open_page(path: Path, screenshot: Path, width: int = 1280, height: int = 2000) -> Page:
    browser = _find("AUTOMIXER_CHROMIUM", "chromium", "chromium-browser")
    driver_path = _find("AUTOMIXER_CHROMEDRIVER", "chromedriver", "chromium.chromedriver")
    if browser is None or driver_path is None:
        message = "no chromium/chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("AUTOMIXER_REQUIRE_BROWSER"):
            pytest.fail(f"AUTOMIXER_REQUIRE_BROWSER is set but there is {message}")
        pytest.skip(message)
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    try:
        driver.get(path.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete && i.naturalWidth > 0,"
            " i.src.slice(0, 40)])"
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        logs = driver.get_log("browser")
        return Page(
            title=driver.title,
            text=driver.find_element("tag name", "body").text,
            images=len(images),
            broken_images=[src for ok, src in images if not ok],
            console_errors=[e["message"] for e in logs if e.get("level") == "SEVERE"],
        )
    finally:
        driver.quit()
