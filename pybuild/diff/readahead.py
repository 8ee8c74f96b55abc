"""Reading ahead: a decompressing stream read on a thread of its own, a few chunks ahead of the
parser (decompression releases the GIL), with its errors raised in the reading thread."""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any


class ReadAhead:
    """Reads ``stream`` on a thread of its own, ``chunk`` bytes at a time and at most ``depth`` chunks
    ahead, so that decompression (zlib and zstd release the GIL) overlaps with parsing and writing.

    ``close`` stops the thread; an error the stream raised that was not handed over yet (a corrupt
    or mismatching tail found while reading ahead) is raised by ``close``, never dropped.
    """

    def __init__(self, stream: Any, chunk: int = 1 << 20, depth: int = 4) -> None:
        self._stream = stream
        self._chunk = chunk
        self._queue: queue.Queue[tuple[bytes, BaseException | None]] = queue.Queue(depth)
        self._stop = False
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._fill, name="pybuild-read-ahead", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop:
                data = self._stream.read(self._chunk)
                self._put((data, None))
                if not data:
                    return
        except BaseException as exc:  # handed to the reading thread
            self._put((b"", exc))

    def _put(self, item: tuple[bytes, BaseException | None]) -> None:
        while not self._stop:
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def _more(self) -> bool:
        if self._eof:
            return False
        data, error = self._queue.get()
        if error is not None:
            self._eof = True
            raise error
        if not data:
            self._eof = True
            return False
        self._buf, self._pos = data, 0
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = sys.maxsize
        pos = self._pos
        avail = len(self._buf) - pos
        if n <= avail:
            self._pos = pos + n
            if pos == 0 and n == len(self._buf):
                return self._buf
            return self._buf[pos : pos + n]
        parts = [self._buf[pos:]] if avail else []
        got = avail
        self._buf, self._pos = b"", 0
        while got < n and self._more():
            take = min(n - got, len(self._buf))
            parts.append(self._buf if take == len(self._buf) else self._buf[:take])
            self._pos = take
            got += take
        return b"".join(parts)

    def close(self) -> None:
        self._stop = True
        pending: BaseException | None = None
        while self._thread.is_alive() or not self._queue.empty():
            try:
                _, error = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if error is not None and pending is None:
                pending = error
        self._thread.join()
        if pending is not None and sys.exc_info()[0] is None:
            raise pending
