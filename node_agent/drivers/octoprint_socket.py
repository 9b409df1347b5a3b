"""A size cap on the frames and messages of OctoPrint's push socket.

websocket-client (under octoprint_client's ``SocketClient``) has no option for one: it reads the
length a frame header announces (up to 2**63 bytes), then that many bytes into memory, and joins
continuation frames into one message without bound. A broken or hostile server could make the
agent hold any amount. :func:`cap_frames` swaps an open connection's frame reader and message
joiner for ones that refuse a frame whose header announces more than the cap (before its payload
is read) and a message that would grow past it. The refusal is a websocket error: the library ends
the connection, the driver counts the push socket lost (a running job fails, retryable) and its
next ``connect()`` opens a new one.
"""

from __future__ import annotations

from typing import Any

import websocket

__all__ = ["MAX_PUSH_MESSAGE_BYTES", "PushMessageTooLarge", "cap_frames"]

#: Largest push frame or message read. OctoPrint's largest, the ``history`` sent on connect
#: (temperature history and terminal log), is a few hundred KiB.
MAX_PUSH_MESSAGE_BYTES = 4 << 20


class PushMessageTooLarge(websocket.WebSocketPayloadException):
    """The server announced or sent a frame or message larger than the cap."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"OctoPrint sent a push frame or message of {size} bytes; "
                         f"at most {limit} are read")


class _Cap:
    """The limit, and the refusal once one happened: the stream is out of step after it (a
    payload left unread), so every later read fails too, and the library's close handshake,
    which reads on until a close frame, ends at once instead of reading the payload."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.refused: PushMessageTooLarge | None = None

    def check(self, size: int) -> None:
        if self.refused is None and size > self.limit:
            self.refused = PushMessageTooLarge(size, self.limit)
        if self.refused is not None:
            raise self.refused


class _CappedFrames(websocket.frame_buffer):
    def __init__(self, recv: Any, skip_utf8_validation: bool, cap: _Cap) -> None:
        super().__init__(recv, skip_utf8_validation)
        self.cap = cap

    def recv_frame(self) -> Any:
        self.cap.check(0)
        return super().recv_frame()

    def recv_length(self) -> None:
        super().recv_length()
        self.cap.check(self.length or 0)


class _CappedMessages(websocket.continuous_frame):
    def __init__(self, fire_cont_frame: bool, skip_utf8_validation: bool, cap: _Cap) -> None:
        super().__init__(fire_cont_frame, skip_utf8_validation)
        self.cap = cap

    def add(self, frame: Any) -> None:
        joined = len(self.cont_data[1]) if self.cont_data else 0
        try:
            self.cap.check(joined + len(frame.data))
        finally:
            if self.cap.refused is not None:
                self.cont_data = None
        super().add(frame)


def cap_frames(connection: Any, limit: int = MAX_PUSH_MESSAGE_BYTES) -> None:
    """Cap an open ``websocket.WebSocket`` before its first frame is read (``on_open``).

    Raises:
        AttributeError: the connection is not websocket-client's ``WebSocket`` as known here.
    """
    frames, messages, cap = connection.frame_buffer, connection.cont_frame, _Cap(limit)
    connection.frame_buffer = _CappedFrames(frames.recv, frames.skip_utf8_validation, cap)
    connection.cont_frame = _CappedMessages(messages.fire_cont_frame, messages.skip_utf8_validation, cap)
