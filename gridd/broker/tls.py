"""The broker's CA and certificate in DATA_DIR/tls/, made on first start, and its TLS 1.3 context.

Files: ca.pem, ca.key (0600), broker.pem, broker.key (0600), in a 0700 directory. The CA (EC P-256, 10
years) is kept for good: credentials pin its digest, so a new CA voids every credential handed out.
The broker certificate (2 years) is issued again from the same CA when the names it must carry change
(--listen, --advertise) or it is within RENEW_BEFORE_S of its end. Several brokers of one grid may share
the CA by copying ca.pem and ca.key into each one's tls/ directory before its first start.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridd.config import ca_store_dir
from gridd.protocol.credentials import ca_digest
from gridd.protocol.errors import ConfigError
from gridd.protocol.frames import encode_frame
from gridd.protocol.messages import BrokerCA

log = structlog.get_logger()

TLS_DIR = "tls"
CA_DAYS = 3650
CERT_DAYS = 730
RENEW_BEFORE_S = 30 * 86400
_SKEW = datetime.timedelta(hours=1)  # a peer whose clock is a little behind still accepts a new certificate
_WILDCARDS = {"", "0.0.0.0", "::", "*"}


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
    ca_cert, ca_key = _load_or_make_ca(tls_dir)
    cert_path, key_path = tls_dir / "broker.pem", tls_dir / "broker.key"
    why = _reissue_reason(cert_path, key_path, ca_cert, names)
    if why:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(ca_cert, ca_key, key, names)
        _write_private(key_path, key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        log.info("tls.certificate_issued", reason=why, names=",".join(names), path=str(cert_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.num_tickets = 0  # peers never resume a session: no tickets to make and send
    context.load_cert_chain(cert_path, key_path)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    digest = ca_digest(ca_cert.public_bytes(serialization.Encoding.DER))
    if keep_for_user:
        _keep_for_this_user(digest, ca_pem)
    return BrokerTLS(ca_pem, digest, context, encode_frame(BrokerCA(ca_pem=ca_pem)))


def _keep_for_this_user(digest: str, ca_pem: str) -> None:
    """Put the CA (public) in the CA store of the user running the broker, as `gridd login` would: so
    that this user's commands on this machine trust this broker whatever its --data-dir, even with the
    plain secret (`gridd broker --data-dir D & GRIDD_TOKEN=secret gridd submit`). Best effort."""
    directory = ca_store_dir(os.environ)
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


def _load_or_make_ca(tls_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_path, key_path = tls_dir / "ca.pem", tls_dir / "ca.key"
    if ca_path.exists() or key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the broker's CA in {tls_dir} ({exc}); restore ca.pem and ca.key "
                "(a new CA voids every credential handed out: remove both to make one)"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise ConfigError(f"{key_path} is not the key of {ca_path}; restore the pair")
        os.chmod(key_path, 0o600)
        return cert, key
    cert, key = make_ca()
    _write_private(key_path, key_pem(key))
    _write_public(ca_path, cert.public_bytes(serialization.Encoding.PEM))
    log.info("tls.ca_created", path=str(ca_path))
    return cert, key


def make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new CA certificate and its key (what a broker makes on its first start)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"gridd CA {socket.gethostname()}"[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _reissue_reason(cert_path: Path, key_path: Path, ca: x509.Certificate, names: list[str]) -> str | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return "none"
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # noqa: BLE001 - whatever the failure (InvalidSignature, ...): not this CA's
        return "other_ca"
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    if left.total_seconds() < RENEW_BEFORE_S:
        return "expiring"
    if sorted(_san_strings(cert)) != sorted(names):
        return "names_changed"
    return None


def _issue(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey, names: list[str]
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gridd broker")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _san_strings(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v).lower() for v in sans.get_values_for_type(x509.DNSName)] + [
        str(v) for v in sans.get_values_for_type(x509.IPAddress)
    ]


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    """Atomically, 0600 from the first byte."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
