"""Type texts into the exported page in headless Chromium and read back what it showed: for the tests
and ``benchmarks/web_latency.py``.

The folder is served on 127.0.0.1 by a ``http.server`` thread that also hands the page the texts
(``GET /__texts.json``) and takes its report (``POST /__report``); the page runs in its scripted mode
(``app.js``), so no browser-automation protocol or package is needed, only the browser binary.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")


def find_browser() -> str | None:
    """Path of a headless-capable Chromium on PATH (Debian's chromium-headless-shell first), or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Handler(SimpleHTTPRequestHandler):
    texts: bytes = b"[]"
    report: dict = {}
    done: threading.Event

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.split("?")[0] != "/__texts.json":
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.texts)))
        self.end_headers()
        self.wfile.write(self.texts)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()
        if self.path == "/__report":
            self.report.update(json.loads(body))
            self.done.set()

    def log_message(self, *args) -> None:  # quiet: the tests read the report, not the access log
        pass


def type_in_browser(folder: str | os.PathLike, texts: list[str], timeout: float = 120.0) -> dict:
    """Serve ``folder`` (an ``s2s export --format web`` folder), let the page type each of ``texts``
    keystroke by keystroke in headless Chromium, and return its report: ``{"loadMs", "results": [{"text",
    "words", "probs", "ms", "steps", "stepMs"}, ...], "userAgent"}``, one result per prefix of each text
    (the empty one included): the words shown and their probabilities, the keystroke's time from the
    text to the words on screen, and the model steps it ran with their share of that time. Raises
    RuntimeError when the page reports an error, or says nothing within ``timeout`` seconds (with the
    browser's last output)."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError(f"no headless Chromium on PATH (looked for {', '.join(BROWSERS)})")
    done = threading.Event()
    handler = type("Handler", (_Handler,), {"texts": json.dumps(texts).encode(), "report": {}, "done": done})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/index.html?test=/__texts.json&report=/__report"
    with tempfile.TemporaryDirectory(prefix="s2s-chromium-") as profile:
        args = [browser, "--headless", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}"]
        # every host name but the local server's fails to resolve: a page that fetched anything from
        # the network would break here instead of passing on a connected machine
        args.append("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
        if os.geteuid() == 0:  # Chromium's sandbox refuses to start as root
            args.append("--no-sandbox")
        log = Path(profile) / "browser.log"
        with open(log, "wb") as out:
            # its own process group: Chromium forks zygote and renderer processes, which outlive a
            # kill of the browser process alone
            proc = subprocess.Popen(
                [*args, url], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                finished = done.wait(timeout)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                server.shutdown()
                server.server_close()
        output = log.read_text(errors="replace")[-2000:]
    report = handler.report
    if not finished:
        raise RuntimeError(f"the page reported nothing within {timeout:.0f} s; browser output:\n{output}")
    if "error" in report:
        raise RuntimeError(f"the page failed: {report['error']}")
    return report
