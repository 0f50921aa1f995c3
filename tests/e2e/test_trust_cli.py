"""Trust from the command line, as a person meets it: the broker's credential string taken to another
home, transport mismatches, a credential of another broker, token files others can read, weak secrets,
`gridd login`, and the data dir's modes. Real `gridd` processes over real TLS on 127.0.0.1."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from gridd.broker.certificates import key_pem, make_ca
from tests.conftest import CA_PEM, seed_ca
from tests.e2e.conftest import GRIDD, Grid, clean_env


def one_line(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def own_broker(grid: Grid, *flags: str) -> str:
    """A broker started as a person would: no GRIDD_TOKEN, so it makes its CA and its token file."""
    grid.env.pop("GRIDD_TOKEN", None)
    grid.own_ca = True
    return grid.start_broker(flags=flags)


def elsewhere(grid: Grid, name: str, **extra: str) -> dict[str, str]:
    """The environment of a user on another machine: another home, no local broker, no CA kept."""
    env = {k: v for k, v in clean_env(grid.root / name).items() if k != "GRIDD_TOKEN"}
    env.update(extra)
    return env


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_token_file_taken_to_another_home_submits_and_keeps_the_ca(grid: Grid) -> None:
    own_broker(grid)
    token = (grid.data_dir / "token").read_text().strip()
    assert token.startswith("gridd1-") and mode(grid.data_dir / "token") == 0o600
    env = elsewhere(grid, "desk", GRIDD_TOKEN=token)
    result = grid.cli("submit", "--", "true", env=env)
    assert result.returncode == 0, result.stderr
    digest = token.split("-")[1]
    assert (grid.root / "desk" / "xdg-config" / "gridd" / "ca" / f"{digest}.pem").exists()
    assert grid.cli("status", env=env).returncode == 0  # now verified by ssl against the kept CA


def test_a_first_start_makes_its_ca_and_certificate_and_never_loads_their_library(grid: Grid) -> None:
    """The CA and certificate are made by a child process: `cryptography`, once imported, would stay in the
    broker for its whole life (15 MB of RSS). The broker logs what the child made."""
    own_broker(grid)
    assert (grid.data_dir / "tls" / "ca.key").exists() and (grid.data_dir / "tls" / "broker.pem").exists()
    log = grid.log_text()
    assert "tls.ca_created" in log and "tls.certificate_issued" in log
    mapped = Path(f"/proc/{grid.broker.pid}/maps").read_text()
    assert "_ssl" in mapped  # the libraries it did load are listed there
    assert "cryptography" not in mapped
    token = (grid.data_dir / "token").read_text().strip()
    assert grid.cli("status", env=elsewhere(grid, "desk", GRIDD_TOKEN=token)).returncode == 0


def test_a_ca_whose_key_is_not_its_own_stops_the_broker_in_one_line_that_says_what_to_restore(grid: Grid) -> None:
    """The refusal comes from the child that makes the certificate; the broker says it as its own."""
    _, other_key = make_ca()
    seed_ca(grid.data_dir, CA_PEM, key_pem(other_key))
    grid.own_ca = True  # this data dir's CA, not the test run's
    result = grid.run_broker()
    said = [line for line in result.stderr.decode().splitlines() if line.startswith("gridd:")]
    assert result.returncode == 2
    assert len(said) == 1 and "is not the key of" in said[0] and "restore the pair" in said[0], said
    assert not (grid.data_dir / "tls" / "broker.pem").exists()  # nothing issued with the wrong key


def test_the_data_dir_is_private_and_a_wider_one_is_tightened_and_logged(grid: Grid) -> None:
    grid.data_dir.mkdir(mode=0o755)
    os.chmod(grid.data_dir, 0o755)
    grid.start_broker()
    assert mode(grid.data_dir) == 0o700 and mode(grid.data_dir / "gridd.db") == 0o600
    assert mode(grid.data_dir / "tls") == 0o700 and mode(grid.data_dir / "tls" / "ca.key") == 0o600
    assert "data_dir.tightened" in grid.log_text()
    grid.submit("true")
    for wal in grid.data_dir.glob("gridd.db-*"):
        assert mode(wal) == 0o600, wal


def test_a_credential_of_another_broker_exits_3_in_one_line(grid: Grid, tmp_path: Path) -> None:
    own_broker(grid)
    (tmp_path / "other").mkdir()
    other = Grid(tmp_path / "other")
    try:
        own_broker(other)
        foreign = (other.data_dir / "token").read_text().strip()
    finally:
        other.close()
    result = grid.cli("status", env=elsewhere(grid, "desk", GRIDD_TOKEN=foreign))
    assert result.returncode == 3
    assert "not the one your credential names" in one_line(result.stderr)
    assert "auth.failed" not in grid.log_text()


def test_a_plain_secret_with_no_ca_anywhere_is_refused_before_sending(grid: Grid) -> None:
    own_broker(grid)
    secret = (grid.data_dir / "token").read_text().strip().split("-", 2)[2]
    result = grid.cli("status", env=elsewhere(grid, "desk", GRIDD_TOKEN=secret))
    assert result.returncode == 3
    assert "gridd login" in one_line(result.stderr)


def test_transport_mismatches_are_one_line_saying_how_to_fix_them(grid: Grid) -> None:
    grid.start_broker(flags=["--insecure"])
    result = grid.cli("status")
    assert result.returncode == 3
    assert "does not speak TLS" in one_line(result.stderr) and "--insecure" in one_line(result.stderr)
    assert grid.cli("status", "--insecure").returncode == 0
    grid.env["GRIDD_INSECURE"] = "1"
    assert grid.cli("status").returncode == 0
    grid.close()
    (grid.root / "tls").mkdir()
    tls = Grid(grid.root / "tls")
    try:
        tls.start_broker()
        refused = tls.cli("status", "--insecure")
        assert refused.returncode == 3
        assert "drop --insecure" in one_line(refused.stderr)
    finally:
        tls.close()


def test_a_token_file_others_can_read_is_refused_with_the_chmod_line(grid: Grid) -> None:
    own_broker(grid)
    token_file = grid.root / "cred"
    token_file.write_text((grid.data_dir / "token").read_text())
    token_file.chmod(0o644)
    env = elsewhere(grid, "desk")
    refused = grid.cli("status", "--token-file", str(token_file), env=env)
    assert refused.returncode == 2
    assert one_line(refused.stderr).endswith(f"is readable by others (mode 0644): chmod 600 {token_file}")
    token_file.chmod(0o600)
    assert grid.cli("status", "--token-file", str(token_file), env=env).returncode == 0


def test_a_weak_cluster_secret_is_refused_by_a_broker_reachable_from_the_network(grid: Grid) -> None:
    grid.own_ca = True  # a plain secret: it names no CA
    # Refused before it listens: nothing is bound on the wildcard address.
    result = grid.run_broker("0.0.0.0:0", env={**grid.env, "GRIDD_TOKEN": "letmein"})
    assert result.returncode == 2
    assert "under 128 bits" in result.stderr.decode() and "token_urlsafe(24)" in result.stderr.decode()
    assert result.stderr.decode().strip().splitlines()[-1].startswith("gridd: ")


def test_a_weak_cluster_secret_on_loopback_is_a_warning_and_works(grid: Grid) -> None:
    """Scripts that gave a local broker a short GRIDD_TOKEN before secrets were checked keep running."""
    grid.env = {**grid.env, "GRIDD_TOKEN": "smoke-12345"}
    grid.start_broker()
    assert "event=auth.weak_secret" in grid.log_text()
    assert json.loads(grid.ok("status", "--json"))["workers"] == 0


def test_login_checks_the_credential_then_later_commands_use_it(grid: Grid) -> None:
    addr = own_broker(grid)
    token = (grid.data_dir / "token").read_text()
    env = elsewhere(grid, "desk")
    bad = grid.cli("login", "-", input=token.strip()[:-3].encode() + b"xyz\n", env=env)  # another secret
    assert bad.returncode == 3
    kept = grid.root / "desk" / "xdg-config" / "gridd" / "credential"
    assert not kept.exists()
    ok = grid.cli("login", "-", input=token.encode(), env=env)
    assert ok.returncode == 0, ok.stderr
    assert mode(kept) == 0o600 and json.loads(kept.read_text())["broker"] == addr
    # No GRIDD_TOKEN, no --broker: the login file says both.
    status = subprocess.run([*GRIDD, "status", "--json"], capture_output=True, timeout=30, env=env, cwd=grid.root)
    assert status.returncode == 0, status.stderr
    assert "counts" in json.loads(status.stdout)
