"""Making and renewing the broker's CA and certificate (the `cryptography` package): what a first start, a
change of names or a certificate near its end needs. A start that finds both as they should be checks them
with the ssl module alone (tls.py) and never loads this module (about 12 MB and 40 ms of a start). One that
must make or renew runs it in a child process, `python -m gridd.broker.certificates` (tls.py), so that the
broker never loads `cryptography` either: a library, once imported, stays in the process for good (15 MB of
RSS on a broker's first start, benchmarks/README.md).

The child's protocol: arguments TLS_DIR RENEW_BEFORE_S NAME...; on success it prints what it did, a JSON
list of [event, {field: value}] for the broker to log; on a refusal (ConfigError: a CA that cannot be read,
a key that is not its CA's) or a file it cannot read or write (OSError) it prints one JSON object,
{"error": "config" or "os", "message": ..., "errno": ..., "filename": ...}, and exits with 2.

Files (in DATA_DIR/tls, a 0700 directory): ca.pem, ca.key (0600), broker.pem, broker.key (0600). The CA (EC
P-256, 10 years) is kept for good: credentials pin its digest, so a new CA voids every credential handed
out. The broker certificate (2 years) is issued again from the same CA when the names it must carry change
(--listen, --advertise), when another CA made it, or when it is near its end (tls.RENEW_BEFORE_S).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridd.protocol.errors import ConfigError

CA_DAYS = 3650
CERT_DAYS = 730
_SKEW = datetime.timedelta(hours=1)  # a peer whose clock is a little behind still accepts a new certificate


Done = list[tuple[str, dict[str, str]]]  # what was made, as the log lines that say so: (event, fields)
REFUSED = 2  # the child's exit status for a refusal it explained on stdout


def make_or_renew(tls_dir: Path, names: list[str], renew_before_s: float) -> Done:
    """The CA (made if there is none; ConfigError if it cannot be read or its key is not its own), and a
    certificate for `names` from it, issued again if it needs to be: with less than `renew_before_s` left,
    among other reasons. Returns what it made, with why, for the broker to log."""
    done: Done = []
    ca_cert, ca_key = _load_or_make_ca(tls_dir, done)
    cert_path, key_path = tls_dir / "broker.pem", tls_dir / "broker.key"
    why = _reissue_reason(cert_path, key_path, ca_cert, names, renew_before_s)
    if why:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(ca_cert, ca_key, key, names)
        _write_private(key_path, key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        done.append(("tls.certificate_issued", {"reason": why, "names": ",".join(names), "path": str(cert_path)}))
    return done


def main(argv: list[str]) -> int:
    """The child process tls.py starts: make_or_renew, and what came of it on stdout (module docstring)."""
    tls_dir, renew_before_s, *names = argv
    try:
        done = make_or_renew(Path(tls_dir), names, float(renew_before_s))
    except ConfigError as exc:
        print(json.dumps({"error": "config", "message": str(exc)}))
        return REFUSED
    except OSError as exc:
        print(
            json.dumps(
                {"error": "os", "message": exc.strerror or str(exc), "errno": exc.errno, "filename": exc.filename}
            )
        )
        return REFUSED
    print(json.dumps(done))
    return 0


def _load_or_make_ca(tls_dir: Path, done: Done) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
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
    done.append(("tls.ca_created", {"path": str(ca_path)}))
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


def _reissue_reason(
    cert_path: Path, key_path: Path, ca: x509.Certificate, names: list[str], renew_before_s: float
) -> str | None:
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
    if left.total_seconds() < renew_before_s:
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
