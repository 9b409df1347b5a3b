"""``--listen`` accepts ASCII HOST:PORT only: other Unicode digits are usage errors, never
a traceback (``²``) or a silently different port (``٣``)."""

from __future__ import annotations

import pytest

from hub.config import parse_listen
from hub.errors import InvalidArgument


@pytest.mark.parametrize("text", ["127.0.0.1:\u00b2", "127.0.0.1:\u0663", "127.0.0.1:\uff17\uff14",
                                  "127.0.0.1:\U0001d7ce", "127.0.0.1:" + "0" * 5000 + "1",
                                  "127.0.0.1:65536", "127.0.0.1:", ":80", "127.0.0.1:+80",
                                  "127.0.0.1: 80", "127.0.0.1:-1"])
def test_a_port_that_is_not_ascii_digits_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="expected HOST:PORT"):
        parse_listen(text)


@pytest.mark.parametrize(("text", "expected"), [("127.0.0.1:7443", ("127.0.0.1", 7443)),
                                                ("[::1]:0", ("::1", 0)),
                                                ("localhost:00080", ("localhost", 80))])
def test_ascii_host_port_is_accepted(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected
