"""Parametric designs: OpenSCAD customizer parameters in, a mesh out.

`parse_parameters` reads the customizer annotations of a .scad file (pure), `validate`
checks a customer's values against them (pure), and `render_scad` runs
`openscad -o out.stl -D name=value ... design.scad` under a time limit.

The annotations follow OpenSCAD's customizer: a top-level assignment of a literal
before the first `module` or `function`, an optional `// description` line directly
above it, and an optional trailing widget comment:

    width = 20;       // [10:50]            slider from 10 to 50
    wall = 1.2;       // [0.8:0.4:2.4]      min:step:max
    size = 34;        // [50]               slider from 0 to 50
    shape = "round";  // [round, square]    choices
    grip = 10;        // [10:Small, 20:Large]   labelled choices
    label = "hi";     // 8                  string of at most 8 characters
    lip = 5;          // [3:10] lip height  text after the widget is the description
    /* [Hidden] */                          later parameters are not for customers
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import math
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slicer_bridge.base import ParameterError, RenderError, ToolNotFound
from slicer_bridge.run import run
from slicer_bridge.scad_sandbox import (
    SandboxLimits,
    check_references,
    confined,
    copy_into,
    sandbox_argv,
    sandbox_env,
)
from slicer_bridge.scad_text import map_strings

__all__ = [
    "Choice",
    "ParamKind",
    "Parameter",
    "ParameterSchema",
    "Value",
    "format_value",
    "parse_parameters",
    "render_argv",
    "render_scad",
    "validate",
]

log = logging.getLogger("slicer_bridge.openscad")

Value = float | int | bool | str | tuple[float, ...]

_MAX_SCAD_BYTES = 2_000_000
_DEFAULT_GROUP = "Parameters"
_NAME_IS = re.compile(r"([A-Za-z_$][\w$]*)\s*=\s*", re.ASCII)  # a parameter line's start (see _assignment)
# used with fullmatch ("$" would let a trailing newline through)
_GROUP = re.compile(r"/\*\s*\[([^\]]*)\]\s*\*/", re.ASCII)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_STRING = re.compile(r'"((?:[^"\\]++|\\.)*+)"')
_DECLARATION = re.compile(r"^(module|function)\b", re.ASCII)
_STEP_TOLERANCE = 1e-6


class ParamKind(enum.Enum):
    """The customizer's value types."""

    NUMBER = "number"
    BOOL = "bool"
    STRING = "string"
    VECTOR = "vector"


@dataclass(frozen=True, slots=True)
class Choice:
    """One entry of a dropdown: the value set and the label shown."""

    value: float | str
    label: str


@dataclass(frozen=True, slots=True)
class Parameter:
    """One customizer parameter.

    Attributes:
        name: The variable name.
        kind: Its type.
        default: The value in the file.
        group: The `/* [Group] */` it is under.
        description: The comment line directly above it.
        minimum: Lower bound of a slider (numbers and each vector element).
        maximum: Upper bound of a slider.
        step: Slider step, counted from `minimum`.
        choices: Allowed values of a dropdown; empty when any value in range goes.
        max_length: Longest allowed string.
        hidden: Under `/* [Hidden] */`: not settable by customers.
    """

    name: str
    kind: ParamKind
    default: Value
    group: str = _DEFAULT_GROUP
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[Choice, ...] = ()
    max_length: int | None = None
    hidden: bool = False

    def allowed(self) -> str:
        """A human description of the allowed values, for error messages."""
        if self.choices:
            return "one of " + ", ".join(repr(c.value) for c in self.choices)
        if self.kind is ParamKind.STRING:
            limit = f" of at most {self.max_length} characters" if self.max_length else ""
            return f"a string{limit}"
        if self.kind is ParamKind.BOOL:
            return "true or false"
        what = "a number" if self.kind is ParamKind.NUMBER else "a list of numbers"
        if self.minimum is not None and self.maximum is not None:
            step = f" in steps of {self.step:g}" if self.step else ""
            what += f" from {self.minimum:g} to {self.maximum:g}{step}"
        return what


