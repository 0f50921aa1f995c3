"""The wire protocol's version: bumped only by an incompatible change (see messages.py)."""

PROTOCOL_VERSION = 1
