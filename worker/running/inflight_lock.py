"""The per-conversation in-flight lock: one task run of a conversation's close at a time, in the whole fleet.

The lock outlives the task's hard time limit (``WorkerSettings.inflight_lock_seconds``) and is never re-entered, so no
second copy of a close (even one with the same task id, redelivered) runs while the first still can. Its token names
the task and the process that runs it: ``<task id>|<pid namespace>:<pid>:<start time>``, the namespace being the
kernel's boot id and the PID namespace's inode (``/proc``).

A run that dies holding the lock (a SIGKILL, a pool process killed by a hard time limit, or terminated by Celery when
the broker connection is lost, with Redis unreachable for the release) used to make its redelivered copy wait for
the lock to expire: ``TASK_TIME_LIMIT_SECONDS`` + 1 s, 61 s at the defaults. Now a copy that finds the lock held
takes it over when the holder is **provably** gone: the holder ran in this process's PID namespace on this boot of
this kernel, and no process with its PID and start time exists. A live holder, a holder in another namespace or on
another machine (nothing can be proved there), an unreadable ``/proc`` or a token without a holder (written before
this format) all mean "wait", as before. The take-over is a compare-and-set on the token the copy read, so of two
copies that race for it one wins. A process that no longer exists sends nothing more; a PATCH it had sent before
it died is the case of a PATCH whose answer was lost, which the progress marker and the PATCH claim already cover
(the copy reads the conversation first).
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import redis

from genesys_closer.shared.locks import OwnedLock

PROC = Path("/proc")
SEPARATOR = "|"


@dataclass(frozen=True)
class Holder:
    """A process, named so that another process of the same PID namespace can tell whether it still exists."""

    namespace: str
    pid: int
    started: int  # the process's start time, in clock ticks since boot (/proc/<pid>/stat, field 22)

    def token_part(self) -> str:
        return f"{self.namespace}:{self.pid}:{self.started}"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        namespace, _, rest = text.rpartition(":")
        namespace, _, pid = namespace.rpartition(":")
        with contextlib.suppress(ValueError):
            if namespace:
                return cls(namespace, int(pid), int(rest))
        return None


def start_time(pid: int, proc: Path = PROC) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), or None when it cannot be read."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])  # fields after "(comm)" start at field 3 (state)
    except (OSError, ValueError, IndexError):
        return None


@functools.cache
def namespace_here(proc: Path = PROC) -> str | None:
    """This kernel boot's id and this process's PID namespace, or None where /proc does not tell."""
    try:
        boot = (proc / "sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.stat(proc / "self/ns/pid")
    except OSError:
        return None
    return f"{boot}/{pid_ns.st_dev}-{pid_ns.st_ino}"


def holder_here() -> Holder | None:
    """This process as a lock holder, or None where its existence could not be checked by others."""
    return _holder(os.getpid())


@functools.cache
def _holder(pid: int) -> Holder | None:  # by pid: read once per process, a forked pool process has its own
    namespace = namespace_here()
    started = start_time(pid)
    if namespace is None or started is None:
        return None
    return Holder(namespace, pid, started)


def is_gone(holder: Holder) -> bool:
    """True only when ``holder`` provably no longer exists: it ran in this PID namespace, and its PID is free or now
    belongs to a process started at another time. Anything unsure (another namespace, /proc unreadable) is False."""
    if holder.namespace != namespace_here():
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists (another user's)
        pass
    started = start_time(holder.pid)
    return started is not None and started != holder.started


def token_for(task_id: str, holder: Holder | None) -> str:
    """The lock's token: the task id, then the holder (empty when unknown, so that a task id never reads as one)."""
    return f"{task_id}{SEPARATOR}{holder.token_part() if holder is not None else ''}"


def holder_of(token: str) -> Holder | None:
    """The holder named in a lock token (after the last separator: a task id cannot forge what follows it)."""
    _, separator, part = token.rpartition(SEPARATOR)
    return Holder.parse(part) if separator else None


class InflightLock:
    """The in-flight lock of one conversation, for one task run."""

    def __init__(self, client: redis.Redis, name: str, ttl_seconds: float) -> None:
        self.lock = OwnedLock(client, name, ttl_seconds)

    def acquire(self, task_id: str) -> bool:
        """Take the lock for this task run unless anyone holds it, or take it over from a holder that is provably
        gone (see the module's docstring). Never re-entered: the same task id held by a live process waits."""
        def gone(held: str) -> bool:
            holder = holder_of(held)
            return holder is not None and is_gone(holder)

        return self.lock.acquire_or_take_over(token_for(task_id, holder_here()), gone)

    def release(self) -> bool:
        return self.lock.release()
