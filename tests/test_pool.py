"""The pool's connection slots: a semaphore whose uncontended take is a plain call.

Fan-outs wider than the pool are tested over sockets in ``test_faults.py``; these pin the
queueing and cancellation rules that are hard to provoke there.
"""

from __future__ import annotations

import asyncio

from whop_async._pool import Slots


async def test_free_slots_are_taken_at_once_and_then_refused() -> None:
    slots = Slots(2)

    assert slots.take() is True
    assert slots.take() is True
    assert slots.take() is False
    slots.give()
    assert slots.take() is True


async def test_waiters_get_slots_first_come_first_served_and_take_cannot_jump_the_line() -> None:
    slots = Slots(1)
    assert slots.take()
    served: list[int] = []

    async def wait_then_note(number: int) -> None:
        await slots.wait()
        served.append(number)

    waiters = [asyncio.create_task(wait_then_note(number)) for number in range(3)]
    await asyncio.sleep(0)

    slots.give()
    assert slots.take() is False  # the slot went to the first waiter, not to the free count
    await asyncio.sleep(0)
    assert served == [0]
    slots.give()
    slots.give()
    await asyncio.gather(*waiters)
    assert served == [0, 1, 2]
    slots.give()
    assert slots.take() is True
    assert slots.take() is False


async def test_a_waiter_cancelled_in_line_leaves_it_and_the_next_one_is_served() -> None:
    slots = Slots(1)
    assert slots.take()
    first = asyncio.create_task(slots.wait())
    second = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)

    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    slots.give()

    await asyncio.wait_for(second, timeout=1.0)
    assert first.cancelled()
    assert slots.take() is False  # the one slot is the second waiter's


async def test_a_waiter_cancelled_just_after_being_handed_a_slot_passes_it_on() -> None:
    slots = Slots(1)
    assert slots.take()
    first = asyncio.create_task(slots.wait())
    second = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)

    slots.give()  # handed to the first waiter, which has not run yet
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)

    await asyncio.wait_for(second, timeout=1.0)  # the slot was passed on, not lost
    assert first.cancelled()
    slots.give()
    assert slots.take() is True  # and giving it back frees it
