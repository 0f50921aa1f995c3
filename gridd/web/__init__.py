"""`gridd web`: the dashboard as a page of its own, served over plain HTTP by a tiny anyio server.

It may import gridd.client, gridd.protocol, gridd.config and gridd.printable (like the tui), nothing else.
"""
