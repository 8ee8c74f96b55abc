"""The applier's worker threads: small files and symlinks are created on a few threads while the
stream is parsed (their syscalls release the GIL), each directory's tasks on one thread, with the
queued bytes and tasks bounded."""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import LayerError

BUDGET = 4 << 20  # file bytes queued for the workers at most
MAX_TASKS = 512  # tasks queued at most


class Pool:
    """A few threads that run creation tasks, each directory's tasks on one thread (in order, so
    threads do not contend for one directory's lock), with the queued file bytes bounded.
    The first error a task raises is kept; the remaining tasks are skipped and it is raised again
    by ``check`` or ``barrier`` in the thread that parses the stream."""

    def __init__(self, workers: int) -> None:
        self.cond = threading.Condition()
        self.queues: list[deque[tuple[Callable[..., None], tuple[Any, ...], int] | None]] = []
        self.ready: list[threading.Semaphore] = []
        self.tasks = 0
        self.bytes = 0
        self.error: BaseException | None = None
        self.threads: list[threading.Thread] = []
        for i in range(workers):
            self.queues.append(deque())
            self.ready.append(threading.Semaphore(0))
            thread = threading.Thread(target=self._work, args=(i,), name=f"pybuild-apply-{i}", daemon=True)
            self.threads.append(thread)
            thread.start()

    def submit(self, shard: int, fn: Callable[..., None], args: tuple[Any, ...], cost: int) -> None:
        with self.cond:
            while self.tasks and (self.tasks >= MAX_TASKS or self.bytes + cost > BUDGET):
                self.cond.wait()
            self.tasks += 1
            self.bytes += cost
        i = shard % len(self.queues)
        self.queues[i].append((fn, args, cost))
        self.ready[i].release()
        if self.error is not None:
            self.barrier()

    def _work(self, i: int) -> None:
        queue, ready = self.queues[i], self.ready[i]
        while True:
            ready.acquire()
            item = queue.popleft()
            if item is None:
                return
            fn, args, cost = item
            if self.error is None:
                try:
                    fn(*args)
                except BaseException as exc:  # handed to the parsing thread
                    if self.error is None:
                        self.error = exc
            with self.cond:
                self.tasks -= 1
                self.bytes -= cost
                if self.tasks == 0 or self.bytes <= BUDGET // 2:
                    self.cond.notify_all()

    def barrier(self) -> None:
        """Wait until every queued task has run; raise the first error one of them raised."""
        with self.cond:
            while self.tasks:
                self.cond.wait()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop the threads (queued tasks are skipped after an error)."""
        if self.error is None and sys.exc_info()[0] is not None:
            self.error = LayerError("stopped")
        for queue, ready in zip(self.queues, self.ready, strict=True):
            queue.append(None)
            ready.release()
        for thread in self.threads:
            thread.join()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
