"""Which broker a peer trusts before it sends a secret, and the CAs it keeps.

Rules: a secret is sent only inside TLS, to a broker whose certificate was checked:
- a credential names its broker's CA by digest. The CA is looked for under the config dir
  ($XDG_CONFIG_HOME/gridd/ca/<digest>.pem) and in the local broker's data dir; found, ssl verifies the
  broker against it (host name checked). Not found, the peer bootstraps: TLS without verification, then
  `check_presented` on the broker's BrokerCA frame (the digest, the TLS certificate issued by that CA,
  valid now, naming the host dialled), and the CA is stored for next time.
- a plain secret (gridd before credentials) names no CA: the broker must verify against a CA already
  kept (by `gridd login`, an earlier credential, or a broker this user ran on this machine: it keeps its
  CA in its user's store at start) or the local broker's; with none, there is no broker to trust, and
  nothing is sent (no trust on first use).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

import msgspec

from gridd.config import ca_store_dir, default_data_dir
from gridd.protocol.credentials import ca_digest
from gridd.protocol.errors import ConnectionLost, GriddError, TransportMismatch, UntrustedBroker

USE_CREDENTIAL = (
    "use the credential string (gridd1-..., in the broker's token file or from `gridd token create`) "
    "as GRIDD_TOKEN or --token-file, or `gridd login` with it"
)


class Pin(msgspec.Struct, frozen=True):  # a Struct, not a dataclass: a dataclass costs start-up ~0.6 ms
    digest: str | None  # the CA the credential names; None for a plain secret
    anchors: str | None  # PEM of the CA(s) ssl verifies the broker against; None: check the BrokerCA frame


def pin_for(digest: str | None, environ: Mapping[str, str]) -> Pin:
    """How to check the broker for a credential naming `digest` (None: a plain secret).
    UntrustedBroker, before anything is dialled, for a plain secret with no CA to check against."""
    local = _read(os.path.join(default_data_dir(environ), "tls", "ca.pem"))
    if digest is not None:
        stored = _read(os.path.join(ca_store_dir(environ), f"{digest}.pem"))
        if stored is None and local is not None and _digest_of(local) == digest:
            stored = local
        return Pin(digest, stored)
    kept = [pem for path in sorted(_list(ca_store_dir(environ))) if (pem := _read(path)) is not None]
    anchors = "".join(kept + ([local] if local else []))
    if not anchors:
        raise UntrustedBroker(
            f"a plain secret cannot check the broker's certificate, and no CA is kept here: {USE_CREDENTIAL}"
        )
    return Pin(None, anchors)


def client_context(pin: Pin) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if pin.anchors is None:  # bootstrap: the certificate is checked against the BrokerCA frame instead
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cadata=pin.anchors)
    return context


def check_presented(pin: Pin, host: str, ca_pem: str, leaf_der: bytes | None, environ: Mapping[str, str]) -> None:
    """Bootstrap: the broker's CA is the one the credential names and issued the TLS certificate shown,
    which is valid now and names `host`; then keep the CA. UntrustedBroker, in one line, otherwise."""
    # Lazy for start-up speed: cryptography is heavy, and only a first contact needs it (every other
    # connection lets ssl verify against the kept CA).
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    assert pin.digest is not None
    try:
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
    except ValueError:
        raise UntrustedBroker(f"the broker at {host} sent a CA that is not a certificate") from None
    if ca_digest(ca.public_bytes(Encoding.DER)) != pin.digest:
        raise UntrustedBroker(
            f"the broker at {host} is not the one your credential names: its CA has another digest "
            f"(credential: {pin.digest[:12]}...); the credential was not sent"
        )
    if leaf_der is None:
        raise UntrustedBroker(f"the broker at {host} showed no certificate")
    leaf = x509.load_der_x509_certificate(leaf_der)
    try:
        leaf.verify_directly_issued_by(ca)
    except Exception:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError: all mean not issued by it
        raise UntrustedBroker(
            f"the broker at {host} showed a certificate its CA did not issue; the credential was not sent"
        ) from None
    now = datetime.datetime.now(datetime.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise UntrustedBroker(f"the broker at {host} showed a certificate that is not valid now (check the clocks)")
    if not _names(leaf, host):
        raise UntrustedBroker(
            f"the broker's certificate does not name {host}: restart the broker with --advertise {host}, "
            "or dial it by a name it has"
        )
    keep_ca(pin.digest, ca_pem, environ)


def keep_ca(digest: str, ca_pem: str, environ: Mapping[str, str]) -> None:
    """Store the CA under the config dir (best effort: without it the next contact bootstraps again)."""
    directory = ca_store_dir(environ)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        tmp = os.path.join(directory, f".{digest}.{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(ca_pem)
        os.replace(tmp, os.path.join(directory, f"{digest}.pem"))
    except OSError:
        pass


def _names(leaf: object, host: str) -> bool:
    import ipaddress

    from cryptography import x509  # lazy for start-up speed, as in check_presented (first contacts only)

    assert isinstance(leaf, x509.Certificate)
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        wanted = host.rstrip(".").lower()
        return any(name.rstrip(".").lower() == wanted for name in sans.get_values_for_type(x509.DNSName))
    return address in sans.get_values_for_type(x509.IPAddress)


def _digest_of(pem: str) -> str | None:
    try:
        return ca_digest(ssl.PEM_cert_to_DER_cert(pem))
    except ValueError:
        return None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _list(directory: str) -> list[str]:
    """The CA files in `directory`: NAME.pem (pathlib's suffix: a bare `.pem` has none)."""
    try:
        return [
            os.path.join(directory, name) for name in os.listdir(directory) if name.endswith(".pem") and name != ".pem"
        ]
    except OSError:
        return []


def tls_refusal(exc: ssl.SSLError, address: str) -> GriddError:
    """What a failed TLS handshake with the broker at `address` means to a person (either connection's)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return UntrustedBroker(
            f"the broker at {address} is not the one your credential names ({exc.verify_message}); "
            "the credential was not sent"
        )
    if exc.reason == "WRONG_VERSION_NUMBER":  # what a plain (--insecure) broker's answer looks like to TLS
        return TransportMismatch(
            f"the broker at {address} does not speak TLS (it runs with --insecure): "
            "give --insecure here too, or restart the broker without it"
        )
    return ConnectionLost(f"TLS with the broker at {address} failed: {exc.reason or exc}")
