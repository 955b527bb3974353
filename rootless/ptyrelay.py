"""The terminal relay for ``prun run -t``: raw mode, copy both ways, resize.

Rules:
- The user's terminal (when stdin is one) is put in raw mode and restored
  on every exit path (``finally``), so Ctrl-C, Ctrl-Z and ^\\ travel to the
  container as bytes and its line discipline turns them into signals.
- The window size is copied to the container's pty at start and on every
  SIGWINCH (the kernel then signals the container's foreground group).
- ``relay`` returns once the supervisor's socket has a message (the
  container exited or failed) and the pty has no more output: everything the
  container wrote is printed before prun exits.
- stdin is forwarded only with ``-i``; EOF on it is passed on as ^D once.
"""

from __future__ import annotations

import errno
import fcntl
import os
import selectors
import signal
import socket
import sys
import termios


def _copy_winsize(src: int, dst: int) -> None:
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return
    fcntl.ioctl(dst, termios.TIOCSWINSZ, size)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def relay(master: int, sock: socket.socket, stdin: bool) -> None:
    tty_in = sys.stdin.fileno() if os.isatty(sys.stdin.fileno()) else None
    out = sys.stdout.fileno()
    saved = termios.tcgetattr(tty_in) if tty_in is not None else None
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    old_wakeup = signal.set_wakeup_fd(wake_w)
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: None)
    sel = selectors.DefaultSelector()
    try:
        if tty_in is not None:
            import tty
            tty.setraw(tty_in, termios.TCSANOW)
            _copy_winsize(tty_in, master)
        sel.register(master, selectors.EVENT_READ, "pty")
        sel.register(sock, selectors.EVENT_READ, "sock")
        sel.register(wake_r, selectors.EVENT_READ, "signal")
        if stdin:
            sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
        done = False
        while not done:
            for key, _ in sel.select():
                what = key.data
                if what == "pty":
                    try:
                        data = os.read(master, 65536)
                    except OSError as exc:
                        if exc.errno != errno.EIO:
                            raise
                        data = b""
                    if not data:
                        sel.unregister(master)
                        done = True
                    else:
                        _write_all(out, data)
                elif what == "sock":
                    # The container is gone; drain what it left in the pty.
                    _drain(master, out)
                    done = True
                elif what == "signal":
                    os.read(wake_r, 512)
                    if tty_in is not None:
                        _copy_winsize(tty_in, master)
                elif what == "stdin":
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fd)
                        _write_all(master, b"\x04")
                    else:
                        _write_all(master, data)
    finally:
        sel.close()
        signal.signal(signal.SIGWINCH, old_winch)
        signal.set_wakeup_fd(old_wakeup)
        os.close(wake_r)
        os.close(wake_w)
        os.close(master)
        if saved is not None:
            termios.tcsetattr(tty_in, termios.TCSADRAIN, saved)


def _drain(master: int, out: int) -> None:
    os.set_blocking(master, False)
    while True:
        try:
            data = os.read(master, 65536)
        except (BlockingIOError, OSError):
            return
        if not data:
            return
        _write_all(out, data)
