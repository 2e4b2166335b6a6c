"""The headless Chromium of tests/helpers/browser.py has no network beyond the file it renders: a page that asks
a server on loopback (by address and by name) for an image, a stylesheet and a script gets nothing, and the server
sees no request. Without the offline flags the same page does reach the server, so the flags are what blocks it."""

from __future__ import annotations

import http.server
import os
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers.browser import Browser, require_browser  # noqa: E402

pytestmark = pytest.mark.integration


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):  # noqa: N802 - the http.server hook name
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Recorder.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], _Recorder.seen
    httpd.shutdown()
    httpd.server_close()


def test_the_test_browser_sends_no_request_beyond_the_file(server, tmp_path):
    port, seen = server
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html><html><head><link rel=stylesheet href='http://localhost:%d/style.css'>"
                    "<script src='http://127.0.0.1:%d/script.js'></script></head><body><p>offline</p>"
                    "<img src='http://127.0.0.1:%d/image.png'></body></html>" % (port, port, port))
    browser = require_browser()
    assert "<p>offline</p>" in browser.dump_dom(str(page))
    assert seen == []
    # The control: the same page without the offline flags reaches the server.
    assert "<p>offline</p>" in Browser(browser.executable, offline=False).dump_dom(str(page))
    assert "/image.png" in seen
