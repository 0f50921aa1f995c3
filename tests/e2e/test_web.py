"""`gridd web` on a real grid: a real broker and worker, `gridd web` as a subprocess, and a real headless
Chromium (Debian's package; a browser that cannot start fails the test) that loads the one-time link, runs
the page's script and shows the workers, the counts and the commands. Plain HTTP (urllib) checks the access
rules: the link works once, nothing without a session, a pasted credential opens one, the broker's absence
is a 503 the page shows, and it comes back when the broker does."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from tests.e2e.conftest import GRIDD, TOKEN, Grid
from tests.polling import wait_until

XSS = "<img src=x onerror=alert(1)>"
CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000"]


def start_web(grid: Grid) -> tuple[subprocess.Popen[bytes], str]:
    """`gridd web --listen 127.0.0.1:0`; returns it and the one-time link read from its stderr."""
    assert grid.addr is not None
    argv = [*GRIDD, "web", "--broker", grid.addr, "--listen", "127.0.0.1:0"]
    proc = grid.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # keep reading, so its later log lines never block it
        assert proc.stderr is not None
        for raw in proc.stderr:
            lines.put(raw.decode(errors="replace"))

    threading.Thread(target=drain, daemon=True).start()
    seen: list[str] = []

    def link() -> str | None:
        if proc.poll() is not None and lines.empty():
            raise AssertionError(f"gridd web exited with {proc.returncode}: {''.join(seen)}")
        while not lines.empty():
            line = lines.get()
            seen.append(line)
            if line.startswith("gridd web: open "):
                return line.removeprefix("gridd web: open ").strip()
        return None

    url = wait_until(link, 20, "gridd web to print its login link", every_s=0.05)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?login=[\w-]{20,}", url), url
    return proc, url


def request(
    url: str, path: str, *, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def chromium(*args: str) -> str:
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed (.ci/run installs it: apt-get install chromium)"
    result = subprocess.run([browser, *CHROMIUM, *args], capture_output=True, timeout=90)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result.stdout.decode(errors="replace")


def busy_grid(grid: Grid) -> dict[str, str]:
    """One job succeeded on worker `alpha`, one held, one queued (with markup in its command)."""
    grid.start_broker()
    grid.start_worker("alpha")
    grid.wait_worker_connected("alpha")
    done = grid.submit("echo", "web-done-marker")
    grid.wait_state(done, "succeeded")
    held = grid.submit("sleep", "web-held-marker", flags=["--queue", "later"])
    grid.ok("hold", held)
    grid.wait_state(held, "held")
    markup = grid.submit("echo", XSS, flags=["--queue", "later"])
    return {"done": done, "held": held, "markup": markup}


def test_the_page_in_chromium_shows_workers_counts_and_commands(grid: Grid, tmp_path: Path) -> None:
    busy_grid(grid)
    _, url = start_web(grid)

    dom = chromium("--dump-dom", url)
    assert "connected to " + str(grid.addr) in dom, dom
    assert "<td>alpha</td>" in dom  # the workers table
    assert re.search(r'<td class="state-succeeded">1</td>', dom), dom
    assert re.search(r'<td class="state-held">1</td>', dom), dom
    assert "echo web-done-marker" in dom and "sleep web-held-marker" in dom
    # Markup in a command is text: escaped in the DOM, never an element.
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom and "<img" not in dom

    # The link is good once: a second visit gets the login page, not the dashboard.
    status, _, body = request(url, urlsplit(url).path + "?" + urlsplit(url).query)
    assert status == 401 and b'name="credential"' in body and b"used already" in body

    # A fresh `gridd web` (a fresh link) for the screenshot, kept as a test artifact.
    _, url2 = start_web(grid)
    shot = tmp_path / "gridd-web.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,800", url2)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if artifacts := os.environ.get("GRIDD_TEST_ARTIFACTS"):
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / shot.name)
    print(f"screenshot: {shot}")


def login(url: str, credential: str) -> tuple[int, dict[str, str], bytes]:
    form = urlencode({"credential": credential}).encode()
    return request(
        url, "/login", method="POST", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )


def state(url: str, cookie: str) -> tuple[int, Any]:
    status, headers, body = request(url, "/api/state", headers={"Cookie": cookie})
    assert headers["cache-control"] == "no-store" and headers["content-type"] == "application/json"
    return status, json.loads(body)


def test_access_needs_a_session_and_the_api_follows_the_broker(grid: Grid) -> None:
    jobs = busy_grid(grid)
    _, url = start_web(grid)

    status, headers, body = request(url, "/api/state")
    assert status == 401 and json.loads(body) == {"error": "not logged in"}
    status, headers, body = request(url, "/")
    assert status == 401 and b'name="credential"' in body and b"alpha" not in body
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert headers["x-content-type-options"] == "nosniff"

    status, _, body = login(url, TOKEN[:-4] + "AAAA")  # a credential the broker refuses
    assert status == 401 and b"Not logged in" in body

    status, headers, _ = login(url, TOKEN)
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"].split(";")[0]
    assert {"HttpOnly", "SameSite=Strict"} <= {p.strip() for p in headers["set-cookie"].split(";")}
    status, data = state(url, cookie)
    assert status == 200 and data["counts"] == {"default": {"succeeded": 1}, "later": {"held": 1, "queued": 1}}
    assert [(w["name"], w["slots"]) for w in data["workers"]] == [("alpha", 1)]
    by_id = {j["id"]: j for j in data["jobs"]}
    assert by_id[jobs["done"]]["worker"] == "alpha" and by_id[jobs["done"]]["exit_code"] == 0
    assert by_id[jobs["markup"]]["command"] == f"echo '{XSS}'"

    # The broker goes away: a 503 with one line the page shows; it comes back on the same port.
    port = grid.port
    grid.broker.terminate()
    grid.broker.wait(timeout=15)
    status, data = wait_until(lambda: (s := state(url, cookie))[0] == 503 and s, 15, "a 503 without the broker")
    assert data["connected"] is False and "\n" not in data["error"] and data["error"]
    grid.start_broker(port=port)
    wait_until(lambda: state(url, cookie)[0] == 200, 20, "the page to reconnect to the restarted broker")


@pytest.mark.parametrize("head", [b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n", b"NONSENSE\r\n\r\n"])
def test_a_malformed_or_oversized_request_is_400(grid: Grid, head: bytes) -> None:
    grid.start_broker()
    _, url = start_web(grid)
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=15) as sock:
        sock.sendall(head)
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400 ")


def test_a_listen_address_in_use_or_without_a_host_is_one_line(grid: Grid) -> None:
    grid.start_broker()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = grid.cli("web", "--listen", f"127.0.0.1:{port}", timeout=20)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], lines
    result = grid.cli("web", "--listen", "8080", timeout=20)
    assert result.returncode == 2 and b"--listen wants HOST:PORT" in result.stderr
