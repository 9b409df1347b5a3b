"""Composition root of ``spime-node``: the only place that constructs drivers."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from node_agent.cli import PrintTarget, run
from node_agent.drivers.base import PrinterDriver
from node_agent.protocol import ProtocolSettings

__all__ = ["build_driver", "main"]


def build_driver(target: PrintTarget) -> PrinterDriver:
    """Build the driver a print target needs (serial or OctoPrint).

    Raises:
        ValueError: the printer's settings cannot make a driver.
    """
    from node_agent.drivers.serial import SerialDriver

    printer = target.printer
    if printer is None:
        assert target.port is not None and target.baud is not None
        return SerialDriver(target.name, target.port, target.baud, trace=target.trace)
    firmware = printer.firmware
    if printer.driver == "octoprint":
        from node_agent.drivers.octoprint import OctoPrintDriver  # imports octoprint_client

        assert printer.url is not None and printer.api_key is not None
        return OctoPrintDriver(printer.name, printer.url, printer.api_key,
                               port=printer.port or "AUTO", baud=printer.baud,
                               push_silence_s=printer.push_silence_s, busy_limits=printer.busy,
                               end_sequence=firmware.end_gcode)
    assert printer.port is not None and printer.baud is not None
    settings = ProtocolSettings(rx_buffer_bytes=firmware.rx_buffer_bytes,
                                command_buffer=firmware.command_buffer,
                                end_gcode=firmware.end_gcode)
    return SerialDriver(printer.name, printer.port, printer.baud, settings=settings,
                        busy_limits=printer.busy, trace=target.trace)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spime-node`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--simulate" in args:
        return _simulated(args)
    return run(args, build_driver)


def _simulated(args: list[str]) -> int:
    """``print --simulate``: the same flow against a simulated Marlin on a pty."""
    from node_agent.testing import FirmwareOptions, FirmwareRunner

    runner = FirmwareRunner(FirmwareOptions()).start()
    try:
        def simulated(target: PrintTarget) -> PrinterDriver:
            from node_agent.drivers.serial import SerialDriver

            configured = target.printer.baud if target.printer else None
            baud = target.baud or configured or 115200
            return SerialDriver(target.name, runner.port, baud, trace=target.trace)

        return run(args, simulated)
    finally:
        runner.stop()


if __name__ == "__main__":
    sys.exit(main())
