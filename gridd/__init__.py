"""gridd: a batch grid for the machines an organisation already owns.

Importing this package is cheap on purpose: the CLI runs in loops and scripts, so nothing heavy
(structlog, Textual, SQLite) is imported until a command needs it.
"""

__version__ = "0.1.0"
