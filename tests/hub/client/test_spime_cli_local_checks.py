"""What ``spime`` refuses on the client, before it connects or sends anything: option values a
request cannot carry, connection settings gRPC would misread, folders the hub would refuse,
manifests it would write wrongly, and a reader that went away.

The hub address in these tests is a free port nobody listens on: a check that ran after
connecting would show UNAVAILABLE instead of its own message.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.client.cli import main
from hub.client.commands.init import _esc
from hub.client.common import EXIT_REFUSED, EXIT_USAGE, UsageError
from hub.client.embedded import free_port
from hub.client.local import scan_design_dir
from hub.limits import MAX_FILES
from hub.manifest import parse_manifest

BIN = Path(sys.executable).parent
MANIFEST = ('name = "many-files"\ntitle = "Many files"\nlicense = "CC0-1.0"\nlicensor = "t"\n'
            'version = "1.0.0"\nfunction = "Testing."\n'
            '[[parts]]\nname = "box"\nfiles = ["box.stl"]\nmaterial = "PLA"\n')


@pytest.fixture
def nowhere() -> list[str]:
    """Connection options naming a hub that is not there."""
    return ["--hub", f"127.0.0.1:{free_port()}", "--token", "nobody"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("value", ["-3", "0", "6", str(2**32), "2" * 5000])
def test_a_criterion_outside_1_to_5_is_a_usage_error(capsys: pytest.CaptureFixture[str], nowhere: list[str],
                                                     value: str) -> None:
    code, err = _run(capsys, "rate", "order-1", "--stars", "5", "--criteria", f"quality={value}", *nowhere)
    assert code == EXIT_USAGE and "give a whole number 1-5" in err and "UNAVAILABLE" not in err


def test_a_qr_path_that_cannot_be_written_is_refused_before_ordering(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], nowhere: list[str]) -> None:
    order = ["order", "cube", "--material", "PLA", "--key", "k1"]
    code, err = _run(capsys, *order, "--qr", str(tmp_path), *nowhere)
    assert code == EXIT_USAGE and "--qr" in err and "folder" in err and "UNAVAILABLE" not in err
    (tmp_path / "plain").write_text("a file, not a folder")
    code, err = _run(capsys, *order, "--qr", str(tmp_path / "plain" / "label.png"), *nowhere)
    assert code == EXIT_USAGE and "--qr" in err and "UNAVAILABLE" not in err
    os.mkfifo(tmp_path / "fifo.png")
    code, err = _run(capsys, *order, "--qr", str(tmp_path / "fifo.png"), *nowhere)
    assert code == EXIT_USAGE and "pipe" in err and "UNAVAILABLE" not in err
    code, err = _run(capsys, *order, "--qr", str(tmp_path / "new" / "label.png"), *nowhere)
    assert code == EXIT_REFUSED and "UNAVAILABLE" in err  # a folder to be made is fine


def _many_files(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "many-files"
    (folder / "extra").mkdir(parents=True)
    (folder / "spime.toml").write_text(MANIFEST)
    (folder / "box.stl").write_bytes(b"solid box\nendsolid box\n")
    for i in range(count - 1):
        (folder / "extra" / f"{i}.md").write_text(f"{i}\n")
    return folder


def test_a_folder_over_the_hub_file_limit_is_refused_before_hashing(tmp_path: Path) -> None:
    folder = _many_files(tmp_path, MAX_FILES + 1)
    hashed: list[object] = []
    with pytest.raises(UsageError, match=f"{MAX_FILES + 1} files; a revision holds at most {MAX_FILES}"):
        scan_design_dir(folder, on_hashed=hashed.append)
    assert hashed == []
    (folder / "extra" / "0.md").unlink()
    _, _, files = scan_design_dir(folder)
    assert len(files) == MAX_FILES


def test_push_of_too_many_files_uploads_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                nowhere: list[str]) -> None:
    folder = _many_files(tmp_path, MAX_FILES + 1)
    code, err = _run(capsys, "push", str(folder), "--new", *nowhere)
    assert code == EXIT_USAGE and f"at most {MAX_FILES}" in err and "UNAVAILABLE" not in err


@pytest.mark.parametrize("parent", ["zz", "ab" * 31, "AB" * 32, "ab" * 32 + "\n", "ab" * 33])
def test_a_parent_that_is_not_a_revision_id_is_refused_before_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], nowhere: list[str], parent: str) -> None:
    folder = _many_files(tmp_path, 1)
    code, err = _run(capsys, "push", str(folder), "--parent", parent, *nowhere)
    assert code == EXIT_USAGE and "is not a revision id (64 lowercase hex digits" in err


@pytest.mark.parametrize("token", ["é", "line\nbreak", "tab\there", "nul\x00"])
def test_a_token_grpc_cannot_send_is_a_usage_error(capsys: pytest.CaptureFixture[str], token: str) -> None:
    code, err = _run(capsys, "whoami", "--hub", f"127.0.0.1:{free_port()}", "--token", token)
    assert code == EXIT_USAGE and "printable ASCII" in err and "INTERNAL" not in err
    assert token not in err  # a secret is never shown


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:0", "127.0.0.1:",
                                     "127.0.0.1:http", "127.0.0.1:٣"])
def test_a_port_outside_1_to_65535_is_a_usage_error(capsys: pytest.CaptureFixture[str], address: str) -> None:
    code, err = _run(capsys, "whoami", "--hub", address, "--token", "t")
    assert code == EXIT_USAGE and "port 1-65535" in err and "UNAVAILABLE" not in err


def _cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (folder / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "client.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder / "ca.crt", folder / "client.key"


def test_tls_files_that_are_not_pem_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ca, key = _cert(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    whoami = ["whoami", "--hub", f"127.0.0.1:{free_port()}", "--token", "t"]
    code, err = _run(capsys, *whoami, "--ca", str(junk))
    assert code == EXIT_USAGE and "the CA file" in err and str(junk) in err and "PEM" in err
    monkeypatch.setenv("SPIME_CLIENT_CERT", str(junk))
    monkeypatch.setenv("SPIME_CLIENT_KEY", str(key))
    code, err = _run(capsys, *whoami, "--ca", str(ca))
    assert code == EXIT_USAGE and "the client certificate file" in err and str(junk) in err
    monkeypatch.setenv("SPIME_CLIENT_CERT", str(ca))
    monkeypatch.setenv("SPIME_CLIENT_KEY", str(ca))  # a certificate where the key belongs
    code, err = _run(capsys, *whoami, "--ca", str(ca))
    assert code == EXIT_USAGE and "the client key file" in err and "private key" in err
    monkeypatch.setenv("SPIME_CLIENT_KEY", str(key))
    code, err = _run(capsys, *whoami, "--ca", str(ca))
    assert code == EXIT_REFUSED and "UNAVAILABLE" in err  # well-formed files get as far as connecting


def test_tls_files_that_are_not_regular_files_or_too_big_are_refused_unread(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whoami = ["whoami", "--hub", f"127.0.0.1:{free_port()}", "--token", "t"]
    fifo = tmp_path / "ca.fifo"
    os.mkfifo(fifo)  # opening it to read would wait for a writer that never comes
    code, err = _run(capsys, *whoami, "--ca", str(fifo))
    assert code == EXIT_USAGE and "pipe, not a regular file" in err
    code, err = _run(capsys, *whoami, "--ca", str(tmp_path))
    assert code == EXIT_USAGE and "folder, not a regular file" in err
    big = tmp_path / "big.pem"
    big.write_bytes(b"-" * (2 << 20))
    code, err = _run(capsys, *whoami, "--ca", str(big))
    assert code == EXIT_USAGE and str(big) in err and "UNAVAILABLE" not in err
    code, err = _run(capsys, *whoami, "--ca", str(tmp_path / "missing.pem"))
    assert code == EXIT_USAGE and "missing.pem" in err


def test_a_token_bound_for_a_remote_hub_in_clear_text_is_warned_about(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without SPIME_CA the token crosses the network in clear text: fine on this machine, warned
    about on stderr for any other hub (stdout stays the command's own)."""
    import argparse

    from hub.client.connection import connect

    ca, _ = _cert(tmp_path)
    for address, token, tls, warned in (("hub.example.org:7443", "t", None, True), ("10.1.2.3:7443", "t", None, True),
                                        ("hub.example.org:7443", "t", str(ca), False),
                                        ("hub.example.org:7443", "", None, False),  # no token, nothing secret sent
                                        ("127.0.0.1:7443", "t", None, False), ("localhost:7443", "t", None, False),
                                        ("[::1]:7443", "t", None, False)):
        connect(argparse.Namespace(hub=address, token=token, ca=tls), need_token=False).close()  # never dials
        out, err = capsys.readouterr()
        assert out == "" and ("clear text" in err and address in err) is warned, (address, err)


