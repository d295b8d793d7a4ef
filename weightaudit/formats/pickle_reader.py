"""The byte reader of the symbolic pickle machine, with CPython's two readings of ``FRAME``.

From a byte string, frames are only an availability check ("bytes mode"); from a file object without ``peek``
(``torch.load``'s ``BytesIO``, or large frames) an opcode that straddles the frame end loses the unread tail of
the frame ("file mode"). The reader records every straddle so the machine can report the differential.
"""

from __future__ import annotations

from typing import Callable

from weightaudit.formats.pickle_values import PickleError

__all__ = ["FrameReader", "find_newline"]


class FrameReader:
    def __init__(self, data: memoryview, pos: int, file_mode: bool) -> None:
        self.data = data
        self.pos = pos
        self.file_mode = file_mode
        self.frame_end = -1
        self.straddles: list[int] = []

    def leave_frame_if_straddling(self, n: int) -> None:
        if self.file_mode and self.pos < self.frame_end < self.pos + n:
            self.straddles.append(self.pos)
            self.pos = self.frame_end

    def read(self, n: int, at: int) -> memoryview:
        self.leave_frame_if_straddling(n)
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise PickleError("pickle data was truncated", at)
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def readline(self, at: int) -> bytes:
        if self.file_mode and self.pos < self.frame_end:
            inside = bytes(self.data[self.pos:self.frame_end]).find(b"\n")
            if inside < 0:
                self.straddles.append(self.pos)
                self.pos = self.frame_end
        idx = find_newline(self.data, self.pos)
        if idx < 0:
            raise PickleError("pickle data was truncated (no newline)", at)
        line = bytes(self.data[self.pos:idx + 1])
        self.pos = idx + 1
        return line

    def frame(self, n: int, at: int, on_short: Callable[[str], None]) -> None:
        if n < 0:
            raise PickleError(f"FRAME length {n} is negative", at)
        if self.pos + n > len(self.data):
            # C's _pickle refuses ("pickle data was truncated"); pickle.py reads the short frame and goes on.
            on_short(f"FRAME declares {n} bytes but only {len(self.data) - self.pos} remain: the C unpickler "
                     "refuses the file, the pure-Python one reads on")
            n = len(self.data) - self.pos
        if not self.file_mode:
            return
        if self.pos < self.frame_end and self.pos + n > self.frame_end:
            self.straddles.append(self.pos)
            self.pos = self.frame_end
        n = min(n, len(self.data) - self.pos)
        if not (self.pos < self.frame_end):
            self.frame_end = self.pos + n


def find_newline(data: memoryview, start: int, window: int = 256) -> int:
    """Index of the next ``\\n`` at or after ``start`` (searched in growing windows, no full copy), or -1."""
    pos = start
    while pos < len(data):
        chunk = bytes(data[pos:pos + window])
        idx = chunk.find(b"\n")
        if idx >= 0:
            return pos + idx
        pos += window
        window = min(window * 2, 1 << 20)
    return -1
