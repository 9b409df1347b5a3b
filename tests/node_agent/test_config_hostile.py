"""Hostile node configs end in ConfigError, and what loads is what the filter enforces."""

from __future__ import annotations

import io
import os
import re
import threading
import tomllib
from pathlib import Path
from typing import Any, NoReturn

import pytest

from node_agent.cli import run
from node_agent.config import ConfigError, load_config, parse_config
from node_agent.safety import enforce, limits_for
from tests.node_agent.test_config import EXAMPLE


def data() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE)


@pytest.mark.parametrize(("key", "safety"), [("max_hotend_c", False), ("max_bed_c", False),
                                             ("max_dwell_s", True)])
def test_a_zero_limit_is_refused_when_loading(key: str, safety: bool) -> None:
    config = data()
    printer = config["printers"][0]
    (printer.setdefault("safety", {}) if safety else printer)[key] = 0
    with pytest.raises(ConfigError, match=rf"{key}: must be between 1 and"):
        parse_config(config, "node.toml")


@pytest.mark.parametrize("nested", ["x = " + "[" * 5000 + "]" * 5000,
                                    "x = " + "{a=" * 3000 + "1" + "}" * 3000])
def test_deeply_nested_toml_is_a_config_error(tmp_path: Path, nested: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(nested + "\n" + EXAMPLE, encoding="utf-8")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)


@pytest.mark.parametrize(("written", "word", "line"), [("G029", "G29", "G29"),
                                                       ("m0600", "M600", "M600"),
                                                       ("g0028", "G28", "G28 X")])
def test_forbidden_words_are_normalised_as_marlin_reads_them(written: str, word: str,
                                                            line: str) -> None:
    config = data()
    config["printers"][0]["safety"] = {"forbidden_gcode": [written]}
    limits = limits_for(parse_config(config, "node.toml").printers[0])
    assert limits.forbidden == (word,)
    with pytest.raises(Exception, match="is refused on this printer"):
        enforce(["G28", line], limits)


def test_a_code_beyond_marlins_range_is_not_a_word() -> None:
    config = data()
    config["printers"][0]["safety"] = {"forbidden_gcode": ["M65648"]}
    with pytest.raises(ConfigError, match="'M65648' is not a G-code word"):
        parse_config(config, "node.toml")


@pytest.mark.parametrize(("where", "key", "value", "why"), [
    ("node", "location", "Lab\u202e", "U+202E"),
    ("node", "location", "x" * 129, "at most 128"),
    ("printer", "model", "MK3\x1b[2J", "U+001B"),
    ("printer", "model", "m" * 65, "at most 64"),
    ("printer", "slicer_profile", "prusa\tmk3s", "U+0009"),
    ("printer", "materials", ["PLA", "\u2066PETG"], "U+2066"),
    ("printer", "materials", ["P" * 33], "at most 32"),
])
def test_text_the_hub_shows_customers_is_checked_as_the_hub_does(where: str, key: str, value: object,
                                                                 why: str) -> None:
    """The hub refuses a Hello with such text: the agent says so when it loads, not on every reconnect."""
    config = data()
    (config["node"] if where == "node" else config["printers"][0])[key] = value
    with pytest.raises(ConfigError, match=rf"{key}.*{re.escape(why)}"):
        parse_config(config, "node.toml")


def _fifo_fed(path: Path, text: str) -> threading.Thread:
    """A FIFO at ``path`` whose writer waits for a reader and then gives it ``text``: the old
    reader took it as a config (or waited for a writer forever)."""
    os.mkfifo(path)

    def feed() -> None:
        try:
            path.write_text(text, encoding="utf-8")
        except BrokenPipeError:  # the reader looked and closed without reading
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    return writer


def _release(path: Path, writer: threading.Thread) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # the writer's open returns; its text fits the pipe
    try:
        writer.join()
    finally:
        os.close(fd)


def test_a_fifo_config_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    writer = _fifo_fed(path, EXAMPLE)
    try:
        with pytest.raises(ConfigError, match=f"{re.escape(str(path))}: not a regular file"):
            load_config(path)
    finally:
        _release(path, writer)


def test_a_device_config_is_refused_without_reading_it() -> None:
    with pytest.raises(ConfigError, match="/dev/zero: not a regular file"):
        load_config("/dev/zero")


def test_an_oversized_config_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(EXAMPLE + "#" * (2 << 20) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))}: over 1048576 bytes"):
        load_config(path)


def test_status_with_a_fifo_config_answers_with_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    writer = _fifo_fed(path, EXAMPLE)
    out, err = io.StringIO(), io.StringIO()
    try:
        code = run(["status", "--config", str(path)], _no_driver, stdout=out, stderr=err)
    finally:
        _release(path, writer)
    assert code == 2 and "not a regular file" in err.getvalue() and out.getvalue() == ""


def _no_driver(target: object) -> NoReturn:
    raise AssertionError("status opens no printer")
