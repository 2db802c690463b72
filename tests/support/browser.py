"""A real browser for the tests: Debian's headless Chromium, driven through
chromedriver's W3C WebDriver HTTP protocol with ``requests``.

``chromium`` (session scope) makes sure the packages are installed (as root
it runs ``apt-get install chromium chromium-driver`` once; elsewhere, or if
that fails, the tests that need it are skipped with the reason), runs
``chromedriver --port=PORT`` as a child process in its own process group,
opens one browser session and hands out a ``Browser``; at the end the session
is quit and chromedriver (and anything it left behind in its group) is
stopped. The machine may be small: one browser for the whole test session.

Only what the tests use is here: navigate, click, run a script, screenshot
(the window or the whole page), and a Chrome DevTools command
(``goog/cdp/execute``: through it every page gets an error collector before
its own scripts run, ``errors()``, and a test may hold requests with the
Fetch domain).

Basic auth goes as a user would: ``with_credentials(url)`` puts them in the
first URL; Chromium meets the 401 challenge, answers it with them and keeps
them in its HTTP auth cache, from which the page's own requests (EventSource,
images) are authenticated, as after a user typed them into the prompt.
"""
from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.support.loopback import free_port, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--no-first-run", "--window-size=1280,900"]
# Runs in every page before the page's own scripts: script errors, failed
# resource loads (captured on their way down) and unhandled rejections.
COLLECT_ERRORS = """
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push(
    e.message || `${e.type}: ${e.target && (e.target.src || e.target.href || e.target.tagName)}`), true);
window.addEventListener("unhandledrejection", (e) => window.__errors.push(`unhandled: ${e.reason}`));
"""


class WebDriverError(AssertionError):
    pass


def with_credentials(base: str, user: str, password: str) -> str:
    """``http://host:port`` as ``http://user:password@host:port``."""
    scheme, rest = base.split("://", 1)
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


def ensure_installed() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("Chromium is not installed and this is not a root Debian machine "
                    "(apt-get install chromium chromium-driver)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"chromium and chromium-driver installed, but {CHROMIUM} or {CHROMEDRIVER} is missing")


class Browser:
    """One WebDriver session."""

    def __init__(self, driver_url: str):
        self.driver_url = driver_url
        self.http = requests.Session()
        caps = {"browserName": "chrome",
                "goog:chromeOptions": {"binary": str(CHROMIUM), "args": ARGS}}
        value = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}}, timeout=60)
        self.session = f"/session/{value['sessionId']}"
        self.cdp("Page.addScriptToEvaluateOnNewDocument", source=COLLECT_ERRORS)

    def _call(self, method: str, path: str, body: dict | None = None, *, timeout: float = 30):
        response = self.http.request(method, self.driver_url + path, json=body, timeout=timeout)
        value = response.json().get("value")
        if response.status_code != 200:
            error = value.get("error") if isinstance(value, dict) else value
            message = (value.get("message") or "" if isinstance(value, dict) else "").split("\n")[0]
            raise WebDriverError(f"{method} {path}: {response.status_code} {error}: {message}")
        return value

    def cdp(self, command: str, **params):
        """A Chrome DevTools Protocol command in the current page's target."""
        return self._call("POST", self.session + "/goog/cdp/execute", {"cmd": command, "params": params})

    def get(self, url: str) -> None:
        self._call("POST", self.session + "/url", {"url": url}, timeout=60)

    def execute(self, script: str, *args):
        """Run ``script`` as a function body in the page; its return value."""
        return self._call("POST", self.session + "/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, *args, timeout: float = 20.0):
        """Poll ``script`` until it returns something truthy; that value, or an AssertionError."""
        found: list = []

        def check():
            found[:] = [self.execute(script, *args)]
            return bool(found[0])

        if not wait_until(check, timeout):
            raise AssertionError(f"not true within {timeout} s: {script.strip()[:200]}")
        return found[0]

    def errors(self) -> list[str]:
        return self.execute("return window.__errors || null;")

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", self.session + "/screenshot"))

    def page_screenshot(self) -> bytes:
        """The whole page as PNG, below the window's height too (DevTools' capture)."""
        shot = self.cdp("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(shot["data"])

    def click(self, css: str) -> None:
        """Click the element ``css`` selects as a user would (WebDriver's element click,
        which waits for a navigation it starts)."""
        found = self._call("POST", self.session + "/element", {"using": "css selector", "value": css})
        element = next(iter(found.values()))      # {"element-6066-...": id}
        self._call("POST", f"{self.session}/element/{element}/click", {}, timeout=60)

    def quit(self) -> None:
        try:
            self._call("DELETE", self.session, timeout=30)
        finally:
            self.http.close()


def _driver_up(url: str) -> bool:
    try:
        return requests.get(url + "/status", timeout=1).json()["value"]["ready"]
    except (requests.RequestException, ValueError, KeyError):
        return False


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    ensure_installed()
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    for _ in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        # Its own process group: whatever chromedriver starts is stopped with it.
        process = subprocess.Popen([str(CHROMEDRIVER), f"--port={port}", f"--log-path={log}"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: process.poll() is not None or _driver_up(url), 30)
        if process.poll() is None:
            break
        # It ended at once: its port, free when picked, may have been taken since. Another one.
    browser = None
    try:
        if not (process.poll() is None and _driver_up(url)):
            raise RuntimeError(f"chromedriver did not start (exit code {process.poll()}); see {log}")
        browser = Browser(url)
        yield browser
    finally:
        try:
            if browser is not None:
                browser.quit()
        finally:
            _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """chromedriver (SIGTERM), then anything of its group still there once it is gone (SIGKILL)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        pass
    if not wait_until(lambda: not _group_alive(process.pid), 5):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
