"""A headless Debian Chromium driven through Selenium and Debian's chromedriver, fully offline:
no Selenium Manager download, no browser updates, a fresh profile per session."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

INSTALL_HINT = (
    "run `.ci/install-chromium.sh` (as root: installs Debian's `chromium` and "
    "`chromium-driver`) and try again"
)
# Flags measured to work on these machines (root, no GPU, no network but the local servers).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1600,1000",
]

T = TypeVar("T")


def find_binaries() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or a message saying what is missing and how to fix it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    if missing:
        return f"{' and '.join(missing)} not found on PATH: {INSTALL_HINT}"
    assert browser and driver
    return browser, driver


def start_chrome(browser: str, driver: str, profile_dir: Path):  # -> selenium WebDriver
    """A headless Chromium session with an empty profile in ``profile_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile_dir.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile_dir}")
    # An explicit driver path keeps Selenium Manager from trying to download one.
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    session.set_page_load_timeout(60)
    return session


def wait_for(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5
) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` otherwise.
    Exceptions from a page that is still rendering count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - stale elements while React re-renders
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} ({last_error!r})")
