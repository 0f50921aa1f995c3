"""The broker's TLS 1.3 context, from its CA and certificate in DATA_DIR/tls/ (certificates.py makes and
renews them). A start that finds both as they should be checks them with the ssl module alone: the key
pairs match, the certificate chains to the CA (one handshake in memory), carries exactly the names asked
for and is not near its end. Several brokers of one grid may share the CA by copying ca.pem and ca.key
into each one's tls/ directory before its first start.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gridd.config import ca_store_dir
from gridd.protocol.credentials import ca_digest
from gridd.protocol.errors import ConfigError
from gridd.protocol.frames import encode_frame
from gridd.protocol.messages import BrokerCA

log = structlog.get_logger()

TLS_DIR = "tls"
RENEW_BEFORE_S = 30 * 86400  # a certificate with less left than this is issued again
_WILDCARDS = {"", "0.0.0.0", "::", "*"}
_HANDSHAKE_LEGS = 8  # an in-memory TLS 1.3 handshake takes 2; a bound, not a wait
_MAKER_TIMEOUT_S = 60  # the certificate maker takes a fraction of a second; a bound, not a wait
_REFUSED = 2  # certificates.REFUSED (not imported: that would load `cryptography` here)


@dataclass(frozen=True)
class BrokerTLS:
    ca_pem: str
    ca_digest: str
    context: ssl.SSLContext
    ca_frame: bytes  # the BrokerCA frame every TLS connection starts with, encoded once


def broker_names(listen_host: str, advertise: list[str]) -> list[str]:
    """The names and addresses the broker certificate carries: peers check the one they dialled."""
    names = [] if listen_host in _WILDCARDS else [listen_host]
    names += [*advertise, "localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()]
    seen: dict[str, None] = {}
    for name in names:
        name = name.strip("[]").lower()
        with contextlib.suppress(ValueError):
            name = str(ipaddress.ip_address(name))  # one spelling of each address
        if name:
            seen.setdefault(name, None)
    return list(seen)


def load_or_make(data_dir: Path, names: list[str], *, keep_for_user: bool = True) -> BrokerTLS:
    """The broker's TLS material, made or renewed as needed (logged when it is)."""
    tls_dir = data_dir / TLS_DIR
    tls_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    if _serves_as_is(tls_dir, names):
        os.chmod(tls_dir / "ca.key", 0o600)
    else:
        _make_or_renew(tls_dir, names)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.num_tickets = 0  # peers never resume a session: no tickets to make and send
    context.load_cert_chain(tls_dir / "broker.pem", tls_dir / "broker.key")
    ca_der = _first_certificate(tls_dir / "ca.pem")
    ca_pem = ssl.DER_cert_to_PEM_cert(ca_der)  # as peers are sent it: the certificate alone
    digest = ca_digest(ca_der)
    if keep_for_user:
        _keep_for_this_user(digest, ca_pem)
    return BrokerTLS(ca_pem, digest, context, encode_frame(BrokerCA(ca_pem=ca_pem)))


def _make_or_renew(tls_dir: Path, names: list[str]) -> None:
    """certificates.py's make_or_renew, run in a child process: the `cryptography` package it loads would stay
    in the broker for its whole life (benchmarks/README.md). Its log lines are the broker's; its refusals
    are raised here as they were raised there (ConfigError, OSError), one line each."""
    argv = [sys.executable, "-P", "-m", "gridd.broker.certificates", str(tls_dir), str(RENEW_BEFORE_S), *names]
    try:  # -P: the broker's working directory is not put on the child's import path
        child = subprocess.run(argv, capture_output=True, text=True, timeout=_MAKER_TIMEOUT_S, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot make the broker's certificate in {tls_dir}: {exc}") from exc
    try:
        said = json.loads(child.stdout) if child.returncode in (0, _REFUSED) else None
    except ValueError:
        said = None
    if isinstance(said, list):
        for event, fields in said:
            log.info(event, **fields)
        return
    if isinstance(said, dict) and said.get("error") == "config":
        raise ConfigError(str(said["message"]))
    if isinstance(said, dict) and said.get("error") == "os":
        raise OSError(said.get("errno"), str(said["message"]), said.get("filename"))
    last = (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
    raise ConfigError(f"cannot make the broker's certificate in {tls_dir}: {last}")


def _first_certificate(path: Path) -> bytes:
    """The first certificate of a PEM file (DER), whatever else the file holds (a CA copied from another
    broker's tls/ with more in it)."""
    text = path.read_text()
    start = text.find(ssl.PEM_HEADER)
    end = text.find(ssl.PEM_FOOTER, start)
    if start < 0 or end < 0:
        raise ConfigError(f"no certificate in {path}; restore the broker's ca.pem")
    return ssl.PEM_cert_to_DER_cert(text[start : end + len(ssl.PEM_FOOTER)])


def _serves_as_is(tls_dir: Path, names: list[str]) -> bool:
    """Whether the CA and certificate on disk need nothing done, checked with the ssl module alone: each key
    is its certificate's, the certificate chains to the CA and is valid now, carries exactly `names`, and
    has more than RENEW_BEFORE_S left. Anything else (a file missing or unreadable too) is certificates.py's
    to decide, and to say why."""
    ca, ca_key, cert, key = (tls_dir / name for name in ("ca.pem", "ca.key", "broker.pem", "broker.key"))
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(ca, ca_key)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(cert, key)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False  # the names are compared below, all of them
        client.load_verify_locations(cafile=ca)
        peer = _handshake_in_memory(client, server)
    except (OSError, ssl.SSLError):
        return False
    if peer is None:
        return False
    carried = sorted(_san_string(kind, value) for kind, value in peer.get("subjectAltName", ()))
    left_s = ssl.cert_time_to_seconds(str(peer["notAfter"])) - time.time()
    return carried == sorted(names) and left_s > RENEW_BEFORE_S


def _handshake_in_memory(client: ssl.SSLContext, server: ssl.SSLContext) -> dict[str, Any] | None:
    """The certificate the client verified in a TLS handshake with the server, both in this process."""
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    ends = [client.wrap_bio(client_in, client_out), server.wrap_bio(server_in, server_out, server_side=True)]
    done = [False, False]
    for _ in range(_HANDSHAKE_LEGS):
        for i, end in enumerate(ends):
            if not done[i]:
                with contextlib.suppress(ssl.SSLWantReadError):
                    end.do_handshake()
                    done[i] = True
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done):
            return ends[0].getpeercert()
    return None


def _san_string(kind: str, value: str) -> str:
    """A name as broker_names spells it: a DNS name in lower case, an address in its one spelling."""
    if kind == "IP Address":
        return str(ipaddress.ip_address(value.strip()))
    return value.lower()


def _keep_for_this_user(digest: str, ca_pem: str) -> None:
    """Put the CA (public) in the CA store of the user running the broker, as `gridd login` would: so
    that this user's commands on this machine trust this broker whatever its --data-dir, even with the
    plain secret (`gridd broker --data-dir D & GRIDD_TOKEN=secret gridd submit`). Best effort."""
    directory = Path(ca_store_dir(os.environ))
    path = directory / f"{digest}.pem"
    try:
        if path.exists():
            return
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = directory / f".{digest}.{os.getpid()}"
        tmp.write_text(ca_pem)
        tmp.replace(path)
    except OSError as exc:
        log.info("tls.ca_not_kept_for_user", path=str(path), error=str(exc))
