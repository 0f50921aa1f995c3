"""The flags of `gridd store migrate`: a stopped broker's SQLite grid moved into an empty PostgreSQL database.

Handler: gridd/cli/store_command.py (which loads the store and psycopg; this module does not, so that
`gridd --help` stays cheap).
"""

from __future__ import annotations

import argparse

from gridd.cli.parser import Commands

URL_SCHEMES = ("postgresql://", "postgres://")  # gridd/broker/store/opening.py's, repeated: --help loads no store


def add_store(commands: Commands) -> None:
    command = commands.add("store", "the broker's store: move a data dir's grid into PostgreSQL (migrate)")
    actions = command.add_subparsers(dest="store_action", metavar="ACTION", required=True)
    p = actions.add_parser(
        "migrate",
        help="copy a stopped broker's jobs, history, groups, tokens, schedules, bundles and blobs into PostgreSQL",
        description="Copy the grid of a broker's data dir (its SQLite database) into an empty PostgreSQL database, "
        "in one transaction: all of it or nothing. Refused while a broker runs on the data dir, and into a "
        "database that holds any job already. Then start the brokers with --store URL, each with this data "
        "dir's CA (tls/ca.pem, tls/ca.key) and token: the command says what to copy.",
    )
    p.add_argument(
        "--from",
        dest="data_dir",  # the broker's own setting: --from defaults to where `gridd broker` keeps its grid
        metavar="DATA_DIR",
        help="the broker's data dir (default: the broker's, $XDG_DATA_HOME/gridd, or data_dir in the config file)",
    )
    p.add_argument(
        "--to",
        dest="target",
        required=True,
        type=_url,
        metavar="postgresql://USER@HOST/DB",
        help="the database (a libpq URL; give its password in PGPASSWORD or ~/.pgpass, not on the command line)",
    )


def _url(text: str) -> str:
    if not text.startswith(URL_SCHEMES):
        raise argparse.ArgumentTypeError(
            "--to takes a postgresql://USER@HOST/DB URL"
        )  # not echoed: it may hold a password
    return text
