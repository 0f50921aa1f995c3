"""The broker's store: the only code that speaks SQL.

`Store` (interface.py) is what the broker asks of it, one async use case each, in batches (the table of
usecases.py). Two backends run them: `SQLiteStore` (sqlite.py), the embedded default, and `PostgresStore`
(pg_store.py) for several brokers on one database; `open_store` (opening.py) opens one by its location.
The modules under it are named for their use case and run inside its transactions: submit, leasing,
completion and expiry (attempts end), control, flow (dependencies and --max-running, which every change
may set off), reads and why, tokens, blobs and bundles, retention and lanes, each written once for both
databases (sql.py says how). Imports go one way: opening -> sqlite, pg_store -> usecases -> use cases ->
flow, refs, sql; nothing here imports the broker's core, and the broker imports only this package's
interface (and open_store where it starts).
"""

from gridd.broker.store.database import SMALL_READ_ROWS as SMALL_READ_ROWS
from gridd.broker.store.interface import Ask as Ask
from gridd.broker.store.interface import JobFacts as JobFacts
from gridd.broker.store.interface import Revoked as Revoked
from gridd.broker.store.interface import Store as Store
from gridd.broker.store.interface import TokenRow as TokenRow
from gridd.broker.store.leasing import LEASE_REPLY_BYTES as LEASE_REPLY_BYTES
from gridd.broker.store.opening import open_store as open_store
from gridd.broker.store.sqlite import SQLiteStore as SQLiteStore
