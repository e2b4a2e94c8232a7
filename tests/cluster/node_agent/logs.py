"""Container log files in the CRI format, and the reads ``kubectl logs`` needs.

Each line a container prints is stored as ``<RFC 3339 time> <stream> <F|P> <content>``, the
format container runtimes write for the kubelet: ``F`` ends a line, ``P`` marks a piece of
a line longer than ``MAX_RECORD_BYTES``. Keeping the time per line is what makes the
``timestamps`` and ``sinceTime`` log options possible.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

MAX_RECORD_BYTES = 16 * 1024

# The kubelet's FallbackToLogsOnError uses the last 80 lines of the log, at most 2 KiB.
FALLBACK_MAX_LINES = 80
FALLBACK_MAX_BYTES = 2048


@dataclass(frozen=True)
class LogRecord:
    """One CRI log line: time, stream name, whether it ends a line, and its bytes."""

    time: str
    stream: str
    full: bool
    content: bytes


def format_time(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def parse_record(line: bytes) -> LogRecord | None:
    """Parse one stored line (without its newline); None for a malformed line."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    content = parts[3] if len(parts) == 4 else b""
    return LogRecord(parts[0].decode(), parts[1].decode(), parts[2] == b"F", content)


def encode_record(record: LogRecord) -> bytes:
    tag = b"F" if record.full else b"P"
    return b" ".join((record.time.encode(), record.stream.encode(), tag, record.content)) + b"\n"


class LogWriter:
    """Appends a container's stdout and stderr to one log file, line by line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("ab")
        self._lock = threading.Lock()
        self._pending: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        """Store ``data`` read from ``stream``; an incomplete last line waits for more data."""
        buffer = self._pending.get(stream, b"") + data
        records: list[LogRecord] = []
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            records.extend(self._split(stream, line))
        while len(buffer) >= MAX_RECORD_BYTES:
            records.append(LogRecord(format_time(), stream, False, buffer[:MAX_RECORD_BYTES]))
            buffer = buffer[MAX_RECORD_BYTES:]
        self._pending[stream] = buffer
        self._append(records)

    def flush_stream(self, stream: str) -> None:
        """Store an unterminated last line of ``stream`` as a complete line (at end of output)."""
        buffer = self._pending.pop(stream, b"")
        if buffer:
            self._append([LogRecord(format_time(), stream, True, buffer)])

    def close(self) -> None:
        for stream in list(self._pending):
            self.flush_stream(stream)
        with self._lock:
            self._file.close()

    def _split(self, stream: str, line: bytes) -> Iterator[LogRecord]:
        now = format_time()
        while len(line) > MAX_RECORD_BYTES:
            yield LogRecord(now, stream, False, line[:MAX_RECORD_BYTES])
            line = line[MAX_RECORD_BYTES:]
        yield LogRecord(now, stream, True, line)

    def _append(self, records: list[LogRecord]) -> None:
        if not records:
            return
        with self._lock:
            self._file.write(b"".join(encode_record(r) for r in records))
            self._file.flush()


def read_records(path: Path) -> list[LogRecord]:
    if not path.exists():
        return []
    records = (parse_record(line) for line in path.read_bytes().splitlines())
    return [r for r in records if r is not None]


def render(records: Iterable[LogRecord], timestamps: bool = False) -> bytes:
    """Turn records back into the container's output, as ``kubectl logs`` prints it."""
    out = bytearray()
    at_line_start = True
    for record in records:
        if timestamps and at_line_start:
            out += record.time.encode() + b" "
        out += record.content
        if record.full:
            out += b"\n"
        at_line_start = record.full
    return bytes(out)


def select_records(
    records: list[LogRecord],
    tail_lines: int | None = None,
    since_time: str | None = None,
) -> list[LogRecord]:
    """Keep records at or after ``since_time`` and of the last ``tail_lines`` lines."""
    if since_time is not None:
        records = [r for r in records if r.time >= since_time]
    if tail_lines is None:
        return records
    if tail_lines <= 0:
        return []
    # Count complete lines from the end; a line's partial pieces go with it.
    kept = 0
    index = len(records)
    while index > 0:
        previous = records[index - 1]
        if previous.full:
            if kept == tail_lines:
                break
            kept += 1
        index -= 1
    return records[index:]


def limit_bytes(data: bytes, limit: int | None) -> bytes:
    return data if limit is None else data[:max(limit, 0)]


def fallback_message(path: Path) -> str:
    """Return the end of a log as the kubelet's FallbackToLogsOnError termination message."""
    data = render(select_records(read_records(path), tail_lines=FALLBACK_MAX_LINES))
    return data[-FALLBACK_MAX_BYTES:].decode("utf-8", "replace")
