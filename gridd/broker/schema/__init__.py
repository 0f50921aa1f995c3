"""The store's schema, for both databases, in one place: numbered migrations, the same numbers on both.

`sqlite.MIGRATIONS` is the embedded store's, from 1; `postgresql.MIGRATIONS` starts at 13, SQLite's schema up to
then in one script (the PostgreSQL store came later), and every change after it is one migration in each list,
under one number. Rule: a released migration is never edited.
"""

from gridd.broker.schema.sqlite import FINISHED_WHERE as FINISHED_WHERE
from gridd.broker.schema.sqlite import MIGRATIONS as MIGRATIONS
from gridd.broker.schema.sqlite import migrate as migrate
