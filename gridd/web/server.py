"""A tiny HTTP/1.1 server for the dashboard: GET and HEAD, POST for the login form, one request per
connection (Connection: close), the request head and body bounded, and a read timeout.

Every path but /login needs a session cookie; without one it answers the login page (401), and /api/state
answers 401 in JSON. No credential ever travels in a URL: the one-time link holds a nonce, the form POSTs.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import structlog
from anyio.abc import ByteStream, SocketAttribute, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from gridd.protocol.errors import CannotListen, ConfigError
from gridd.web.sessions import Session, Sessions
from gridd.web.view import BrokerView, Unavailable

log = structlog.get_logger()

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 16 * 1024
READ_TIMEOUT_S = 10.0
LOGIN_CHECK_S = 15.0  # a pasted credential: how long the broker may take to accept or refuse it
COOKIE = "gridd_session"
SWEEP_S = 60.0
STATIC = {"/app.js": "text/javascript; charset=utf-8", "/app.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class BadRequest(Exception):
    pass


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, head_only: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status.value} {self.status.phrase}"]
        headers = {
            "Content-Type": self.content_type,
            "Content-Length": str(len(self.body)),
            "Connection": "close",
            **SECURITY_HEADERS,
            **self.headers,
        }
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else self.body)


def _asset(name: str) -> bytes:
    return files("gridd.web").joinpath("static", name).read_bytes()


async def read_request(stream: ByteStream) -> Request:
    buffered = BufferedByteReceiveStream(stream)
    try:
        head = await buffered.receive_until(b"\r\n\r\n", MAX_HEAD_BYTES)
    except anyio.DelimiterNotFound:
        raise BadRequest("request head too large") from None
    if len(head) > MAX_HEAD_BYTES:  # also when one read brought more than the bound, delimiter included
        raise BadRequest("request head too large")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest("malformed header")
        headers[name.strip().lower()] = value.strip()
    method, target = parts[0], urlsplit(parts[1])
    body = b""
    if method == "POST":
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise BadRequest("bad Content-Length") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise BadRequest("request body too large")
        body = await buffered.receive_exactly(length) if length else b""
    return Request(method, target.path, parse_qs(target.query), headers, body)


class WebServer:
    """Routes requests to the page, its assets and /api/state, with the access rules above."""

    def __init__(
        self, main_view: BrokerView, sessions: Sessions, tg: TaskGroup, connect: Callable[[str], BrokerView]
    ) -> None:
        self.main_view = main_view  # the connection with the credential of whoever started `gridd web`
        self.sessions = sessions
        self._tg = tg
        self._connect = connect  # a BrokerView for a pasted credential
        self._index = _asset("index.html")
        self._static = {path: _asset(path.lstrip("/")) for path in STATIC}

    async def handle(self, stream: ByteStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(READ_TIMEOUT_S):
                    request = await read_request(stream)
            except BadRequest as exc:
                await _send(stream, Response(HTTPStatus.BAD_REQUEST, f"{exc}\n".encode(), "text/plain"), False)
                return
            except (TimeoutError, anyio.IncompleteRead, anyio.EndOfStream, OSError, anyio.BrokenResourceError):
                return
            try:
                response = await self.route(request)
            except Exception:  # one broken request must not end the server
                log.exception("web.request_failed", path=request.path)
                response = Response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n", "text/plain")
            await _send(stream, response, request.method == "HEAD")

    async def route(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD", "POST"):
            return Response(HTTPStatus.METHOD_NOT_ALLOWED, b"", headers={"Allow": "GET, HEAD, POST"})
        if request.method == "POST":
            if request.path != "/login":
                return Response(HTTPStatus.METHOD_NOT_ALLOWED, b"", headers={"Allow": "GET, HEAD"})
            return await self._login_form(request)
        nonce = request.query.get("login", [""])[0]
        if nonce and request.method == "GET":  # a HEAD (a link preview) does not spend the link
            if self.sessions.take_nonce(nonce):
                return self._logged_in(self.sessions.open(self.main_view))
            return _login_page("That login link was used already or has expired: paste a credential.")
        session = self.sessions.get(_cookie(request))
        if request.path == "/login" or session is None:
            if request.path == "/api/state":
                return _json(HTTPStatus.UNAUTHORIZED, {"error": "not logged in"})
            if request.path in STATIC:  # the login page's own style
                return Response(HTTPStatus.OK, self._static[request.path], STATIC[request.path])
            return _login_page(None, HTTPStatus.OK if request.path == "/login" else HTTPStatus.UNAUTHORIZED)
        if request.path in ("/", "/index.html"):
            return Response(HTTPStatus.OK, self._index)
        if request.path in STATIC:
            return Response(HTTPStatus.OK, self._static[request.path], STATIC[request.path])
        if request.path == "/api/state":
            return await _state(session)
        return Response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    async def _login_form(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            return Response(HTTPStatus.FORBIDDEN, b"cross-site login refused\n", "text/plain")
        form = parse_qs(request.body.decode("utf-8", "replace"))
        credential = form.get("credential", [""])[0].strip()
        if not credential:
            return _login_page("Paste a credential.")
        view = self._connect(credential)
        scope = anyio.CancelScope()

        async def keep() -> None:
            with scope:
                await view.run()

        self._tg.start_soon(keep)
        with anyio.move_on_after(LOGIN_CHECK_S):
            await view.tried.wait()
        if view.client is None:
            scope.cancel()
            why = view.reason if view.tried.is_set() else "the broker did not answer in time"
            return _login_page(f"Not logged in: {why}")
        log.info("web.login", broker=view.address)
        return self._logged_in(self.sessions.open(view, owned=scope))

    def _logged_in(self, session: Session) -> Response:
        cookie = f"{COOKIE}={session.token}; Path=/; HttpOnly; SameSite=Strict"
        return Response(HTTPStatus.SEE_OTHER, b"", headers={"Location": "/", "Set-Cookie": cookie})


async def _state(session: Session) -> Response:
    try:
        return _json(HTTPStatus.OK, {"connected": True, **(await session.view.state())})
    except Unavailable as exc:
        return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"connected": False, "error": str(exc)})


def _json(status: HTTPStatus, data: dict[str, Any]) -> Response:
    return Response(status, json.dumps(data).encode(), "application/json")


def _cookie(request: Request) -> str | None:
    try:
        morsel = SimpleCookie(request.headers.get("cookie", "")).get(COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel is not None else None


def _login_page(error: str | None, status: HTTPStatus = HTTPStatus.UNAUTHORIZED) -> Response:
    message = f'<p class="error">{html.escape(error)}</p>' if error else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gridd: log in</title>
<link rel="stylesheet" href="/app.css"></head>
<body><main class="login"><h1>gridd</h1>{message}
<form method="post" action="/login">
<label for="credential">Credential (gridd1-…), as for <code>gridd login</code></label>
<input id="credential" name="credential" type="password" autocomplete="off" required>
<button type="submit">Log in</button>
</form>
<p>Or open the one-time link <code>gridd web</code> printed when it started.</p></main></body></html>
"""
    return Response(status, page.encode())


async def _send(stream: ByteStream, response: Response, head_only: bool) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stream.send(response.encode(head_only))


async def serve(
    listen: str, main_view: BrokerView, connect: Callable[[str], BrokerView], on_ready: Callable[[str], None]
) -> None:
    """Serve until cancelled; `on_ready(url)` once listening, with the one-time login link (the port the
    system chose, for port 0)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():  # a bare port would listen on every address: say which one
        raise ConfigError(f"--listen wants HOST:PORT (e.g. 127.0.0.1:8080), not {listen!r}")
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=int(port), reuse_port=False)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CannotListen(f"cannot listen on {listen} (--listen): {why}") from None
    sessions = Sessions()
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(main_view.run)
        tg.start_soon(_sweep, sessions)
        bound = listener.extra(SocketAttribute.local_port)
        shown = f"[{host}]" if ":" in host else host
        on_ready(f"http://{shown}:{bound}/?login={sessions.new_nonce()}")
        await listener.serve(WebServer(main_view, sessions, tg, connect).handle, task_group=tg)


async def _sweep(sessions: Sessions) -> None:
    """Sessions expire even if nobody comes back: their own broker connections close."""
    while True:
        await anyio.sleep(SWEEP_S)
        sessions.sweep()