@dataclass(frozen=True, slots=True)
class ParameterSchema:
    """All customizer parameters of a design, in file order."""

    parameters: tuple[Parameter, ...] = field(default_factory=tuple)

    def get(self, name: str) -> Parameter | None:
        """The parameter called `name`, or None."""
        return next((p for p in self.parameters if p.name == name), None)

    def visible(self) -> tuple[Parameter, ...]:
        """The parameters a customer may set."""
        return tuple(p for p in self.parameters if not p.hidden)

    def as_json(self) -> list[dict[str, object]]:
        """The customer-settable parameters as JSON-ready dicts (for a form or `--json`)."""
        return [_param_json(p) for p in self.visible()]


def _param_json(param: Parameter) -> dict[str, object]:
    data = {f.name: getattr(param, f.name) for f in dataclasses.fields(param)}
    data["kind"] = param.kind.value
    data["default"] = list(param.default) if isinstance(param.default, tuple) else param.default
    data["choices"] = [{"value": c.value, "label": c.label} for c in param.choices]
    del data["hidden"]
    return data


# ---------------------------------------------------------------- parsing (pure)


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), body)


def _literal(text: str) -> tuple[ParamKind, Value] | None:
    text = text.strip()
    if text in ("true", "false"):
        return ParamKind.BOOL, text == "true"
    if _NUMBER.fullmatch(text):
        number = float(text)
        if not math.isfinite(number):  # "1e999" or 400 digits: no number a customizer can show
            return None
        return ParamKind.NUMBER, int(text) if re.fullmatch(r"[-+]?[0-9]+", text) else number
    if (m := _STRING.fullmatch(text)) is not None:
        return ParamKind.STRING, _unescape(m[1])
    if text.startswith("[") and text.endswith("]"):
        items = [i.strip() for i in text[1:-1].split(",")]
        if items and all(_NUMBER.fullmatch(i) for i in items):
            vector = tuple(float(i) for i in items)
            return (ParamKind.VECTOR, vector) if all(math.isfinite(v) for v in vector) else None
    return None


def _choice(item: str) -> Choice:
    value, sep, label = item.partition(":")
    value, label = value.strip(), label.strip()
    parsed: float | str = float(value) if _NUMBER.fullmatch(value) else value.strip('"')
    return Choice(parsed, label if sep else value.strip('"'))


def _range(parts: list[str]) -> dict[str, float]:
    numbers = [float(p) for p in parts]
    if len(numbers) == 1:
        return {"minimum": 0.0, "maximum": numbers[0]}
    if len(numbers) == 2:
        return {"minimum": numbers[0], "maximum": numbers[1]}
    return {"minimum": numbers[0], "step": numbers[1], "maximum": numbers[2]}


def _split_widget(comment: str) -> tuple[str, str]:
    """The leading `[...]` of a trailing comment, and the text after it (a description)."""
    comment = comment.strip()
    end = comment.find("]")
    if comment.startswith("[") and end > 0:
        return comment[: end + 1], comment[end + 1 :].strip()
    return "", comment


def _widget(kind: ParamKind, comment: str) -> tuple[dict[str, object], str]:
    if kind is ParamKind.STRING and re.fullmatch(r"\s*\d+\s*", comment, re.ASCII):
        return {"max_length": int(comment)}, ""
    widget, text = _split_widget(comment)
    if not widget or kind is ParamKind.BOOL:
        return {}, text
    body = widget[1:-1]
    parts = [p.strip() for p in body.split(":")]
    numeric = kind in (ParamKind.NUMBER, ParamKind.VECTOR)
    if numeric and "," not in body and len(parts) <= 3 and all(_NUMBER.fullmatch(p) for p in parts):
        return dict(_range(parts)), text
    return {"choices": tuple(_choice(i) for i in body.split(",") if i.strip())}, text


def _strip_block_comments(line: str, in_block: bool) -> tuple[str, bool]:
    out = ""
    while line:
        if in_block:
            end = line.find("*/")
            if end < 0:
                return out, True
            line, in_block = line[end + 2 :], False
        else:
            start = line.find("/*")
            if start < 0:
                return out + line, False
            out, line, in_block = out + line[:start], line[start + 2 :], True
    return out, in_block


