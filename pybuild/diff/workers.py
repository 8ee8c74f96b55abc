"""The applier's worker threads: small files and symlinks are created on a few threads while the
stream is parsed (their syscalls release the GIL), each directory's tasks on one thread, with the
queued bytes and tasks bounded."""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..errors import LayerError

BUDGET = 1 << 20  # file bytes queued for the workers at most (more costs memory and gains nothing)
MAX_TASKS = 512  # tasks queued at most


class Pool:
    """A few threads that run creation tasks, each directory's tasks on one thread (in order, so
    threads do not contend for one directory's lock), with the queued file bytes bounded.
    The first error a task raises is kept; the remaining tasks are skipped and it is raised again
    by ``check`` or ``barrier`` in the thread that parses the stream.

    The hand-over costs the parsing thread as little as can be, since it is the applier's
    bottleneck: one C-level queue per thread, and counters that each have one writer (the
    submitter counts what it queued, each worker what it finished), so a submit takes no lock
    unless the queue is full; the condition is used only while the submitter waits.
    """

    def __init__(self, workers: int) -> None:
        self.cond = threading.Condition()
        self.queues: list[queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...], int] | None]] = []
        self.queued_tasks = 0  # written by the submitting thread only
        self.queued_bytes = 0
        self.done_tasks = [0] * workers  # each written by its worker only
        self.done_bytes = [0] * workers
        self.waiting = False  # the submitter waits on ``cond`` for workers to finish tasks
        self.error: BaseException | None = None
        self.threads: list[threading.Thread] = []
        for i in range(workers):
            self.queues.append(queue.SimpleQueue())
            thread = threading.Thread(target=self._work, args=(i,), name=f"pybuild-apply-{i}", daemon=True)
            self.threads.append(thread)
            thread.start()

    def _outstanding(self) -> tuple[int, int]:
        """(tasks, bytes) queued and not finished yet."""
        return self.queued_tasks - sum(self.done_tasks), self.queued_bytes - sum(self.done_bytes)

    def _full(self, cost: int) -> bool:
        tasks, queued = self._outstanding()
        return tasks > 0 and (tasks >= MAX_TASKS or queued + cost > BUDGET)

    def _wait(self, busy: Callable[[], bool]) -> None:
        """Wait while ``busy()``: the workers notify after each task while ``waiting`` is set."""
        with self.cond:
            self.waiting = True
            try:
                while busy():
                    self.cond.wait()
            finally:
                self.waiting = False

    def submit(self, shard: int, fn: Callable[..., None], args: tuple[Any, ...], cost: int) -> None:
        if self._full(cost):
            self._wait(lambda: self._full(cost))
        self.queued_tasks += 1
        self.queued_bytes += cost
        self.queues[shard % len(self.queues)].put((fn, args, cost))
        if self.error is not None:
            self.barrier()

    def _work(self, i: int) -> None:
        get = self.queues[i].get
        done_tasks, done_bytes = self.done_tasks, self.done_bytes
        while True:
            item = get()
            if item is None:
                return
            fn, args, cost = item
            if self.error is None:
                try:
                    fn(*args)
                except BaseException as exc:  # handed to the parsing thread
                    if self.error is None:
                        self.error = exc
            done_bytes[i] += cost
            done_tasks[i] += 1
            # read after the counts are written: a submitter that set ``waiting`` later sees them
            if self.waiting:
                with self.cond:
                    self.cond.notify_all()

    def barrier(self) -> None:
        """Wait until every queued task has run; raise the first error one of them raised."""
        if self._outstanding()[0]:
            self._wait(lambda: self._outstanding()[0] > 0)
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop the threads (queued tasks are skipped after an error)."""
        if self.error is None and sys.exc_info()[0] is not None:
            self.error = LayerError("stopped")
        for q in self.queues:
            q.put(None)
        for thread in self.threads:
            thread.join()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
