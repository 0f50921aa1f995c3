"""The broker's CA and certificate in DATA_DIR/tls across restarts: made on the first start, kept as they
are on the next ones (every credential handed out names the CA), the certificate issued again when the
names it must carry change, when it nears its end, or when another CA made it; a CA whose key is not its
own stops the broker with one line that says what to restore."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from structlog.testing import capture_logs

from gridd.broker.certificates import key_pem, make_ca
from gridd.broker.tls import RENEW_BEFORE_S, TLS_DIR, load_or_make
from gridd.protocol.errors import ConfigError

NAMES = ["localhost", "127.0.0.1", "::1", "grid.example"]


def _issued(logs: list[dict[str, object]]) -> list[object]:
    return [e["reason"] for e in logs if e["event"] == "tls.certificate_issued"]


def _cert(data_dir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((data_dir / TLS_DIR / "broker.pem").read_bytes())


def _names(cert: x509.Certificate) -> list[str]:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(
        [str(n) for n in sans.get_values_for_type(x509.DNSName)]
        + [str(a) for a in sans.get_values_for_type(x509.IPAddress)]
    )


def test_the_first_start_makes_both_and_a_restart_keeps_them_byte_for_byte(tmp_path: Path) -> None:
    with capture_logs() as logs:
        first = load_or_make(tmp_path, NAMES, keep_for_user=False)
    assert _issued(logs) == ["none"]
    assert [e for e in logs if e["event"] == "tls.ca_created"]
    cert_bytes = (tmp_path / TLS_DIR / "broker.pem").read_bytes()
    with capture_logs() as logs:
        again = load_or_make(tmp_path, list(reversed(NAMES)), keep_for_user=False)  # order does not matter
    assert _issued(logs) == []
    assert again.ca_digest == first.ca_digest and again.ca_pem == first.ca_pem
    assert (tmp_path / TLS_DIR / "broker.pem").read_bytes() == cert_bytes
    assert _names(_cert(tmp_path)) == sorted(NAMES)


def test_new_names_get_a_new_certificate_from_the_same_ca(tmp_path: Path) -> None:
    first = load_or_make(tmp_path, NAMES, keep_for_user=False)
    with capture_logs() as logs:
        again = load_or_make(tmp_path, [*NAMES, "10.0.0.7"], keep_for_user=False)
    assert _issued(logs) == ["names_changed"]
    assert again.ca_digest == first.ca_digest  # credentials handed out stay valid
    assert _names(_cert(tmp_path)) == sorted([*NAMES, "10.0.0.7"])


def test_a_certificate_near_its_end_is_issued_again(tmp_path: Path) -> None:
    load_or_make(tmp_path, NAMES, keep_for_user=False)
    tls = tmp_path / TLS_DIR
    ca = x509.load_pem_x509_certificate((tls / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((tls / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    old = _cert(tmp_path)
    now = datetime.datetime.now(datetime.UTC)
    ending = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(seconds=RENEW_BEFORE_S // 2))
        .add_extension(old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tls / "broker.pem").write_bytes(ending.public_bytes(serialization.Encoding.PEM))
    with capture_logs() as logs:
        load_or_make(tmp_path, NAMES, keep_for_user=False)
    assert _issued(logs) == ["expiring"]
    assert (_cert(tmp_path).not_valid_after_utc - now).total_seconds() > RENEW_BEFORE_S


def test_a_certificate_another_ca_made_is_replaced_by_one_of_this_ca(tmp_path: Path) -> None:
    first = load_or_make(tmp_path, NAMES, keep_for_user=False)
    other_ca, other_key = make_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    foreign = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gridd broker")]))
        .issuer_name(other_ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(other_key, hashes.SHA256())
    )
    tls = tmp_path / TLS_DIR
    (tls / "broker.pem").write_bytes(foreign.public_bytes(serialization.Encoding.PEM))
    (tls / "broker.key").write_bytes(key_pem(key))
    with capture_logs() as logs:
        again = load_or_make(tmp_path, NAMES, keep_for_user=False)
    assert _issued(logs) == ["other_ca"]
    assert again.ca_digest == first.ca_digest
    assert _cert(tmp_path).issuer == x509.load_pem_x509_certificate((tls / "ca.pem").read_bytes()).subject


def test_a_ca_whose_key_is_not_its_own_stops_the_start_with_what_to_restore(tmp_path: Path) -> None:
    load_or_make(tmp_path, NAMES, keep_for_user=False)
    tls = tmp_path / TLS_DIR
    (tls / "ca.key").write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1())))
    cert_before = (tls / "broker.pem").read_bytes()
    with pytest.raises(ConfigError, match="is not the key of .*ca.pem; restore the pair"):
        load_or_make(tmp_path, NAMES, keep_for_user=False)
    assert (tls / "broker.pem").read_bytes() == cert_before  # nothing was issued with the wrong key


def test_an_unreadable_ca_stops_the_start_and_says_a_new_one_voids_every_credential(tmp_path: Path) -> None:
    load_or_make(tmp_path, NAMES, keep_for_user=False)
    (tmp_path / TLS_DIR / "ca.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="a new CA voids every credential handed out"):
        load_or_make(tmp_path, NAMES, keep_for_user=False)


def test_a_ca_file_with_more_in_it_serves_and_peers_get_the_certificate_alone(tmp_path: Path) -> None:
    first = load_or_make(tmp_path, NAMES, keep_for_user=False)
    ca = tmp_path / TLS_DIR / "ca.pem"
    ca.write_text(f"copied from broker A\n{ca.read_text()}\n# and a note after it\n")
    again = load_or_make(tmp_path, NAMES, keep_for_user=False)
    assert again.ca_digest == first.ca_digest
    assert again.ca_pem == first.ca_pem
