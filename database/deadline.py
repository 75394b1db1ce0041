"""Deadlines for database work that no database can stretch: a frozen server, a cut network.

A server-side `statement_timeout` cannot help when the server itself is stuck, and libpq waits
for an answer without a limit. So every connection in use under a deadline is registered with
the process's watchdog thread; when the deadline passes, the watchdog shuts the connection's
socket down (`shutdown(2)` on a duplicate of its descriptor: the descriptor stays libpq's).
The call blocked on that socket then fails at once ("server closed the connection"), the
caller gets `DeadlineExceeded`, and the connection is closed so that its pool never lends it
again. Closing the socket from another thread is the one way to interrupt a blocked libpq
call that works whatever the server does: a cancel request needs a server that answers.

Before it cuts, the watchdog looks whether the server's answer is already waiting, unread, in
the socket. Then the lateness is this process's (its threads were not scheduled, on a loaded
machine), not the database's: `DeadlineExceeded.answered` tells the caller, which does not
mark the database down for it (database/pools.py).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import psycopg

# How often the watchdog looks for expired deadlines: a deadline is enforced within this.
TICK_SECONDS = 0.02


class DeadlineExceeded(psycopg.OperationalError):
    """The deadline passed; the connection was cut and discarded.

    `answered`: the server's answer was already in the socket, unread, when the deadline
    passed (this process was late to read it); False when the server had sent nothing.
    """

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


@dataclass(frozen=True)
class Deadline:
    """A point in time (time.monotonic) by which some work must be done."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        """The deadline `seconds` from now."""
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left (0 when passed)."""
        return max(0.0, self.at - time.monotonic())

    def within(self, seconds: float) -> "Deadline":
        """This deadline, or `seconds` from now if that comes first."""
        return Deadline(min(self.at, time.monotonic() + seconds))

    def share(self, fraction: float) -> "Deadline":
        """The deadline for `fraction` of the time left (the rest stays for what comes after)."""
        return self.within(self.remaining() * fraction)


class _Guarded:
    __slots__ = ("fd", "at", "fired", "answered")

    def __init__(self, fd: int, at: float) -> None:
        self.fd = fd
        self.at = at
        self.fired = False
        self.answered = False


class Watchdog:
    """One thread per process that cuts the sockets of connections whose deadline passed."""

    def __init__(self, tick: float = TICK_SECONDS) -> None:
        self._tick = tick
        self._lock = threading.Lock()
        self._guarded: dict[int, _Guarded] = {}
        self._keys = itertools.count()
        self._pid: int | None = None

    @contextlib.contextmanager
    def guard(self, conn: psycopg.Connection, deadline: Deadline) -> Iterator[None]:
        """Run the body with `conn`; past `deadline` the connection is cut, DeadlineExceeded raised.

        A connection cut here is closed on the way out, whatever the body did.
        """
        entry = _Guarded(conn.pgconn.socket, deadline.at)
        key = next(self._keys)
        with self._lock:
            if self._pid != os.getpid():  # first use in this process (or a forked child)
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="db-deadline-watchdog", daemon=True).start()
            self._guarded[key] = entry
        try:
            yield
        except psycopg.OperationalError as error:
            if entry.fired and entry.answered:
                raise DeadlineExceeded("the answer came within the deadline but was read too late", True) from error
            if entry.fired:
                raise DeadlineExceeded("the database did not answer within the deadline") from error
            raise
        finally:
            with self._lock:  # after this the watchdog no longer touches the socket
                del self._guarded[key]
            if entry.fired:  # even when the body finished just in time: its socket is cut
                conn.close()

    def _run(self) -> None:
        while True:
            time.sleep(self._tick)
            now = time.monotonic()
            with self._lock:
                for entry in self._guarded.values():
                    if not entry.fired and entry.at <= now:
                        entry.fired = True
                        entry.answered = _readable(entry.fd)
                        _cut(entry.fd)


def _readable(fd: int) -> bool:
    """Whether data waits unread on the socket (the server answered; nobody has read it yet)."""
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):  # closed meanwhile
        return False


def _cut(fd: int) -> None:
    """Shut the socket down for both directions; a blocked recv/poll on it returns at once."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed or not connected: nothing left to interrupt
        pass


WATCHDOG = Watchdog()
