"""A ``multipart/form-data`` request body that streams one file (bounded memory).

``requests`` builds a multipart body in memory (it reads the whole file); a G-code
file may be gigabytes, so the OctoPrint driver hands ``requests`` this file-like
body with a known length instead, and http.client sends it chunk by chunk.
"""

from __future__ import annotations

import uuid
from typing import Protocol

__all__ = ["MultipartBody"]

_UPLOAD_CHUNK = 1 << 16


class _Reader(Protocol):
    def read(self, n: int = -1) -> bytes: ...


class MultipartBody:
    """A ``multipart/form-data`` upload of one file, streamed (requests would read it whole)."""

    def __init__(self, reader: _Reader, file_name: str, size: int) -> None:
        self.boundary = f"spime-{uuid.uuid4().hex}"
        self._head = (f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
                      f'filename="{file_name}"\r\nContent-Type: application/octet-stream'
                      "\r\n\r\n").encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._reader = reader
        self.length = len(self._head) + size + len(self._tail)
        self._phase = 0

    def __len__(self) -> int:
        return self.length

    def read(self, n: int = -1) -> bytes:
        if self._phase == 0:
            self._phase = 1
            return self._head
        if self._phase == 1:
            data = self._reader.read(_UPLOAD_CHUNK)
            if data:
                return data
            self._phase = 2
        if self._phase == 2:
            self._phase = 3
            return self._tail
        return b""
