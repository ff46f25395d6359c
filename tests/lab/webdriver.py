"""A minimal W3C WebDriver client over http.client, and Debian's Chromium to drive.

`chromium()` starts chromedriver on a free loopback port, opens a session
with Chromium headless (`--headless=new --no-sandbox`, a temporary profile,
downloads into a directory the test gives), and on exit closes the session
and stops chromedriver and any browser process it left, each by its pid.
Only what the web tests need: navigate, find, type, click, read text,
execute a script, alerts, screenshots, window size.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The README's screenshots are refreshed on request only (ZOSNODE_UPDATE_SCREENSHOTS=1),
# so a test run leaves the checkout as it found it; otherwise a temp directory.
SHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots"
         if os.environ.get("ZOSNODE_UPDATE_SCREENSHOTS") == "1"
         else Path(tempfile.gettempdir()) / "zosnode-screenshots")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class WebDriverError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message[:300]}")
        self.status = status
        self.error = error


def require_chromium() -> None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            pytest.skip(f"{path} is missing (Debian packages chromium, chromium-driver)")


class Session:
    def __init__(self, port: int, capabilities: dict[str, Any]) -> None:
        self.port = port
        value = self._call("POST", "/session", {"capabilities": capabilities}, timeout=60)
        self.id: str = value["sessionId"]

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"content-type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            reply = conn.getresponse()
            raw = reply.read()
        finally:
            conn.close()
        doc = json.loads(raw) if raw else {}
        value = doc.get("value") if isinstance(doc, dict) else None
        if reply.status != 200:
            err = value if isinstance(value, dict) else {}
            raise WebDriverError(reply.status, str(err.get("error", "?")),
                                 str(err.get("message", raw[:300])))
        return value

    def cmd(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"/session/{self.id}{path}", body)

    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return str(self.cmd("GET", "/url"))

    @property
    def title(self) -> str:
        return str(self.cmd("GET", "/title"))

    def source(self) -> str:
        return str(self.cmd("GET", "/source"))

    def find(self, css: str) -> str:
        return str(self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT])

    def wait_for(self, css: str, timeout_s: float = 15.0) -> str:
        """The first element matching `css`, once there (a click's navigation may
        still be loading when the click returns)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.find_all(css)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise WebDriverError(404, "no such element", f"{css} at {self.url}")
            time.sleep(0.1)

    def find_all(self, css: str) -> list[str]:
        found = self.cmd("POST", "/elements", {"using": "css selector", "value": css})
        return [str(e[ELEMENT]) for e in found]

    def text(self, element: str) -> str:
        return str(self.cmd("GET", f"/element/{element}/text"))

    def attribute(self, element: str, name: str) -> str | None:
        value = self.cmd("GET", f"/element/{element}/attribute/{name}")
        return None if value is None else str(value)

    def type(self, element: str, text: str) -> None:
        self.cmd("POST", f"/element/{element}/clear", {})
        self.cmd("POST", f"/element/{element}/value", {"text": text})

    def click(self, element: str) -> None:
        self.cmd("POST", f"/element/{element}/click", {})

    def execute(self, script: str, *args: Any) -> Any:
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def alert_text(self) -> str | None:
        """The open dialog's text, or None when there is none ("no such alert")."""
        try:
            return str(self.cmd("GET", "/alert/text"))
        except WebDriverError as exc:
            if exc.error == "no such alert":
                return None
            raise

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))

    def window(self, width: int, height: int) -> None:
        self.cmd("POST", "/window/rect", {"width": width, "height": height})

    def cdp(self, command: str, params: dict[str, Any]) -> Any:
        return self.cmd("POST", "/goog/cdp/execute", {"cmd": command, "params": params})

    def close(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.id}", timeout=20)
        except (OSError, WebDriverError):
            pass


def downloaded(path: Path) -> bool:
    """Whether Chromium finished downloading `path` (it may reserve the name with an
    empty file while the bytes go to a .crdownload beside it)."""
    busy = any(p.suffix == ".crdownload" for p in path.parent.iterdir())
    return not busy and path.exists() and path.stat().st_size > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


@contextmanager
def chromium(downloads: Path | None = None, *, width: int = 1200,
             height: int = 900) -> Iterator[Session]:
    require_chromium()
    profile = Path(tempfile.mkdtemp(prefix="zosnode-chromium-"))
    port = _free_port()
    log = profile.parent / f"{profile.name}.chromedriver.log"
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}", f"--log-path={log}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session: Session | None = None
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if driver.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("chromedriver did not start") from None
                time.sleep(0.1)
        options: dict[str, Any] = {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--user-data-dir={profile / 'profile'}",
                     f"--window-size={width},{height}", "--no-first-run",
                     "--disable-background-networking", "--disable-extensions"],
        }
        if downloads is not None:
            options["prefs"] = {"download.default_directory": str(downloads),
                                "download.prompt_for_download": False}
        session = Session(port, {"alwaysMatch": {"browserName": "chrome",
                                                 "goog:chromeOptions": options}})
        if downloads is not None:
            session.cdp("Browser.setDownloadBehavior",
                        {"behavior": "allow", "downloadPath": str(downloads)})
        yield session
    finally:
        browsers = _descendants(driver.pid)
        if session is not None:
            session.close()
        for pid in [*reversed(browsers), driver.pid]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            driver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait(timeout=5)
        for pid in browsers:  # SIGKILL what did not go (by pid, reaped by init)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"chrom" in f.read():
                        os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        shutil.rmtree(profile, ignore_errors=True)
        log.unlink(missing_ok=True)
