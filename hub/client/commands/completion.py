"""``spime completion bash|zsh``: a shell completion script generated from the parser (shtab)."""

from __future__ import annotations

import argparse
import sys

from hub.client.common import EXIT_OK

SHELLS = ("bash", "zsh")
EXAMPLE = """example:
  spime completion bash > ~/.local/share/bash-completion/completions/spime
  spime completion zsh > "${fpath[1]}/_spime\""""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime completion``."""
    p = subparsers.add_parser("completion", help="print a shell completion script (bash or zsh)",
                              epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the completion script of the whole ``spime`` parser for ``args.shell``."""
    import shtab  # only this command needs it

    from hub.client.cli import build_parser

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return EXIT_OK
