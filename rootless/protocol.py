"""Typed messages between the supervisor and the helper (and its children).

Rules:
- One message = one SOCK_SEQPACKET datagram = ``marshal`` of (TAG, fields).
  Fields are plain data (str, int, bytes, None, lists/tuples/dicts of them);
  a file descriptor rides along as SCM_RIGHTS (``Pty``).
- Pure and import-light: the helper runs under ``python -S`` and must not
  pay for dataclasses/typing; records are ``__slots__`` classes.
- The conversation, in order (S = supervisor, H = helper, C = container init
  before exec):
    S→H Spec            the whole container spec (rootless.runspec.build)
    H→S NamespacesReady helper pid, all namespaces exist (network hook)
    C→S Pty             with -t: the pty master, as an fd
    C→S Created         container pid (host view), stopped before exec
    S→H Go              hooks are done (cgroup, network): exec now
    H→S Exited          the container's exit code (128+N for signal N)
    H→S Detached        (with -d, instead of Exited) the helper keeps the
                        container (rootless.containers.helperkeeper)
  Any side may instead send Failed(message, hint, exit_code) and stop.
"""

from __future__ import annotations

import marshal
import socket

MAX = 1 << 20


class Message:
    __slots__: tuple[str, ...] = ()

    def __init__(self, *args, **kw) -> None:
        for name, value in zip(self.__slots__, args):
            setattr(self, name, value)
        for name, value in kw.items():
            setattr(self, name, value)

    def values(self) -> tuple:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.values() == self.values()

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.values()!r}"


class Spec(Message):
    __slots__ = ("spec",)


class NamespacesReady(Message):
    __slots__ = ("pid",)


class Pty(Message):
    __slots__ = ()


class Created(Message):
    __slots__ = ("pid",)


class Go(Message):
    __slots__ = ()


class Exited(Message):
    __slots__ = ("code",)


class Detached(Message):
    """H→S with -d, instead of Exited: the helper now keeps the container."""
    __slots__ = ("pid",)


class Failed(Message):
    __slots__ = ("message", "hint", "exit_code")


TYPES = {cls.__name__: cls for cls in (Spec, NamespacesReady, Pty, Created, Go, Exited,
                                       Detached, Failed)}


class ProtocolError(Exception):
    """The peer sent something that is not a message, or hung up."""


def encode(msg: Message) -> bytes:
    return marshal.dumps((type(msg).__name__, msg.values()))


def decode(data: bytes) -> Message:
    if not data:
        raise ProtocolError("peer closed the connection")
    try:
        tag, values = marshal.loads(data)
        return TYPES[tag](*values)
    except (ValueError, EOFError, TypeError, KeyError) as exc:
        raise ProtocolError(f"malformed message ({exc})") from exc


def send(sock: socket.socket, msg: Message, fds: list[int] | None = None) -> None:
    if fds:
        socket.send_fds(sock, [encode(msg)], fds)
    else:
        sock.send(encode(msg))


def recv(sock: socket.socket) -> tuple[Message, list[int]]:
    """One message and the fds that came with it."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX, 4)
    return decode(data), fds


def expect(sock: socket.socket, kind: type[Message]) -> Message:
    """The next message, which must be ``kind`` (Failed is raised as RemoteFailure)."""
    msg, _ = recv(sock)
    if isinstance(msg, Failed):
        raise RemoteFailure(msg)
    if not isinstance(msg, kind):
        raise ProtocolError(f"expected {kind.__name__}, got {type(msg).__name__}")
    return msg


class RemoteFailure(Exception):
    def __init__(self, msg: Failed) -> None:
        super().__init__(msg.message)
        self.failed = msg
