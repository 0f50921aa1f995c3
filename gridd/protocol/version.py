"""The wire protocol's version: bumped only by an incompatible change (see messages.py).

2: the peer authenticates with the secret of its credential in Hello (inside TLS); version 1's HMAC
challenge (Challenge, Authenticate) is gone.
"""

PROTOCOL_VERSION = 2
