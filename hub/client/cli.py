"""The ``spime`` command line: designers and customers talk to a hub.

Each command group is a module in :mod:`hub.client.commands` listed in
:data:`COMMAND_MODULES`. A module exposes ``register(subparsers)`` which adds its
parsers and sets ``func=`` on each; ``func(args) -> int`` returns the exit code.

Exit codes (DESIGN.md "Command-line conventions"): 0 success, 1 the hub refused
(the gRPC status name and message go to stderr with what to do next), 2 usage
error (including local input that fails validation before anything is sent).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from hub.client.common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    ClientError,
    HubRefused,
    UsageError,
    log,
)
from hub.client.examples import apply_examples
from hub.errors import local_file_problem

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES = (
    "init", "whoami", "push", "designs", "fork", "proposals", "maintainer",
    "keys", "verify", "export", "demo", "check", "completion",
    "orders", "record", "ledger", "grant", "governance",
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser with every command module registered (or just the module ``only``).

    Raises:
        ImportError: a listed command module is broken (a listed module that
            does not exist yet is skipped, so the CLI works while it is written).
    """
    parser = argparse.ArgumentParser(
        prog="spime", description="Spimeforge: push, remix, verify and export open designs.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES if only is None else (only,):
        module_name = f"hub.client.commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    apply_examples(parser)
    parser.add_argument("--version", action=_Version)
    return parser


class _Version(argparse.Action):
    """``--version``, looked up only when asked (importlib.metadata costs ~50 ms at every start)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib import metadata

        try:
            version = metadata.version("spimeforge")
        except metadata.PackageNotFoundError:
            version = "unknown"
        print(f"{parser.prog} {version}")
        parser.exit()


def _parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Only the command's own module when its name is the command (``spime check``
    then skips grpc and the generated protos, ~0.3 s); every module otherwise."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in COMMAND_MODULES and "-h" not in argv[:1] and "--help" not in argv[:1]:
        parser = build_parser(only=first)
        if first in _commands(parser):
            return parser
    return build_parser()


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    return {name for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name in action.choices}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``spime`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = _parser_for(argv)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
        else:
            code = _run(args)
        sys.stdout.flush()  # here, not at exit, where a closed pipe could no longer be handled
    except BrokenPipeError:  # `spime ... | head`: the reader is gone, nobody is left to tell
        _drop_stdout()
        return EXIT_REFUSED
    return code


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again (as the
    Python docs on SIGPIPE advise)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a stream without a descriptor
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except BrokenPipeError:
        raise
    except UsageError as exc:
        log(f"spime: error: {exc}")
        return EXIT_USAGE
    except HubRefused as exc:
        log(f"spime: hub refused: {exc.code_name}: {exc.details}")
        if exc.hint:
            log(f"spime: {exc.hint}")
        return EXIT_REFUSED
    except ClientError as exc:
        log(f"spime: error: {exc}")
        return EXIT_REFUSED
    except OSError as exc:  # a design folder or file the system refuses (too long, not permitted ...)
        log(f"spime: error: {local_file_problem(exc)}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        log("spime: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