def parse_parameters(source: str) -> ParameterSchema:
    """Read the customizer parameters declared in a .scad file's text (pure).

    Args:
        source: The .scad text.

    Returns:
        The schema, in file order. Assignments of expressions (not literals), and
        everything after the first top-level `module` or `function`, are not parameters.
    """
    params: list[Parameter] = []
    group, hidden, description, depth, in_block = _DEFAULT_GROUP, False, "", 0, False
    for raw in source.splitlines():
        stripped = raw.strip()
        if depth == 0 and not in_block and (g := _GROUP.fullmatch(stripped)):
            group = g[1].strip() or _DEFAULT_GROUP
            hidden = group.lower() == "hidden"
            description = ""
            continue
        code, in_block = _strip_block_comments(raw, in_block)
        code = code.strip()
        if depth == 0 and _DECLARATION.match(code):
            break
        if depth == 0 and (param := _parameter(code, group, hidden, description)):
            # OpenSCAD keeps the last top-level assignment of a name.
            params = [p for p in params if p.name != param.name] + [param]
        description = code[2:].strip() if code.startswith("//") else ""
        depth = max(0, depth + _brace_delta(code))
    return ParameterSchema(tuple(params))


def _brace_delta(code: str) -> int:
    code = map_strings(code.split("//", 1)[0], lambda _: "")
    return code.count("{") - code.count("}")


def _assignment(code: str) -> tuple[str, str, str | None] | None:
    """(name, value, comment or None) of a line ``name = value; // comment``, else None.

    By hand rather than one pattern: a lazy value before ``\\s*;`` tried every split of a long
    run of blanks (40,000 spaces took seconds). The statement's ``;`` is the last character
    before the comment (or the end), so there is one place to look."""
    named = _NAME_IS.match(code)
    if named is None:
        return None
    rest = code[named.end():]
    cut = rest.find("//")
    body, comment = (rest, None) if cut < 0 else (rest[:cut], rest[cut + 2:].strip())
    body = body.rstrip()
    if not body.endswith(";") or not (value := body[:-1].rstrip()):
        return None
    return named[1], value, comment


def _parameter(code: str, group: str, hidden: bool, description: str) -> Parameter | None:
    found = _assignment(map_strings(code, lambda literal: literal.replace("//", "\0")))
    if found is None:
        return None
    name, value, comment = found
    literal = _literal(value.replace("\0", "//"))
    if literal is None:
        return None
    kind, default = literal
    widget, text = _widget(kind, (comment or "").replace("\0", "//"))
    return Parameter(name, kind, default, group, description or text, hidden=hidden,
                     **widget)  # type: ignore[arg-type]


# ------------------------------------------------------------- validation (pure)


def _refuse(param: Parameter, value: object, problem: str) -> ParameterError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else f"{shown[:37]}..."
    return ParameterError(param.name, f"{shown} {problem}; expected {param.allowed()}")


def _off_step(value: float, low: float, step: float | None) -> bool:
    if not step:
        return False
    steps = (value - low) / step
    return abs(steps - round(steps)) > _STEP_TOLERANCE


def _as_float(param: Parameter, value: float) -> float:
    """The value as a float; an integer beyond the float range ("1" * 400) is out of range, not a crash."""
    try:
        return float(value)
    except OverflowError:
        raise _refuse(param, value, "is out of range") from None


