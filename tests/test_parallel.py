"""``synthcore.parallel.ordered_map``: results in order, and the items drawn only a bounded way ahead."""

from __future__ import annotations

import threading
import time

from synthcore.parallel import ordered_map


def test_results_come_in_the_items_order_whatever_finishes_first():
    def slow_for_small(n: int) -> tuple[int, str]:
        time.sleep(0.02 * (5 - n % 5))
        return n, threading.current_thread().name

    results = list(ordered_map(slow_for_small, range(20), threads=4))
    assert [n for n, _ in results] == list(range(20))
    assert len({name for _, name in results}) > 1, "spread over threads"


def test_items_are_drawn_at_most_two_per_thread_ahead_of_the_results_taken():
    drawn = []

    def items():
        for n in range(100):
            drawn.append(n)
            yield n

    taken = 0
    for _ in ordered_map(lambda n: n, items(), threads=3):
        taken += 1
        assert len(drawn) - taken <= 2 * 3
    assert taken == 100


def test_one_thread_runs_on_the_calling_thread():
    assert set(ordered_map(lambda _: threading.current_thread(), range(3), threads=1)) == {threading.current_thread()}
