"""Several brokers of one grid behind one setting: which to try, in what order, and which this process uses.

`--broker a:7420,b:7420` (GRIDD_BROKER, the config file's `broker`) names brokers that serve the same jobs:
several brokers on one PostgreSQL, or a standby that takes over the data dir of one that died. Rules:
- A connection goes to the first that answers, in the order given. Each is given TRY_EACH_S to connect,
  show its certificate and welcome us; then the next is tried. One pass through the list is one attempt:
  the caller's backoff (client/backoff.py) runs between passes, never between the entries of one.
- Stay: once one has answered, every later connection of this process to the same list starts with it,
  so a reconnection does not flap back to the first of the list while the one in use still serves.
- Move on: when a connection ends by itself (its broker went away), the next attempt starts with the entry
  after that broker's, wrapping round, that one last.
- One address behaves as it always has: no per-try bound, its own error.
Each address is checked as strictly as one alone, with the same credential (client/connection.py does it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

from gridd.protocol.errors import ConfigError, ConnectionLost, GriddError

T = TypeVar("T")

# A broker of a list that has not connected, shown its certificate and welcomed us in this long is passed
# over for the next (a machine that died answers nothing: without a bound, each would cost the full
# connect timeout). Several seconds: a loaded broker on a LAN answers well within it.
TRY_EACH_S = 3.0

# The list (as parsed) -> the index of the broker to try first: the one in use, or the one after the one
# that went away. Shared by every connection this process makes (a worker's, a CLI wait's reconnections,
# a dashboard's); only lists of several brokers are kept.
_first: dict[tuple[str, ...], int] = {}


def order(addresses: Sequence[str]) -> list[str]:
    """The addresses in the order to try them now (see the module's rules)."""
    start = _first.get(tuple(addresses), 0)
    return [*addresses[start:], *addresses[:start]]


def answered(addresses: Sequence[str], address: str) -> None:
    """`address` of the list answered: later connections start with it."""
    if len(addresses) > 1:
        _first[tuple(addresses)] = addresses.index(address)


def went_away(addresses: Sequence[str], address: str) -> None:
    """A connection to `address` ended by itself: the next attempt starts with the broker after it. (If
    another connection has already moved this list on, to a broker that still serves, it stays there.)"""
    key = tuple(addresses)
    if len(addresses) > 1 and order(addresses)[0] == address:
        _first[key] = (addresses.index(address) + 1) % len(addresses)


async def first_answering(addresses: Sequence[str], dial: Callable[[str], Awaitable[T]]) -> T:
    """`dial(address)` for each address in turn (`order`) until one succeeds; its result. When none does:
    the refusal of the first that answered but refused (AuthFailed, UntrustedBroker...: a person must fix
    something), else one ConnectionLost naming why each could not be reached. `dial` must leave nothing
    open when it raises."""
    if len(addresses) == 1:
        return await dial(addresses[0])
    failures: list[GriddError] = []
    for address in order(addresses):
        try:
            with anyio.fail_after(TRY_EACH_S):
                result = await dial(address)
        except TimeoutError:
            failures.append(ConnectionLost(f"the broker at {address} did not answer within {TRY_EACH_S:g}s"))
        except ConfigError:
            raise  # ours, not the broker's: no other broker would do better
        except GriddError as exc:
            failures.append(exc)
        else:
            answered(addresses, address)
            return result
    refusals = [exc for exc in failures if not isinstance(exc, ConnectionLost)]
    if refusals:
        raise refusals[0]
    raise ConnectionLost(f"no broker of {','.join(addresses)} answered: {'; '.join(map(str, failures))}")
