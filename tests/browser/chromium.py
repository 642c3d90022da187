"""Headless Chromium driven over the DevTools protocol through ``--remote-debugging-pipe``.

Why the pipe: no port to pick or leak, no WebSocket client to install; Chromium reads commands
on fd 3 and writes replies and events on fd 4, each message JSON ending in a NUL byte. The
browser runs with a fresh profile, no network (every host name resolves to nothing) and the
flags the project's tests agree on, and is stopped by :meth:`Chromium.close`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


class CDPError(RuntimeError):
    """A DevTools command failed, timed out, or the browser went away."""


def find_chromium() -> str:
    """The Chromium binary: $CHROMIUM (any Chromium or Chrome), else ``chromium`` on PATH; the error
    says how to install it (``make test`` does it with tools/install_chromium.sh)."""
    override = os.environ.get("CHROMIUM")
    if override:
        if os.access(override, os.X_OK):
            return override
        raise CDPError(f"CHROMIUM={override} is not an executable file; point it at a Chromium or Chrome binary")
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise CDPError(
        "Chromium is not installed: run `make browser` (tools/install_chromium.sh says how where "
        "apt-get is missing), or set CHROMIUM to a Chromium or Chrome binary"
    )


class Chromium:
    """One browser process; :meth:`page` opens a tab on a URL."""

    def __init__(self, profile_dir: Path, *, timeout: float = 20.0) -> None:
        self.timeout = timeout
        cmd_read, self._cmd_write = os.pipe()
        self._out_read, out_write = os.pipe()

        def wire_fds() -> None:  # in the child, before exec: fd 3 = commands in, fd 4 = replies out
            high_in = fcntl.fcntl(cmd_read, fcntl.F_DUPFD, 10)
            high_out = fcntl.fcntl(out_write, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.proc = subprocess.Popen(
            [find_chromium(), *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(3, 4),
            preexec_fn=wire_fds,
        )
        os.close(cmd_read)
        os.close(out_write)
        self._next_id = 0
        self._lock = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._closed = False
        self._stderr: list[bytes] = []
        threading.Thread(target=self._read_loop, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.send("Browser.getVersion")

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def _read_loop(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._out_read, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._lock:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._lock.notify_all()
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Run one DevTools command and return its result (raise :class:`CDPError` on an error reply)."""
        with self._lock:
            self._next_id += 1
            mid = self._next_id
        message: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._cmd_write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    stderr = b"".join(self._stderr[-20:]).decode(errors="replace")
                    raise CDPError(f"{method}: no reply ({'browser exited' if self._closed else 'timeout'})\n{stderr}")
                self._lock.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, *, after: int = 0) -> dict[str, Any]:
        """The first *method* event of *session* at index >= *after* in :attr:`events`."""
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while True:
                for event in self.events[after:]:
                    if event.get("method") == method and event.get("sessionId") == session:
                        return event
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise CDPError(f"no {method} event")
                self._lock.wait(left)

    @contextmanager
    def page(self, url: str, *, bypass_csp: bool = False, width: int = 1280) -> Iterator[Page]:
        """A tab that has loaded *url* (after its ``load`` event); closed on exit. With *bypass_csp*
        the page's Content-Security-Policy is ignored, so an escaping bug cannot hide behind it."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Page", "Runtime", "Network", "Log"):
                self.send(f"{domain}.enable", session=session)
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session,
            )
            if bypass_csp:
                self.send("Page.setBypassCSP", {"enabled": True}, session)
            mark = len(self.events)
            self.send("Page.navigate", {"url": url}, session)
            self.wait_event("Page.loadEventFired", session, after=mark)
            yield Page(self, session, mark)
        finally:
            self.send("Target.closeTarget", {"targetId": target})

    def close(self) -> None:
        with suppress(CDPError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._cmd_write)
        os.close(self._out_read)


class Page:
    """A loaded tab: evaluate JavaScript, list its requests and console messages, screenshot it."""

    def __init__(self, browser: Chromium, session: str, first_event: int) -> None:
        self.browser, self.session, self.first_event = browser, session, first_event

    def evaluate(self, expression: str) -> Any:
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def call(self, function: str, *args: Any) -> Any:
        """``(function)(...args)`` in the page, *args* passed as JSON (never spliced as code)."""
        return self.evaluate(f"({function})(...{json.dumps(list(args))})")

    def _events(self, method: str) -> list[dict[str, Any]]:
        with self.browser._lock:
            return [
                e["params"]
                for e in self.browser.events[self.first_event :]
                if e.get("method") == method and e.get("sessionId") == self.session
            ]

    def requested_urls(self) -> list[str]:
        """Every URL the page asked the network stack for (its own document included)."""
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]

    def console(self) -> list[str]:
        """Log entries (CSP violations land here), console calls and uncaught exceptions."""
        out = [e["entry"].get("text", "") for e in self._events("Log.entryAdded")]
        out += [json.dumps(e.get("args")) for e in self._events("Runtime.consoleAPICalled")]
        out += [json.dumps(e.get("exceptionDetails")) for e in self._events("Runtime.exceptionThrown")]
        return out

    def screenshot(self, path: Path, *, max_height: int = 12000) -> Path:
        """The whole page (up to *max_height* CSS pixels tall) as PNG."""
        size = self.browser.send("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
        shot = self.browser.send(
            "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}, self.session
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
