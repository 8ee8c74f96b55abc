"""Running a build's units (one stage, for one platform or for all) in dependency order: one after
another in this process when they form a chain, else up to ``jobs`` at a time, each in a worker
process forked from this one (which holds no other thread).

A worker builds its stage as this process would (the steps already run their commands in child
processes; the store's writers' lock is held here and shared with it) and sends back what it made,
pickled: the stage's state, the build args it read, the warnings it collected. What it and its
commands print goes through two pipes that this process reads, writing each line to its own
stdout or stderr with the unit's label in front (``[linux/arm64] [build] STEP 3/9: RUN ...``),
whole lines only, so that output stays readable. The first unit that fails stops the others; its
error is raised here with its class, message, hints and exit status.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import sys
import traceback
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..errors import PybuildError, StepFailed, collect_warnings, warn
from ..run import die_with_parent

Key = Hashable


@dataclass
class Unit:
    """One stage to build: ``run`` builds it (in whichever process runs it) and returns a picklable
    result; ``done`` records that result here."""

    key: Key
    label: str  # what each of its output lines starts with ("" for none)
    deps: Sequence[Key]
    run: Callable[[], Any]
    done: Callable[[Any], None]


def _ancestors(units: Sequence[Unit]) -> dict[Key, set[Key]]:
    by_key = {u.key: u for u in units}
    found: dict[Key, set[Key]] = {}

    def walk(key: Key) -> set[Key]:
        if key not in found:
            out: set[Key] = set()
            for dep in by_key[key].deps:
                out |= {dep, *walk(dep)}
            found[key] = out
        return found[key]

    for u in units:
        walk(u.key)
    return found


def is_chain(units: Sequence[Unit]) -> bool:
    """Whether every unit depends on every one before it: nothing could run beside anything else."""
    anc = _ancestors(units)
    return all(
        a.key in anc[b.key] or b.key in anc[a.key] for i, a in enumerate(units) for b in units[i + 1 :]
    )


def run_units(units: Sequence[Unit], jobs: int) -> None:
    """Run ``units`` (listed in an order that puts each after its dependencies): in this process
    when they form a chain, else in worker processes, at most ``jobs`` at a time."""
    if is_chain(units):
        for unit in units:
            unit.done(unit.run())
        return
    _Workers(units, max(1, jobs)).run()


# --- the payload a worker sends back ------------------------------------------------------------
def _payload(unit: Unit) -> bytes:
    try:
        with collect_warnings(forward=False) as found:
            result = unit.run()
        return pickle.dumps(("ok", result, found))
    except PybuildError as exc:
        status = exc.exit_status if isinstance(exc, StepFailed) else None
        return pickle.dumps(("error", type(exc).__name__, exc.message, exc.hints, status))
    except KeyboardInterrupt:
        return pickle.dumps(("interrupted",))
    except BaseException:
        return pickle.dumps(("bug", traceback.format_exc()))


def _raise(message: tuple[Any, ...]) -> None:
    """Raise the error a worker reported."""
    if message[0] == "interrupted":
        raise KeyboardInterrupt
    if message[0] == "bug":
        raise RuntimeError(f"a build worker failed:\n{message[1]}")
    _, name, text, hints, status = message
    cls = getattr(errors, name, PybuildError)
    if not (isinstance(cls, type) and issubclass(cls, PybuildError)):
        cls = PybuildError
    if name == StepFailed.__name__:
        raise StepFailed(text, exit_status=status or 1, hints=hints)
    raise cls(text, hints=hints)  # (a ContainerfileError's text names its file and line already)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:  # pragma: no cover - fds 1 and 2 are blocking unless a caller changed them
            select.select([], [fd], [])
        except OSError:
            return  # the reader went away (a closed pipe): the build goes on without its output


@dataclass
class _Worker:
    unit: Unit
    pid: int
    streams: dict[int, int]  # read end -> where its lines go (1 or 2)
    result: int  # the result pipe's read end
    partial: dict[int, bytes] = field(default_factory=dict)
    payload: bytearray = field(default_factory=bytearray)

    @property
    def fds(self) -> list[int]:
        return [*self.streams, self.result] if self.result >= 0 else list(self.streams)


class _Workers:
    def __init__(self, units: Sequence[Unit], jobs: int) -> None:
        self.units = list(units)
        self.jobs = jobs
        self.running: dict[int, _Worker] = {}
        self.finished: set[Key] = set()
        self.started: set[Key] = set()
        self.warned: set[str] = set()

    def run(self) -> None:
        failure: tuple[Any, ...] | None = None
        try:
            while len(self.finished) < len(self.units):
                if failure is None:
                    self._start_ready()
                if not self.running:
                    break
                found = self._wait()
                if failure is None and found is not None:  # the first failure is the build's
                    failure = found
                    self._stop_all()
        except BaseException:
            self._stop_all()
            raise
        finally:
            self._reap_all()
        if failure is not None:
            _raise(failure)

    def _start_ready(self) -> None:
        for unit in self.units:
            if len(self.running) >= self.jobs:
                return
            if unit.key in self.started or not all(d in self.finished for d in unit.deps):
                continue
            self.started.add(unit.key)
            self._start(unit)

    def _start(self, unit: Unit) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                die_with_parent(signal.SIGTERM, parent)  # a killed build leaves no worker behind
                for other in self.running.values():
                    for fd in other.fds:
                        os.close(fd)
                for fd in (out_r, err_r, res_r):
                    os.close(fd)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                os.close(out_w)
                os.close(err_w)
                payload = _payload(unit)
                sys.stdout.flush()
                sys.stderr.flush()
                _write_all(res_w, payload)
            except BaseException:
                code = 70
            finally:
                os._exit(code)
        for fd in (out_w, err_w, res_w):
            os.close(fd)
        self.running[pid] = _Worker(unit, pid, {out_r: 1, err_r: 2}, res_r)

    def _wait(self) -> tuple[Any, ...] | None:
        """Pass on output until a worker ends; the failure it reported, if any."""
        by_fd = {fd: w for w in self.running.values() for fd in w.fds}
        readable, _, _ = select.select(list(by_fd), [], [])
        failure = None
        for fd in readable:
            worker = by_fd[fd]
            data = os.read(fd, 1 << 16)
            if fd == worker.result:
                if data:
                    worker.payload += data
                    continue
                os.close(fd)
                worker.result = -1
            else:
                self._output(worker, fd, data)
            if not worker.fds:
                failure = self._finish(worker) or failure
        return failure

    def _output(self, worker: _Worker, fd: int, data: bytes) -> None:
        target = worker.streams[fd]
        label = worker.unit.label.encode()
        if not data:  # EOF: the rest, as a line of its own
            rest = worker.partial.pop(fd, b"")
            if rest:
                _write_all(target, label + rest + b"\n")
            os.close(fd)
            del worker.streams[fd]
            return
        lines = (worker.partial.pop(fd, b"") + data).split(b"\n")
        if lines[-1]:
            worker.partial[fd] = lines[-1]
        whole = lines[:-1]
        if whole:
            sys.stdout.flush()
            sys.stderr.flush()
            _write_all(target, b"".join(label + line + b"\n" for line in whole))

    def _finish(self, worker: _Worker) -> tuple[Any, ...] | None:
        del self.running[worker.pid]
        _, status = os.waitpid(worker.pid, 0)
        self.finished.add(worker.unit.key)
        try:
            message = pickle.loads(bytes(worker.payload))
        except Exception:
            code = os.waitstatus_to_exitcode(status)
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            name = worker.unit.label.strip() or f"stage {worker.unit.key}"
            return ("error", "RunError", f"the build of {name} {how} before it was done", [], None)
        if message[0] != "ok":
            return tuple(message)
        _, result, found = message
        for text in found:
            if text not in self.warned:
                self.warned.add(text)
                warn(text)
        worker.unit.done(result)
        return None

    def _stop_all(self) -> None:
        for pid in self.running:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def _reap_all(self) -> None:
        for worker in list(self.running.values()):
            for fd in worker.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(worker.pid, 0)
        self.running.clear()
