"""The caller's deadline, carried to every call a search makes on its behalf.

The servicer sets it from the gRPC call's remaining time (`Pipeline.search(..., deadline_s=...)`); it lives in a
context variable, which asyncio copies into every task and `asyncio.to_thread` call the search starts, so each client
reads it without it being passed along. Each call's own timeout (Triton's, the cross-encoder's, Milvus's, the profile
store's) becomes the smaller of that timeout and the time left, and a call whose time is already up is not made.
When the caller goes away (cancelled, or past its deadline), gRPC cancels the handler and the search's own tasks
are cancelled with it (orchestrator/search/pipeline.py), each waited for until it has ended (`cancel_and_wait`): no
work of a search outlives it, and no error of one is left unread ("Task exception was never retrieved"). A call
running in a thread cannot be stopped; given up on, it ends on its own and its outcome is dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import TypeVar

from core.errors import DeadlineExceeded

T = TypeVar("T")
# Kept back from the caller's deadline for the answer's way back (serializing it, the network).
MARGIN_S = 0.005

_DEADLINE: ContextVar[float | None] = ContextVar("shoprank_deadline", default=None)


def set_deadline(seconds: float | None):
    """The current context's deadline: `seconds` from now (None: none). Returns the token that resets it."""
    return _DEADLINE.set(None if seconds is None else time.monotonic() + seconds - MARGIN_S)


def reset_deadline(token) -> None:
    _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left until the current deadline (negative when past it); None without one."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def budget(timeout_s: float, what: str) -> float:
    """The timeout for one call: `timeout_s`, or the time left when that is shorter. DeadlineExceeded (naming
    `what`) when no time is left."""
    left = remaining()
    if left is None:
        return timeout_s
    if left <= 0:
        raise DeadlineExceeded(f"the call's deadline passed before {what}")
    return min(timeout_s, left)


async def within(awaitable: Awaitable[T], timeout_s: float, what: str,
                 timed_out: type[Exception] = DeadlineExceeded) -> T:
    """Await `awaitable` within its budget (it is cancelled past it; a thread it runs in finishes on its own):
    DeadlineExceeded when the caller's deadline ran out first, `timed_out` when the call's own timeout did."""
    try:
        limit = budget(timeout_s, what)
    except DeadlineExceeded:
        # Not started: a coroutine is closed (never "never awaited"), a task cancelled and waited for.
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        elif asyncio.isfuture(awaitable):
            await cancel_and_wait(awaitable)
        raise
    try:
        return await asyncio.wait_for(awaitable, limit)  # past `limit`, it cancels the awaitable and waits for it
    except asyncio.TimeoutError:
        error = timed_out if limit >= timeout_s else DeadlineExceeded
        raise error(f"{what} did not answer within {limit * 1000:.0f} ms") from None


async def cancel_and_wait(*tasks: asyncio.Future | None) -> None:
    """Cancel the tasks (None: none) and wait until each has ended, reading what it raised: neither their work nor
    their errors outlive the caller that gave up on them. A task that had ended is only read, without waiting."""
    running = []
    for task in tasks:
        if task is None:
            continue
        if not task.done():
            task.cancel()
            running.append(task)
        elif not task.cancelled():
            task.exception()  # read: never "Task exception was never retrieved"
    if running:
        # Shielded, so that the caller's own cancellation, arriving meanwhile, does not cut the wait short; it is
        # raised once the tasks have ended.
        waiting = asyncio.gather(*running, return_exceptions=True)
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            await waiting
            raise
