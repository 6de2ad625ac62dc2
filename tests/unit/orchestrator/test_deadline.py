"""The caller's deadline as every call of a search sees it, and the work given up on when it runs out."""

from __future__ import annotations

import asyncio
import gc
import math
import threading
import warnings

import pytest

from core.errors import DeadlineExceeded
from orchestrator.deadline import budget, cancel_and_wait, remaining, reset_deadline, set_deadline, within


def test_without_a_deadline_each_call_keeps_its_own_timeout():
    assert remaining() is None
    assert budget(2.0, "Triton") == 2.0


def test_a_deadline_shortens_the_calls_and_refuses_one_past_it():
    token = set_deadline(0.5)
    try:
        assert 0.4 < remaining() < 0.5
        assert budget(2.0, "Triton") < 0.5 and budget(0.1, "Triton") == 0.1
    finally:
        reset_deadline(token)
    token = set_deadline(-1.0)
    try:
        with pytest.raises(DeadlineExceeded, match="before Milvus"):
            budget(2.0, "Milvus")
    finally:
        reset_deadline(token)
    assert remaining() is None


def test_tasks_and_threads_started_under_a_deadline_see_it():
    async def in_a_task():
        return remaining()

    async def scenario():
        token = set_deadline(1.0)
        try:
            in_task = await asyncio.create_task(in_a_task())
            in_thread = await asyncio.to_thread(remaining)
        finally:
            reset_deadline(token)
        return in_task, in_thread

    in_task, in_thread = asyncio.run(scenario())
    assert 0.9 < in_task <= 1.0 and 0.9 < in_thread <= 1.0


def test_within_gives_up_at_the_deadline_and_cancels_the_wait():
    async def scenario():
        token = set_deadline(0.05)
        slow = asyncio.create_task(asyncio.sleep(5))
        try:
            with pytest.raises(DeadlineExceeded, match="the profile store did not answer"):
                await within(slow, math.inf, "the profile store")
        finally:
            reset_deadline(token)
        await asyncio.sleep(0)
        return slow.cancelled()

    assert asyncio.run(scenario())


def test_within_past_the_deadline_starts_no_call_and_leaves_no_coroutine_unawaited():
    calls: list[int] = []

    async def scenario():
        token = set_deadline(-1.0)
        try:
            with pytest.raises(DeadlineExceeded, match="before Milvus"):
                await within(asyncio.to_thread(calls.append, 1), 2.0, "Milvus")
        finally:
            reset_deadline(token)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(scenario())
        gc.collect()  # a coroutine never awaited warns when it is collected
    assert [str(warning.message) for warning in caught] == [] and calls == []


def test_within_past_the_deadline_cancels_the_task_it_was_given_and_waits_for_it():
    async def scenario():
        token = set_deadline(-1.0)
        slow = asyncio.create_task(asyncio.sleep(5))
        try:
            with pytest.raises(DeadlineExceeded):
                await within(slow, math.inf, "the profile store")
        finally:
            reset_deadline(token)
        return slow.done() and slow.cancelled()

    assert asyncio.run(scenario())


def test_a_thread_given_up_on_ends_without_its_error_reaching_anyone():
    """A call in a thread that outlives its timeout cannot be stopped; its error, when it comes, is nobody's."""
    release, reported = threading.Event(), []

    def stuck() -> None:
        release.wait(5)
        raise RuntimeError("the server answered too late")

    async def scenario():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        with pytest.raises(TimeoutError, match="Milvus"):
            await within(asyncio.to_thread(stuck), 0.05, "Milvus", timed_out=TimeoutError)
        release.set()
        await asyncio.sleep(0.1)  # the thread ends, raising, while the loop still runs

    asyncio.run(scenario())
    gc.collect()
    assert reported == []


def test_cancel_and_wait_ends_the_tasks_and_retrieves_what_they_raised():
    reported = []

    async def fails():
        raise RuntimeError("Triton is down")

    async def scenario():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        failed, slow = asyncio.create_task(fails()), asyncio.create_task(asyncio.sleep(5))
        await asyncio.sleep(0)  # `failed` has ended, its error not yet read by anyone
        await cancel_and_wait(failed, slow, None)
        return failed.done() and slow.cancelled()

    assert asyncio.run(scenario())
    gc.collect()
    assert reported == []
