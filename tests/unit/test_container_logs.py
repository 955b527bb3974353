import json
import threading
import time

import pytest

from rootless.containers import logs
from rootless.errors import UsageError


def test_json_file_lines_keep_streams_apart(tmp_path):
    path = tmp_path / "ctr.log"
    w = logs.LogWriter(str(path))
    w.write("stdout", b"hello\nwor")
    w.write("stderr", b"oops\n")
    w.write("stdout", b"ld\n")
    w.write("stdout", b"no newline")
    w.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["stream"], x["log"]) for x in lines] == [
        ("stdout", "hello\n"), ("stderr", "oops\n"), ("stdout", "world\n"),
        ("stdout", "no newline")]
    assert all(len(x["time"]) == 30 and x["time"].endswith("Z") for x in lines)


def test_long_lines_are_cut(tmp_path):
    path = tmp_path / "ctr.log"
    w = logs.LogWriter(str(path))
    w.write("stdout", b"x" * (logs.MAX_LINE * 2 + 5) + b"\n")
    w.close()
    got = logs.read(str(path))
    assert [len(e.text) for e in got] == [logs.MAX_LINE, logs.MAX_LINE, 6]


def test_rotation_keeps_max_files_and_reader_sees_them_in_order(tmp_path):
    path = tmp_path / "ctr.log"
    w = logs.LogWriter(str(path), max_size=1000, max_files=3)
    for i in range(100):
        w.write("stdout", f"line {i:03d}\n".encode())
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctr.log", "ctr.log.1", "ctr.log.2"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    texts = [e.text for e in logs.read(str(path))]
    assert texts == sorted(texts) and texts[-1] == "line 099\n"
    assert len(texts) < 100  # the oldest were dropped


def test_tail_and_since(tmp_path):
    path = tmp_path / "ctr.log"
    w = logs.LogWriter(str(path))
    w.write("stdout", b"old\n")
    time.sleep(0.01)
    mark = logs.timestamp()
    w.write("stdout", b"new1\nnew2\n")
    w.close()
    assert [e.text for e in logs.read(str(path), tail=1)] == ["new2\n"]
    assert logs.read(str(path), tail=0) == []
    assert [e.text for e in logs.read(str(path), since=mark)] == ["new1\n", "new2\n"]


def test_follow_streams_live_lines_across_rotation(tmp_path):
    path = tmp_path / "ctr.log"
    w = logs.LogWriter(str(path), max_size=200, max_files=2)
    w.write("stdout", b"before\n")
    done = threading.Event()
    seen = []

    def reader():
        for e in logs.follow(str(path), done.is_set, poll=0.01):
            seen.append(e.text)
    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)
    for i in range(30):
        w.write("stdout", f"live {i}\n".encode())
        time.sleep(0.005)
    w.close()
    done.set()
    t.join(5)
    assert seen == [f"live {i}\n" for i in range(30)]


@pytest.mark.parametrize("text, size", [("10m", 10 << 20), ("512k", 512 << 10), ("1g", 1 << 30),
                                        ("100", 100), ("2MB", 2 << 20)])
def test_parse_size(text, size):
    assert logs.parse_size(text) == size


def test_parse_size_rejects():
    with pytest.raises(UsageError, match="max-size=lots"):
        logs.parse_size("lots")


def test_parse_since_forms():
    now = 1_700_000_000.0
    assert logs.parse_since("1700000000", now) == "2023-11-14T22:13:20.000000000Z"
    assert logs.parse_since("10m", now) == logs.timestamp(int((now - 600) * 1e9))
    assert logs.parse_since("1h30m", now) == logs.timestamp(int((now - 5400) * 1e9))
    assert logs.parse_since("2023-11-14T22:13:20Z", now) == "2023-11-14T22:13:20.000000000Z"
    with pytest.raises(UsageError, match="--since 'yesterday'"):
        logs.parse_since("yesterday", now)


def test_follow_from_read_to_loses_nothing_written_in_between(tmp_path):
    path = tmp_path / "ctr.log"
    w = logs.LogWriter(str(path))
    w.write("stdout", b"a\nb\n")
    got, end = logs.read_to(str(path), tail=1)
    w.write("stdout", b"c\n")  # after the read, before following starts
    w.close()
    assert [e.text for e in got] == ["b\n"]
    assert [e.text for e in logs.follow(str(path), lambda: True, poll=0.01, start=end)] == ["c\n"]
