"""Small helpers that put a second core to work on the release path.

pyarrow's decode and encode, hashlib and numpy release the GIL, so one background thread running them overlaps
with the Python-level work of the main thread (row digests, stats, bookkeeping). Every helper is bounded, so
memory stays at a few items, and re-raises a background error in the caller.
"""

import queue
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield `items` as produced by a background thread that runs up to `depth` items ahead."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce():
        it = iter(items)
        try:
            for item in it:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as e:  # handed to the consumer, raised there
            put((_DONE, e))
        finally:
            getattr(it, "close", lambda: None)()  # a generator's cleanup runs here, not at garbage collection

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:  # done, failed or abandoned by the consumer: stop the producer and wait for it
        stop.set()
        thread.join()


class BoundedPool:
    """Runs submitted calls in `workers` background threads, in any order, at most `depth` of them pending.
    Leaving the block waits for every call. The first error is raised in the caller, at a later submit or at
    exit; the calls still pending then are cancelled."""

    def __init__(self, workers: int = 2, depth: int = 4):
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pool")
        self._pending: deque[Future] = deque()

    def submit(self, fn: Callable, *args) -> None:
        self._pending.append(self._pool.submit(fn, *args))
        while len(self._pending) > self.depth:
            self._pending.popleft().result()

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> "BoundedPool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            for f in self._pending:
                f.cancel()
            self._pool.shutdown(wait=True)


class OrderedBackground(BoundedPool):
    """Runs submitted calls one after another in one background thread, at most `depth` of them pending.

    with OrderedBackground() as bg:
        bg.submit(writer.write_table, table)
    Leaving the block waits for every call. The first error is raised in the caller, at a later submit or at
    exit; the calls still pending then are cancelled.
    """

    def __init__(self, depth: int = 4):
        super().__init__(workers=1, depth=depth)