def test_toml_escapes_round_trip_every_control_character() -> None:
    text = "".join(map(chr, range(0x80))) + 'é "quoted" \\ end'
    assert tomllib.loads(f'v = "{_esc(text, "--title")}"')["v"] == text
    with pytest.raises(UsageError, match="not valid UTF-8"):
        _esc(os.fsdecode(b"bad\xff.stl"), "the file name")


@pytest.mark.parametrize("name", ['say "hi".stl', "back\\slash.stl", "new\nline.stl",
                                  os.fsdecode(b"latin-\xe9.stl")])
def test_init_names_a_mesh_file_the_manifest_cannot_list(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         name: str) -> None:
    (tmp_path / name).write_bytes(b"solid x\nendsolid x\n")
    code, err = _run(capsys, "init", str(tmp_path), "--name", "odd-names")
    assert code == EXIT_USAGE and "cannot list" in err and "rename the file" in err and "TOML" not in err
    assert not (tmp_path / "spime.toml").exists()


def test_init_escapes_the_title_or_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "init", str(tmp_path / "a"), "--title", 'The "best" \\ cube')
    assert code == 0, err
    assert parse_manifest((tmp_path / "a" / "spime.toml").read_text()).title == 'The "best" \\ cube'
    # A title is one line of plain text, as the hub checks it once TOML decoded its escapes.
    for where, title in (("b", "bell\x07"), ("c", "two\nlines"), ("d", "a\ttab"), ("e", "Cu\u202ebe")):
        code, err = _run(capsys, "init", str(tmp_path / where), "--title", title)
        assert code == EXIT_USAGE and "'title'" in err and "TOML" not in err, err


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before spime writes: `spime ... | (exec 0<&-; true)`
    try:
        done = subprocess.run([str(BIN / "spime"), "init", str(tmp_path / "d"), "--json"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (EXIT_REFUSED, "")
    assert (tmp_path / "d" / "spime.toml").exists()
