"""Render a report in headless Chromium: a screenshot, what its charts drew, and what went wrong.

Used by the tests (does the page draw, offline, without a console error?) and to make the README's
screenshot:

    python -m revetl.report.browser report.html docs/report.png [--width 1280] [--height 1700]

It drives the system's Chromium (Debian's `chromium`; `.ci/run` installs it) over the DevTools protocol
with `websocket-client` (the `test` extra): no browser is downloaded. Chromium runs with
`--disable-background-networking` and its own throwaway profile; as root it needs `--no-sandbox`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Rendered", "chromium_path", "render"]

# Per chart: its marks that have a drawn box (width or height above zero).
_MEASURE = """(() => [...document.querySelectorAll('svg.chart')].map(svg => {
    const drawn = [...svg.querySelectorAll('rect.bar, circle.dot, polyline.line')].filter(mark => {
        const box = mark.getBoundingClientRect(); return box.width > 0 && box.height > 0; });
    const box = svg.getBoundingClientRect();
    return {title: svg.getAttribute('aria-label'), width: box.width, height: box.height, marks: drawn.length,
            tips: svg.querySelectorAll('title').length};
}))()"""


@dataclass
class Rendered:
    """What a page did in the browser."""

    screenshot: bytes
    charts: list[dict[str, Any]]  # per svg.chart: title, width, height, marks (drawn), tips
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, failed loads
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    text: str = ""  # the page's visible text


def chromium_path() -> str | None:
    """The system's Chromium, if installed ($REVETL_CHROMIUM overrides)."""
    return os.environ.get("REVETL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


class _DevTools:
    """One page's DevTools websocket: commands in order, events kept."""

    def __init__(self, url: str) -> None:
        import websocket

        self._socket = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        self._socket.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(event.get("method") == method for event in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Chromium sent no {method} within {timeout:.0f} s")
            self.events.append(json.loads(self._socket.recv()))

    def close(self) -> None:
        self._socket.close()


def _start(executable: str, profile: Path) -> tuple[subprocess.Popen, int]:
    command = [executable, "--headless", "--disable-gpu", "--disable-background-networking", "--no-first-run",
               "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
               f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")
    # Its own session: Chromium's helpers (renderers, crash handler) are stopped with it, as one group.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{executable} did not start its DevTools endpoint (exit code {process.poll()})")
        time.sleep(0.05)
    return process, int(port_file.read_text().split("\n")[0])


def _page_socket(port: int) -> str:
    import httpx

    deadline = time.monotonic() + 30
    while True:
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json() if t["type"] == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        if time.monotonic() > deadline:
            raise RuntimeError("Chromium opened no page")
        time.sleep(0.1)


def render(page: Path, width: int = 1280, height: int | None = None, top: int = 0,
           executable: str | None = None) -> Rendered:
    """Open `page` (a file) in headless Chromium at `width` CSS pixels; screenshot the whole page, or
    `height` pixels of it from `top`."""
    executable = executable or chromium_path()
    if not executable:
        raise RuntimeError("Chromium is not installed: apt-get install chromium (as .ci/run does)")
    with tempfile.TemporaryDirectory(prefix="revetl-chromium-") as profile:
        process, port = _start(executable, Path(profile))
        try:
            devtools = _DevTools(_page_socket(port))
            try:
                return _render(devtools, Path(page).resolve(), width, height, top)
            finally:
                devtools.close()
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """Stop Chromium and every helper process it started, before its profile directory is removed (a helper
    still writing there made the removal fail with "Directory not empty")."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the group outlives its leader while a helper runs
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _render(devtools: _DevTools, page: Path, width: int, height: int | None, top: int) -> Rendered:
    for domain in ("Page", "Runtime", "Log", "Network"):
        devtools.call(f"{domain}.enable")
    devtools.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
    devtools.call("Page.navigate", url=page.as_uri())
    devtools.wait_for("Page.loadEventFired")
    charts = devtools.call("Runtime.evaluate", expression=_MEASURE, returnByValue=True)["result"]["value"]
    text = devtools.call("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)["result"]
    content = devtools.call("Page.getLayoutMetrics")["cssContentSize"]
    top = min(top, content["height"] - 1)
    shot_height = min(height or content["height"], content["height"] - top)
    shot = devtools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": top, "width": width, "height": shot_height, "scale": 1})
    return Rendered(base64.b64decode(shot["data"]), charts, _errors(devtools.events),
                    [e["params"]["request"]["url"] for e in devtools.events
                     if e.get("method") == "Network.requestWillBeSent"], text.get("value", ""))


def _errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            errors.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(arg.get("value", arg.get("description"))) for arg in params["args"]))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            errors.append(f"load failed: {params.get('errorText')}")
    return errors


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Screenshot a revetl report in headless Chromium.")
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=None, help="crop to HEIGHT pixels of the page")
    parser.add_argument("--top", type=int, default=0, help="... from this pixel down")
    args = parser.parse_args(argv)
    rendered = render(args.page, args.width, args.height, args.top)
    args.png.write_bytes(rendered.screenshot)
    print(f"{args.png}: {len(rendered.screenshot) / 1024:,.0f} KB; {len(rendered.charts)} charts, "
          f"{sum(chart['marks'] for chart in rendered.charts):,} marks; errors: {rendered.errors or 'none'}")
    return 1 if rendered.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
