import threading
import time

import pytest

from vs_sonar_dataset.core.background import BoundedPool, OrderedBackground, prefetched


def test_prefetched_yields_every_item_in_order_from_another_thread():
    threads = []

    def produce():
        for i in range(100):
            threads.append(threading.current_thread())
            yield i

    assert list(prefetched(produce(), depth=3)) == list(range(100))
    assert set(threads) == {threads[0]} and threads[0] is not threading.current_thread()


def test_prefetched_raises_the_producer_error_in_the_consumer():
    def produce():
        yield 1
        raise ValueError("bad shard")

    got = []
    with pytest.raises(ValueError, match="bad shard"):
        for item in prefetched(produce()):
            got.append(item)
    assert got == [1]


def test_prefetched_stops_and_closes_the_producer_when_the_consumer_stops():
    produced, closed = [], threading.Event()

    def produce():
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    for item in prefetched(produce(), depth=2):
        if item == 5:
            break
    assert closed.wait(5)
    assert len(produced) <= 5 + 1 + 2 + 1  # at most depth ahead (and the one being put) when it stopped


def test_ordered_background_runs_calls_in_order_and_waits_at_exit():
    done = []

    def work(i):
        time.sleep(0.001 * (i % 3))
        done.append(i)

    with OrderedBackground(depth=2) as background:
        for i in range(30):
            background.submit(work, i)
    assert done == list(range(30))


def test_ordered_background_raises_the_first_error_and_skips_later_calls():
    done = []

    def work(i):
        if i == 3:
            raise OSError("disk full")
        done.append(i)

    with pytest.raises(OSError, match="disk full"):
        with OrderedBackground(depth=1) as background:
            for i in range(50):
                background.submit(work, i)
    assert done[:3] == [0, 1, 2] and len(done) < 10


def test_bounded_pool_runs_calls_at_once_and_bounds_what_is_pending():
    both_running = threading.Barrier(2, timeout=5)  # broken (an error) unless two calls run at the same time
    done = []
    with BoundedPool(workers=2, depth=2) as pool:
        for i in range(6):
            pool.submit(lambda i=i: (both_running.wait(), done.append(i)))
            assert len(pool._pending) <= 2
    assert sorted(done) == list(range(6))


def test_bounded_pool_raises_a_worker_error_in_the_caller():
    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with BoundedPool(workers=2) as pool:
            pool.submit(fail)
