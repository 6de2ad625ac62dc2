"""The caller's deadline as every call of a search sees it."""

from __future__ import annotations

import asyncio
import math

import pytest

from core.errors import DeadlineExceeded
from orchestrator.deadline import budget, remaining, reset_deadline, set_deadline, within


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