def _check_number(param: Parameter, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(param, value, "is not a number")
    if not math.isfinite(_as_float(param, value)):
        raise _refuse(param, value, "is not finite")
    low, high = param.minimum, param.maximum
    if low is not None and high is not None:
        if not low <= value <= high:
            raise _refuse(param, value, "is out of range")
        if _off_step(value, low, param.step):
            raise _refuse(param, value, "is off the step")
    return value


def _check_choice(param: Parameter, value: object) -> float | str:
    for choice in param.choices:
        if isinstance(choice.value, str) and value == choice.value:
            return choice.value
        if (
            isinstance(choice.value, float)
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isclose(_as_float(param, value), choice.value, rel_tol=1e-9, abs_tol=1e-12)
        ):
            return value
    raise ParameterError(param.name, f"{value!r} is not allowed; expected {param.allowed()}")


def _check_vector(param: Parameter, value: object) -> tuple[float, ...]:
    assert isinstance(param.default, tuple)
    if not isinstance(value, (list, tuple)) or len(value) != len(param.default):
        raise ParameterError(
            param.name, f"{value!r} is not a list of {len(param.default)} numbers; "
            f"expected {param.allowed()}",
        )
    return tuple(_check_number(param, v) for v in value)


def _check_string(param: Parameter, value: object) -> str:
    if not isinstance(value, str):
        raise ParameterError(param.name, f"{value!r} is not a string; expected {param.allowed()}")
    if param.max_length is not None and len(value) > param.max_length:
        raise ParameterError(param.name, f"{len(value)} characters is too long; "
                             f"expected {param.allowed()}")
    if not value.isprintable():  # a NUL cannot reach `openscad -D`; a line break would split the value
        raise ParameterError(param.name, "contains control characters; expected printable text")
    return value


def _check(param: Parameter, value: object) -> Value:
    if param.choices:
        return _check_choice(param, value)
    if param.kind is ParamKind.BOOL:
        if not isinstance(value, bool):
            raise ParameterError(param.name, f"{value!r} is not true or false")
        return value
    if param.kind is ParamKind.STRING:
        return _check_string(param, value)
    if param.kind is ParamKind.VECTOR:
        return _check_vector(param, value)
    return _check_number(param, value)


def validate(schema: ParameterSchema, values: Mapping[str, object]) -> dict[str, Value]:
    """Check a customer's values against the schema (pure).

    Args:
        schema: From `parse_parameters`.
        values: Parameter name to value (JSON-like: bool, int, float, str, list).

    Returns:
        The values, sorted by name, vectors as tuples.

    Raises:
        ParameterError: An unknown or hidden parameter, a wrong type, a value out of
            range or off the step, not one of the choices, or a string too long. The
            message names the parameter and what is allowed.
    """
    checked: dict[str, Value] = {}
    for name in sorted(values):
        param = schema.get(name)
        if param is None or param.hidden:
            known = ", ".join(p.name for p in schema.visible()) or "none"
            raise ParameterError(name, f"the design has no such parameter; it has: {known}")
        checked[name] = _check(param, values[name])
    return checked


def format_value(value: Value) -> str:
    """An OpenSCAD literal for `value`, safe to pass as `-D name=<literal>` (pure)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return repr(value)


def render_argv(binary: str, scad: Path, out: Path, values: Mapping[str, Value]) -> list[str]:
    """The `openscad` command line that renders `scad` with `values` into `out` (pure)."""
    argv = [binary, "-o", str(out)]
    for name, value in sorted(values.items()):
        argv += ["-D", f"{name}={format_value(value)}"]
    return [*argv, str(scad)]


# ------------------------------------------------------------------ rendering


def _openscad_message(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    if not errors:
        errors = [ln for ln in lines if "top level object is empty" in ln.lower()]
    return "; ".join(errors) or (lines[-1] if lines else "no message")


def _read_source(scad: Path) -> str:
    try:
        with scad.open("rb") as f:
            data = f.read(_MAX_SCAD_BYTES + 1)
    except OSError as exc:
        raise RenderError((), None, "", "", reason=f"cannot read {scad}: {exc.strerror}") from exc
    if len(data) > _MAX_SCAD_BYTES:
        raise RenderError((), None, "", "", reason=f"{scad} is larger than {_MAX_SCAD_BYTES} bytes")
    return data.decode("utf-8", errors="replace")


async def render_scad(
    path: Path | str,
    params: Mapping[str, object],
    timeout_s: float,
    out_path: Path | None = None,
    binary: str = "openscad",
    *,
    root: Path | str | None = None,
    trusted_links: tuple[Path, ...] = (),
    limits: SandboxLimits | None = None,
) -> Path:
    """Validate `params` against the design's customizer schema and render it to STL.

    Only the design revision's own files are used: every `include`/`use`/`import`/
    `surface` must name a file inside `root` (see `slicer_bridge.scad_sandbox`), and
    OpenSCAD runs on a copy of just those files with memory, CPU and output limits and
    no network.

    Args:
        path: The .scad file; `include`/`use` resolve relative to its folder.
        params: Customer values (see `validate`).
        timeout_s: Time limit; a design that does not finish is killed.
        out_path: Where to write the STL (default: `<stem>.stl` in a fresh temporary
            directory that the caller owns; never beside the design, which may ship an
            STL of the same name).
        binary: The openscad program.
        root: The design revision's folder (default: the .scad file's folder).
        trusted_links: Folders that symbolic links in `root` may point into (e.g. the
            blob store a revision is staged from); any other link out is refused.
        limits: Sandbox limits (default: `SandboxLimits()` with the CPU limit set to
            the time limit).

    Returns:
        The STL path.

    Raises:
        ParameterError: A value is not allowed by the schema (nothing is run).
        ScadReferenceError: The design uses a file outside `root`, a link, a missing
            file or a computed file name (nothing is run).
        ToolNotFound: OpenSCAD is not installed.
        RenderError: OpenSCAD failed (its own message is in `reason`), produced no
            geometry, ran out of its memory or CPU limit, or was killed at the time limit.
    """
    scad = Path(os.path.abspath(path))  # not resolve(): a staged file may be a link
    for program in (binary, "prlimit"):
        if shutil.which(program) is None:
            raise ToolNotFound(program)
    folder = Path(root) if root is not None else scad.parent
    # reading up to 200 files of 2 MB each: off the caller's event loop
    values, files = await asyncio.to_thread(_checked_source, scad, params, folder, trusted_links)
    if out_path is None:
        out_path = Path(tempfile.mkdtemp(prefix="spime-render-")) / f"{scad.stem}.stl"
    out = out_path.resolve()
    out.unlink(missing_ok=True)
    limits = limits or SandboxLimits(cpu_s=timeout_s + 1)
    with tempfile.TemporaryDirectory(prefix="spime-scad-") as tmp:
        sandbox = Path(tmp)
        main = copy_into(files, folder, sandbox / "d")
        staged = sandbox / "out.stl"
        confine = sandbox if await _can_confine(sandbox) else None
        argv = sandbox_argv(render_argv(binary, main, staged, values), limits, confine, main.parent)
        done = await run(argv, timeout_s=timeout_s, error=RenderError, check=False,
                         cwd=main.parent, env=sandbox_env(sandbox, os.environ))
        if done.returncode != 0 or not staged.is_file() or staged.stat().st_size == 0:
            raise RenderError(argv, done.returncode, done.stdout, done.stderr,
                              reason=f"OpenSCAD could not render {scad.name}: "
                              f"{_failure(done.returncode, done.stderr, limits)}")
        shutil.move(staged, out)
    return out


def _checked_source(scad: Path, params: Mapping[str, object], folder: Path, trusted_links: tuple[Path, ...]
                    ) -> tuple[dict[str, Value], list[Path]]:
    """The customer's values checked against the source's schema, and the files the source uses."""
    return validate(parse_parameters(_read_source(scad)), params), check_references(scad, folder, trusted_links)


_confinement: list[bool] = []  # whether bubblewrap runs here, once known


async def _can_confine(sandbox: Path) -> bool:
    """Whether bubblewrap runs on this node (installed, and namespaces allowed); asked once. Without
    it OpenSCAD runs unconfined (the source check still refuses every file name it can see) and the
    node's log says so once."""
    if not _confinement:
        works = shutil.which("bwrap") is not None and (await run(
            [*confined(sandbox, sandbox), "true"], timeout_s=30, error=RenderError, check=False)).returncode == 0
        if not works:
            log.warning("bubblewrap (bwrap) is missing or cannot make namespaces here: OpenSCAD renders "
                        "without a filesystem sandbox; install the bubblewrap package")
        _confinement.append(works)
    return _confinement[0]


def _failure(returncode: int, stderr: str, limits: SandboxLimits) -> str:
    if returncode == -signal.SIGXCPU or returncode == 128 + signal.SIGXCPU:
        return f"it used more than its CPU-time limit of {limits.cpu_s:g} s"
    lowered = stderr.lower()
    if "bad_alloc" in lowered or "out of memory" in lowered or returncode in (
            -signal.SIGABRT, -signal.SIGSEGV, 128 + signal.SIGABRT):
        return (f"it ran out of its memory limit of {limits.memory_bytes / 2**30:g} GiB "
                f"(exit {returncode})")
    return _openscad_message(stderr)
