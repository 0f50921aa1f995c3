"""Pushing bundles safely from the command line (issue 16, items 11 and 15): a link that leads out of the
pushed directory is never uploaded by accident, and a broker refuses a bundle past its size limit."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Grid


def one_line_failure(grid: Grid, *args: str) -> str:
    done = grid.cli(*args)
    err = done.stderr.decode()
    assert (done.returncode, len(err.splitlines())) == (1, 1), (done.returncode, err)
    return err


def test_a_link_out_of_the_pushed_directory_is_refused_unless_followed(grid: Grid) -> None:
    grid.start_broker()
    grid.start_worker("w1")
    secret = grid.root / "id_ed25519"
    secret.write_text("PRIVATE KEY\n")
    secret.chmod(0o600)
    src = grid.root / "project"
    (src / "conf").mkdir(parents=True)
    (src / "data.txt").write_text("inside\n")
    (src / "conf" / "key").symlink_to(secret)
    (src / "alias.txt").symlink_to("data.txt")  # inside: stored as the file, flag or not

    err = one_line_failure(grid, "bundle", "push", "demo", str(src))
    assert f"{src / 'conf' / 'key'} -> {secret.resolve()}" in err and "--follow-links" in err
    assert "alias.txt" not in err
    assert grid.cli("bundle", "list", "demo").returncode == 1  # nothing was made

    assert grid.ok("bundle", "push", "demo", str(src), "--follow-links").strip() == "demo@1"
    assert grid.ok("submit", "--bundle", "demo", "--wait", "--", "cat", "conf/key") == "PRIVATE KEY\n"

    (src / "conf" / "key").unlink()
    assert grid.ok("bundle", "push", "demo", str(src)).strip() == "demo@2"
    assert grid.ok("submit", "--bundle", "demo", "--wait", "--", "cat", "alias.txt", "data.txt") == "inside\n" * 2


def test_a_bundle_past_the_brokers_size_limit_is_refused_in_one_line(grid: Grid) -> None:
    grid.start_broker(flags=["--max-bundle-bytes", "1000"])
    src = grid.root / "big"
    src.mkdir()
    for name in ("a", "b"):
        (src / name).write_bytes(b"z" * 1000)
    err = one_line_failure(grid, "bundle", "push", "demo", str(src))
    assert "bundle demo holds 2,000 bytes in all; this broker takes at most 1,000" in err
    (src / "b").unlink()
    assert grid.ok("bundle", "push", "demo", str(src)).strip() == "demo@1"


def test_a_link_to_a_file_outside_is_named_even_through_a_link_inside(grid: Grid) -> None:
    grid.start_broker()
    outside = grid.root / "elsewhere.txt"
    outside.write_text("x\n")
    src = grid.root / "p"
    src.mkdir()
    (src / "hop").symlink_to(outside)
    (src / "via-hop").symlink_to("hop")  # inside, but it ends outside
    err = one_line_failure(grid, "bundle", "push", "demo", str(Path(src)))
    assert f"{src / 'hop'} -> {outside.resolve()}" in err and f"{src / 'via-hop'} -> {outside.resolve()}" in err
