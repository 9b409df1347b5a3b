"""What a person expects of the three commands: --version, shell completion, an example in every
command's help, and progress that is a bar on a terminal and plain lines anywhere else."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from hub.client import examples
from hub.client.cli import build_parser, main
from hub.client.common import EXIT_USAGE
from hub.client.progress import Progress
from tests.fixtures.hub_server import ROOT

BIN = Path(sys.executable).parent
PROGRAMS = ("spime", "spime-hub", "spime-node")
# A command each program's completion must offer, and a flag of it.
EXPECTED = {"spime": ("check", "--printer"), "spime-hub": ("backup", "--tls-client-ca"),
            "spime-node": ("run", "--config")}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


@pytest.mark.parametrize("program", PROGRAMS)
def test_version_of_each_installed_command(program: str) -> None:
    from importlib import metadata

    done = _run(str(BIN / program), "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{program} {metadata.version('spimeforge')}\n"


def _completion(program: str, shell: str) -> str:
    """The script ``PROGRAM completion SHELL`` prints (made in-process: the console scripts'
    own runs are covered by tests/test_ops_files.py's install test)."""
    import shtab

    from hub import ops_commands
    from node_agent import ops_cli

    parsers = _parsers()
    if program == "spime-hub":
        return ops_commands.completion_script(parsers[program], shell)  # type: ignore[arg-type]
    if program == "spime-node":
        return ops_cli.completion_script(parsers[program], shell)  # type: ignore[arg-type]
    return str(shtab.complete(parsers[program], shell=shell))


@pytest.mark.parametrize("program", PROGRAMS)
def test_completion_scripts_parse_and_offer_the_commands(program: str, tmp_path: Path) -> None:
    command, flag = EXPECTED[program]
    bash = _completion(program, "bash")
    script = tmp_path / program
    script.write_text(bash)
    registered = _run("bash", "-c", f"source {script} && complete -p {program}")
    assert registered.returncode == 0 and program in registered.stdout, registered.stderr
    assert command in bash and flag in bash

    zsh = _completion(program, "zsh")
    assert zsh.startswith(f"#compdef {program}")
    (tmp_path / f"_{program}").write_text(zsh)
    parsed = _run("zsh", "-n", str(tmp_path / f"_{program}"))
    assert parsed.returncode == 0, parsed.stderr
    assert command in zsh and flag in zsh


def test_completion_refuses_an_unknown_shell() -> None:
    done = _run(str(BIN / "spime"), "completion", "fish")
    assert done.returncode == 2 and "invalid choice" in done.stderr


def _parsers() -> dict[str, object]:
    from hub.__main__ import _parser
    from node_agent.cli import build_parser as node_parser

    return {"spime": build_parser(), "spime-hub": _parser(), "spime-node": node_parser()}


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_command_shows_an_example(program: str) -> None:
    parser = _parsers()[program]
    missing = [name for name, p in examples.commands(parser)  # type: ignore[arg-type]
               if "example:" not in (p.epilog or "") or program not in (p.epilog or "")]
    assert not missing, f"{program}: commands without an example in --help: {missing} " \
                        "(add one to hub/client/examples.py, hub/ops_commands.py or node_agent/ops_cli.py)"


def test_check_does_not_import_grpc_or_the_protos(tmp_path: Path) -> None:
    stl = ROOT / "designs" / "calibration-cube" / "calibration-cube.stl"
    code = ("import sys; from hub.client.cli import main; rc = main(['check', sys.argv[1], '--json']); "
            "heavy = sorted(m for m in ('grpc', 'spimeforge.v1.designs_pb2', 'rich') if m in sys.modules); "
            "print(heavy, file=sys.stderr); sys.exit(rc)")
    done = _run(sys.executable, "-c", code, str(stl))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_progress_is_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = Progress(4_000_000, "uploading 2 blob(s)", out)
    for _ in range(8):
        bar.advance(500_000)
    bar.finish()
    bar.finish()
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "uploading 2 blob(s): 25%", "uploading 2 blob(s): 50%", "uploading 2 blob(s): 75%", "uploading 2 blob(s): done"]
    assert "4.0 MB of 4.0 MB" in lines[-1] and "B/s" in lines[-1]
    assert "s left" in lines[0]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def _on_terminal(environ: dict[str, str]) -> str:
    """Run a bar on a real pseudo-terminal and return what the terminal received."""
    leader, follower = pty.openpty()
    try:
        with os.fdopen(os.dup(follower), "w", encoding="utf-8") as tty:
            bar = Progress(1000, "downloading", tty, environ=environ)
            bar.advance(400)
            bar.advance(600)
            bar.finish()
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


def test_progress_is_a_bar_with_rate_and_eta_on_a_terminal_and_honours_no_color() -> None:
    coloured = _on_terminal({"TERM": "xterm-256color"})
    assert "downloading" in coloured and "1.0/1.0 kB" in coloured and "\x1b[" in coloured
    assert "38;" in coloured or "\x1b[3" in coloured  # a colour was set
    plain = _on_terminal({"TERM": "xterm-256color", "NO_COLOR": "1"})
    assert "downloading" in plain and "1.0/1.0 kB" in plain
    assert "\x1b[3" not in plain and "38;" not in plain  # cursor moves only, no colour


LONG_NAME = "x" * 300  # over the 255 bytes a file name may have


@pytest.mark.parametrize("argv", [["init", LONG_NAME], ["push", LONG_NAME], ["check", LONG_NAME], ["init", "/dev/null"]],
                         ids=["init-long", "push-long", "check-long", "init-device"])
def test_a_path_the_system_refuses_is_an_error_that_names_it(argv: list[str], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPIME_HUB", "127.0.0.1:1")  # the path is refused before any hub is called
    monkeypatch.setenv("SPIME_TOKEN", "t")
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("spime: error: cannot use '") and "check the path" in err and "Traceback" not in err


@pytest.mark.parametrize("data", ["/dev/null", LONG_NAME])
def test_spime_hub_names_a_data_directory_it_cannot_use(data: str, tmp_path: Path) -> None:
    # a process of its own: spime-hub's main sets up the process's logging
    done = _run(str(BIN / "spime-hub"), "user", "add", "zed", "--role", "designer", "--data",
                str(tmp_path / data) if data == LONG_NAME else data)  # a command that makes a hub where there is none
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("spime-hub: error: cannot use '") and "check the path" in done.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["search", "--limit", "-1"], "argument --limit: -1 is out of range: use 1 to 500"),
    (["rate", "o1", "--stars", "9"], "argument --stars: 9 is out of range: use 1 to 5"),
    (["quote", "cube", "--qty", "1e3"], "argument --qty: '1e3' is not a whole number"),
])
def test_numbers_out_of_their_range_are_usage_errors(argv: list[str], message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """They go into unsigned or bounded request fields: before, a negative one was a traceback."""
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_spime_hub_refuses_a_cache_size_that_is_no_number(tmp_path: Path) -> None:
    done = _run(str(BIN / "spime-hub"), "serve", "--data", str(tmp_path), "--blob-cache-gb", "nan")
    assert done.returncode == 1 and "--blob-cache-gb must be between" in done.stderr, done.stderr
