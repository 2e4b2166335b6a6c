"""Headless Chromium for tests that check HTML reports really render: a screenshot and the rendered DOM.

    from helpers.browser import Browser, require_browser
    browser = require_browser()                          # fails the test when Chromium is not installed
    page = browser.render("/path/report.html", "/tmp/report.png")
    assert page.text_contains("Conclusion: PASS") and page.screenshot_looks_rendered()

Each call starts Chromium with a fresh profile in a temporary directory (no shared state, nothing
left behind), no GPU, and as root without the sandbox (containers and CI run as root). It has no network
beyond the file (``OFFLINE_FLAGS``): every host name resolves to nothing, and every other request, loopback
included, goes to a proxy that is not there; the background services (updates, sync, field trials) are off.
``tests/integration/test_browser_offline.py`` checks that a page's requests reach no server. The screenshot is
checked to be a PNG of the requested size that is not one flat colour.
Chromium comes from Debian (``apt-get install chromium``; ``scripts/bootstrap.sh --test`` installs it).
"""

from __future__ import annotations

import html as html_mod
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
         "--disable-domain-reliability", "--disable-client-side-phishing-detection", "--metrics-recording-only",
         "--no-pings", "--disable-field-trial-config", "--mute-audio", "--hide-scrollbars")
# No network: names resolve to nothing; IP addresses (loopback too: <-loopback> drops the implicit bypass) go to a
# proxy on the discard port of the loopback address, where nothing listens; file:// is never proxied.
OFFLINE_FLAGS = ("--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
                 "--proxy-bypass-list=<-loopback>")


def find_chromium():
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_browser():
    """The browser, or a failed test: a report check that silently does not run proves nothing."""
    path = find_chromium()
    if not path:
        pytest.fail("Chromium is not installed (apt-get install chromium, or scripts/bootstrap.sh --test)",
                    pytrace=False)
    return Browser(path)


class RenderedPage:
    def __init__(self, dom, screenshot, width, height):
        self.dom = dom
        self.screenshot = screenshot
        self.width = width
        self.height = height

    @property
    def text(self):
        """The rendered DOM's text, tags removed and entities decoded, whitespace folded."""
        body = re.sub(r"<(script|style)\b.*?</\1>", " ", self.dom, flags=re.S | re.I)
        return " ".join(html_mod.unescape(re.sub(r"<[^>]+>", " ", body)).split())

    def text_contains(self, *needles):
        text = self.text
        return all(needle in text for needle in needles)

    def screenshot_looks_rendered(self):
        """A PNG of the window size whose pixels are not all one colour (something was drawn)."""
        width, height, colours = png_summary(self.screenshot)
        return (width, height) == (self.width, self.height) and colours > 8


class Browser:
    def __init__(self, executable, timeout=180, offline=True):
        self.executable = executable
        self.timeout = timeout
        self.offline = offline          # False only to show that the offline flags are what blocks requests

    def _run(self, *arguments):
        profile = tempfile.mkdtemp(prefix="esd-chromium-")
        command = [self.executable, *FLAGS, *(OFFLINE_FLAGS if self.offline else ()), "--user-data-dir=%s" % profile,
                   *arguments]
        if os.geteuid() == 0:
            command.insert(1, "--no-sandbox")
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=self.timeout,
                                  stdin=subprocess.DEVNULL, env=dict(os.environ, HOME=profile))
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    def dump_dom(self, path):
        result = self._run("--dump-dom", _url(path))
        assert result.returncode == 0 and "<html" in result.stdout, (result.returncode, result.stderr[-2000:])
        return result.stdout

    def screenshot(self, path, png_path, width=1280, height=2000):
        if os.path.exists(png_path):
            os.unlink(png_path)
        result = self._run("--screenshot=%s" % png_path, "--window-size=%d,%d" % (width, height), _url(path))
        assert result.returncode == 0 and os.path.isfile(png_path), (result.returncode, result.stderr[-2000:])
        with open(png_path, "rb") as handle:
            return handle.read()

    def render(self, path, png_path, width=1280, height=2000):
        """Screenshot and rendered DOM of a local HTML file."""
        dom = self.dump_dom(path)
        return RenderedPage(dom, self.screenshot(path, png_path, width, height), width, height)


def _url(path):
    return "file://" + os.path.abspath(path)


def png_summary(data, rows=240):
    """(width, height, distinct colours in the top ``rows`` rows) of an 8-bit RGB(A) PNG.

    Only the top of the page is decoded (PNG rows depend on the rows above them, and pure Python is slow):
    the report's title, summary cards and verdict are there, a blank page is one colour."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position = 8
    width = height = colour_type = None
    compressed = b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunk = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8, "only 8-bit PNGs are sampled"
        elif kind == b"IDAT":
            compressed += chunk
        position += 12 + length
    channels = {2: 3, 6: 4}.get(colour_type)
    assert channels, "PNG colour type %s is not RGB or RGBA" % colour_type
    raw = zlib.decompress(compressed)
    stride = width * channels
    previous = bytearray(stride)
    colours = set()
    for row in range(min(rows, height)):
        start = row * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), previous, channels)
        if row % 4 == 0:
            for x in range(0, stride, channels * 2):
                colours.add(bytes(line[x:x + 3]))
        previous = line
    return width, height, len(colours)


def _unfilter(kind, line, previous, bpp):
    if kind == 0:
        return line
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
        elif kind == 4:
            upper_left = previous[i - bpp] if i >= bpp else 0
            estimate = left + up - upper_left
            pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - upper_left)
            predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else upper_left)
            line[i] = (line[i] + predictor) & 0xFF
    return line
