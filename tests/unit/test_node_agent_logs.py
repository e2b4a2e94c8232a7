"""Container log files of the node agent: CRI format, tail, limits, fallback message."""

from pathlib import Path

from tests.cluster.node_agent.logs import (
    MAX_RECORD_BYTES,
    LogRecord,
    LogWriter,
    fallback_message,
    limit_bytes,
    read_records,
    render,
    select_records,
)


def write_log(path: Path, chunks: list[tuple[str, bytes]]) -> None:
    writer = LogWriter(path)
    for stream, data in chunks:
        writer.write(stream, data)
    writer.close()


def test_writer_splits_lines_and_keeps_streams(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    write_log(path, [("stdout", b"one\ntw"), ("stderr", b"err\n"), ("stdout", b"o\nthree")])

    records = read_records(path)

    assert [(r.stream, r.content, r.full) for r in records] == [
        ("stdout", b"one", True),
        ("stderr", b"err", True),
        ("stdout", b"two", True),
        ("stdout", b"three", True),
    ]
    assert render(records) == b"one\nerr\ntwo\nthree\n"


def test_writer_splits_long_line(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    write_log(path, [("stdout", b"x" * (MAX_RECORD_BYTES + 10) + b"\n")])

    records = read_records(path)

    assert [r.full for r in records] == [False, True]
    assert render(records) == b"x" * (MAX_RECORD_BYTES + 10) + b"\n"


def test_select_tail_lines_counts_whole_lines() -> None:
    records = [
        LogRecord("t1", "stdout", True, b"a"),
        LogRecord("t2", "stdout", False, b"b1"),
        LogRecord("t2", "stdout", True, b"b2"),
        LogRecord("t3", "stdout", True, b"c"),
    ]

    assert render(select_records(records, tail_lines=2)) == b"b1b2\nc\n"
    assert render(select_records(records, tail_lines=10)) == b"a\nb1b2\nc\n"
    assert select_records(records, tail_lines=0) == []


def test_select_since_time() -> None:
    records = [LogRecord("2026-01-01T00:00:01Z", "stdout", True, b"old"), LogRecord("2026-01-01T00:00:05Z", "stdout", True, b"new")]

    assert render(select_records(records, since_time="2026-01-01T00:00:03Z")) == b"new\n"


def test_render_timestamps() -> None:
    records = [LogRecord("T1", "stdout", False, b"a"), LogRecord("T1", "stdout", True, b"b"), LogRecord("T2", "stderr", True, b"c")]

    assert render(records, timestamps=True) == b"T1 ab\nT2 c\n"


def test_limit_bytes() -> None:
    assert limit_bytes(b"abcdef", 3) == b"abc"
    assert limit_bytes(b"abc", None) == b"abc"


def test_fallback_message_last_80_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    write_log(path, [("stdout", b"".join(b"line %d\n" % i for i in range(1, 101)))])

    message = fallback_message(path)

    assert message.startswith("line 21\n")
    assert message.endswith("line 100\n")


def test_fallback_message_max_2_kib(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    write_log(path, [("stderr", b"".join(b"%04d" % i + b"y" * 95 + b"\n" for i in range(50)))])

    message = fallback_message(path)

    assert len(message.encode()) == 2048
    assert message.endswith("y\n")


def test_fallback_message_missing_log(tmp_path: Path) -> None:
    assert fallback_message(tmp_path / "absent.log") == ""
