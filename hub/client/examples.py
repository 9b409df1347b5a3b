"""One worked example per ``spime`` command, shown at the end of its ``--help``.

Kept in one table so the examples read as one tutorial and each command module
stays about its command. A module that sets its own ``epilog=`` keeps it. A subcommand without an entry
shows its group's ("key" covers "key gen"). A new command needs one or the other
(tests/hub/client/test_cli_ux.py checks). hub/ops_commands.py applies the same to `spime-hub`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping

__all__ = ["EXAMPLES", "apply_examples", "commands"]

EXAMPLES: dict[str, str] = {
    "init": "spime init designs/shelf-bracket --license CERN-OHL-S-2.0 --licensor 'Ada Maker'",
    "whoami": "SPIME_HUB=hub.example.org:7443 SPIME_TOKEN=spf_... spime whoami",
    "push": "spime push designs/shelf-bracket --new        # later: spime push designs/shelf-bracket -m 'thicker rib'",
    "log": "spime log shelf-bracket --limit 5",
    "show": "spime show shelf-bracket@3f2a9c --json",
    "get": "spime get shelf-bracket -o ./shelf-bracket",
    "search": "spime search bracket --license CC-BY-4.0 --tag wall",
    "fork": "spime fork shelf-bracket --name my-bracket --license GPL-3.0-or-later -m 'longer arm'",
    "proposals": "spime proposals shelf-bracket --all",
    "accept": "spime accept shelf-bracket 7c1e2d",
    "decline": "spime decline shelf-bracket 7c1e2d --reason 'the wall plate is too thin'",
    "maintainer": "spime maintainer add shelf-bracket bob",
    "key": "spime key gen && spime key register      # pushes are signed from now on",
    "verify": "spime verify shelf-bracket              # offline: spime verify --bundle bracket.bundle.json",
    "export": "spime export shelf-bracket --format prov -o bracket.prov.json",
    "demo": "spime demo --json > demo.json",
    "check": "spime check designs/calibration-cube/calibration-cube.stl --printer prusa_mk3s",
    "completion": "spime completion bash > ~/.local/share/bash-completion/completions/spime",
    "quote": "spime quote shelf-bracket --material PLA --qty 2 --near 52.52,13.40 --max-km 30",
    "order": "spime order parametric-box --material PETG --param width=80 --param height=40 --best nearest",
    "watch": "spime watch ORDER-ID",
    "cancel": "spime cancel ORDER-ID --reason 'ordered the wrong size'",
    "orders": "spime orders --all --json",
    "rate": "spime rate ORDER-ID --stars 5 --criteria quality=5,printability=4 --comment 'clean overhangs'",
    "record": "spime record shelf-bracket --json",
    "ledger": "spime ledger shelf-bracket --limit 20",
    "grant": "spime grant nc-design --scope paid --node fablab-berlin --until 2027-06-30",
    "participation": "spime participation shelf-bracket co-create",
    "equation": "spime equation shelf-bracket --maker 60 --lineage 25 --commons 15",
}


def commands(parser: argparse.ArgumentParser,
             path: tuple[str, ...] = ()) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command and command group below ``parser``, as ("group sub", parser), depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield " ".join((*path, name)), child
                yield from commands(child, (*path, name))


def apply_examples(parser: argparse.ArgumentParser, examples: Mapping[str, str] = EXAMPLES) -> None:
    """Give every command without an epilog its example: its own, else its group's; a group
    without one lists its subcommands' examples."""
    for name, child in commands(parser):
        words = name.split()
        found = next((examples[" ".join(words[:n])] for n in range(len(words), 0, -1)
                      if " ".join(words[:n]) in examples), None)
        below = [text for key, text in examples.items() if key.startswith(name + " ")]
        if child.epilog or not (found or below):
            continue
        child.epilog = "example:\n  " + "\n  ".join([found] if found else below)
        child.formatter_class = argparse.RawDescriptionHelpFormatter
