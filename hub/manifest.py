"""The design manifest: parse and validate ``spime.toml``.

A design is a folder with a ``spime.toml`` whose fields follow Open Know-How
(OKH-LOSH / OKH 2.x): name, title, description, license (an SPDX expression),
licensor, version, function, ``[[parts]]`` with files, material and quantity,
an optional ``[openscad]`` table of customizer parameters, ``derivative_of``,
contributors, tags, ``documentation-language`` and images. Unknown keys are
errors so a typo never silently drops data.

Pure: no I/O. The client scans a design folder; the hub validates pushes with
:func:`parse_manifest`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import tomli_w

from hub.errors import InvalidArgument, InvalidManifest
from hub.licenses import parse_expression
from hub.limits import check_plain_text, check_visible
from hub.paths import path_problem

__all__ = [
    "MANIFEST_NAME",
    "MAX_MANIFEST_CHARS",
    "MAX_TOML_DEPTH",
    "MESH_SUFFIXES",
    "Manifest",
    "OpenScad",
    "Part",
    "dump_manifest",
    "manifest_from_dict",
    "missing_files",
    "parse_manifest",
    "safe_relative_path",
    "toml_depth",
]

MANIFEST_NAME = "spime.toml"
#: The mesh formats a part's files may be in for the hub to check, quote and measure them.
MESH_SUFFIXES = (".stl", ".3mf", ".obj")

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}\Z")
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}\Z")
_DERIVATIVE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}@[0-9a-f]{8,64}\Z")
_LANG_RE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*\Z")
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,39}\Z")
_MAX_TEXT = 10_000
MAX_TOML_DEPTH = 16  # arrays and tables within one another, [[parts]] counting 2
MAX_MANIFEST_CHARS = 1 << 20
_MAX_LIST = 1000  # entries of a list field (contributors, tags, images)
# Each derivative_of entry that names a revision on this hub is looked up at every push.
_MAX_ITEMS = {"derivative_of": 64}

ParamValue = bool | int | float | str

_REQUIRED = ("name", "title", "license", "licensor", "version", "function", "parts")
_OPTIONAL = (
    "description", "openscad", "derivative_of", "contributors", "tags",
    "documentation-language", "images",
)
_PART_KEYS = frozenset({"name", "files", "material", "quantity"})
_OPENSCAD_KEYS = frozenset({"source", "parameters"})


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a design (an OKH ``part``): its files, material and count."""

    name: str
    files: tuple[str, ...]
    material: str
    quantity: int

    def to_dict(self) -> dict[str, Any]:
        """Return the part as plain data in manifest key names."""
        return {"name": self.name, "files": list(self.files),
                "material": self.material, "quantity": self.quantity}


@dataclass(frozen=True, slots=True)
class OpenScad:
    """The OpenSCAD source of a parametric design and its parameter defaults."""

    source: str
    parameters: tuple[tuple[str, ParamValue], ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the table as plain data in manifest key names."""
        return {"source": self.source, "parameters": dict(self.parameters)}


@dataclass(frozen=True, slots=True)
class Manifest:
    """A validated ``spime.toml``."""

    name: str
    title: str
    description: str
    license: str
    licensor: str
    version: str
    function: str
    parts: tuple[Part, ...]
    openscad: OpenScad | None = None
    derivative_of: tuple[str, ...] = ()
    contributors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    documentation_language: str = ""
    images: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as plain data (TOML key names, empty optionals omitted).

        The result is what revision ids are computed over, so it depends only on
        the manifest's meaning, not on its formatting.
        """
        out: dict[str, Any] = {
            "name": self.name, "title": self.title, "description": self.description,
            "license": self.license, "licensor": self.licensor, "version": self.version,
            "function": self.function, "parts": [p.to_dict() for p in self.parts],
        }
        optional: dict[str, Any] = {
            "openscad": self.openscad.to_dict() if self.openscad else None,
            "derivative_of": list(self.derivative_of),
            "contributors": list(self.contributors),
            "tags": list(self.tags),
            "documentation-language": self.documentation_language,
            "images": list(self.images),
        }
        out.update({k: v for k, v in optional.items() if v})
        return out

    def referenced_files(self) -> tuple[str, ...]:
        """Every file the manifest names (parts, OpenSCAD source, images), sorted, unique."""
        names = {f for part in self.parts for f in part.files}
        names.update(self.images)
        if self.openscad:
            names.add(self.openscad.source)
        return tuple(sorted(names))


def safe_relative_path(name: str, field: str = "path") -> str:
    """Check that ``name`` is a relative POSIX path that checks out on every system.

    The rules are hub.paths's (no ``..``, absolute paths, backslashes, control or
    bidi characters, Windows device names, trailing dots or spaces …).

    Args:
        name: a path as written in a manifest or a push.
        field: the manifest or request field it came from, for the error's details.

    Returns:
        The same path, unchanged.

    Raises:
        InvalidManifest: naming the path and the rule it breaks.
    """
    problem = path_problem(name)
    if problem is not None:
        raise InvalidManifest(f"file path {problem.path!r:.300} is not allowed: {problem.message}; "
                              "use a relative path inside the design folder that checks out on "
                              "Linux, macOS and Windows", reason=problem.rule, field=field)
    return name


def parse_manifest(text: str) -> Manifest:
    """Parse and validate the text of a ``spime.toml``.

    Args:
        text: the manifest's TOML text.

    Returns:
        The validated manifest.

    Raises:
        InvalidManifest: the TOML is longer than ``MAX_MANIFEST_CHARS``, malformed
            or nested deeper than ``MAX_TOML_DEPTH`` arrays and tables, a required field is missing, a
            field has the wrong type or value, or a key is unknown. The message
            names the field.
        InvalidLicense: the ``license`` is not a valid SPDX expression.
    """
    if not isinstance(text, str) or len(text) > MAX_MANIFEST_CHARS:
        raise InvalidManifest(f"{MANIFEST_NAME} is longer than {MAX_MANIFEST_CHARS} characters",
                              reason="LIMIT_EXCEEDED", field="manifest_toml")
    depth = toml_depth(text)
    if depth > MAX_TOML_DEPTH:
        raise InvalidManifest(f"{MANIFEST_NAME} nests arrays and tables {depth} deep; at most "
                              f"{MAX_TOML_DEPTH} are allowed", reason="MANIFEST_TOO_DEEP",
                              field="manifest_toml")
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise InvalidManifest(f"{MANIFEST_NAME} is not valid TOML: {exc}", field="manifest_toml") from exc
    except ValueError as exc:  # an integer past Python's digit limit (sys.get_int_max_str_digits)
        raise InvalidManifest(f"{MANIFEST_NAME} has a number that is too long to read; write "
                              "numbers with at most a few digits", field="manifest_toml") from exc
    return manifest_from_dict(data)


# Comments, the four kinds of strings (their brackets do not count; an unterminated one runs
# to its end, so no opener is scanned twice and the scan stays linear), then brackets.
_TOML_TOKEN = re.compile(
    r'#[^\n]*+|"""(?:[^"\\]++|\\.|"(?!""))*+(?:"""|\Z)|' + r"'''(?:[^']++|'(?!''))*+(?:'''|\Z)"
    + r'|"(?:[^"\\\n]++|\\.)*+(?:"|\n|\Z)|' + r"'[^'\n]*+(?:'|\n|\Z)|[\[\]{}]",
    re.DOTALL,
)


def toml_depth(text: str) -> int:
    """How deep arrays and tables nest in TOML text, counted without parsing it.

    Brackets and braces inside strings and comments do not count; a table
    header ``[[parts]]`` counts 2. Malformed text gets some number: the parser
    refuses it afterwards.
    """
    depth = deepest = 0
    for match in _TOML_TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth = max(0, depth - 1)
    return deepest


def manifest_from_dict(data: Mapping[str, Any]) -> Manifest:
    """Validate already-parsed manifest data (see :func:`parse_manifest`).

    Raises:
        InvalidManifest: a field is missing, unknown or invalid.
        InvalidLicense: the ``license`` is not a valid SPDX expression.
    """
    _check_keys(data, _REQUIRED, _OPTIONAL, where="")
    license_text = parse_expression(_text(data, "license", one_line=True))
    return Manifest(
        name=_slug(data["name"]),
        title=_text(data, "title", one_line=True),
        description=_text(data, "description", required=False),
        license=license_text,
        licensor=_text(data, "licensor", one_line=True),
        version=_matching(data, "version", _VERSION_RE, "like 1.0.0"),
        function=_text(data, "function"),
        parts=_parts(data["parts"]),
        openscad=_openscad(data.get("openscad")),
        derivative_of=_str_list(data, "derivative_of", _DERIVATIVE_RE, "design@revision"),
        contributors=_str_list(data, "contributors"),
        tags=_str_list(data, "tags", _TAG_RE, "lowercase words like 'calibration'"),
        documentation_language=_language(data),
        images=tuple(_path_field("images", p) for p in _list(data, "images")),
    )


def dump_manifest(manifest: Manifest) -> str:
    """Render a manifest as ``spime.toml`` text that parses back to an equal manifest."""
    return tomli_w.dumps(manifest.to_dict())


def missing_files(manifest: Manifest, paths: Iterable[str]) -> tuple[str, ...]:
    """Files the manifest names that are not among ``paths``, sorted."""
    present = set(paths)
    return tuple(f for f in manifest.referenced_files() if f not in present)


def _check_keys(data: Any, required: Iterable[str], optional: Iterable[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise InvalidManifest(f"{where or 'the manifest'} must be a table")
    required = tuple(required)
    allowed = set(required) | set(optional)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidManifest(f"unknown field {where}{unknown[0]!r} in {MANIFEST_NAME}; "
                              f"allowed fields are {', '.join(sorted(allowed))}")
    missing = [k for k in required if k not in data]
    if missing:
        raise InvalidManifest(f"missing required field {where}{missing[0]!r} in {MANIFEST_NAME}")


def _text(data: Mapping[str, Any], key: str, *, required: bool = True,
          one_line: bool = False, where: str = "") -> str:
    value = data.get(key, None if required else "")
    if not isinstance(value, str):
        raise InvalidManifest(f"field {where}{key!r} must be a string")
    value = value.strip()
    if required and not value:
        raise InvalidManifest(f"field {where}{key!r} must not be empty")
    if len(value) > _MAX_TEXT or "\x00" in value or (one_line and "\n" in value):
        raise InvalidManifest(f"field {where}{key!r} is too long or has forbidden characters")
    return _readable(value, f"{where}{key}", one_line=one_line, required=required)


def _readable(value: str, field: str, *, one_line: bool, required: bool = True) -> str:
    """``value`` once it holds no control or bidi character and, when required, shows something.

    The raw spime.toml is checked as it arrives, but TOML writes any character as an ASCII escape
    ("\\u202E"): the decoded strings, which others read as titles and credits, are checked here.
    """
    try:
        check_plain_text(value, f"{MANIFEST_NAME} field {field!r}", _MAX_TEXT, multiline=not one_line, field=field)
        if required:
            check_visible(value, f"{MANIFEST_NAME} field {field!r}", field)
    except InvalidArgument as exc:
        raise InvalidManifest(exc.message, reason=exc.reason, field=exc.field) from exc
    return value


def _matching(data: Mapping[str, Any], key: str, pattern: re.Pattern[str], hint: str) -> str:
    value = _text(data, key, one_line=True)
    if not pattern.match(value):
        raise InvalidManifest(f"field {key!r} has a malformed value {value!r}; expected {hint}")
    return value


def _slug(value: Any) -> str:
    if not isinstance(value, str) or not SLUG_RE.match(value):
        raise InvalidManifest(
            f"field 'name' must be a slug of 2-63 lowercase letters, digits and '-' "
            f"starting with a letter or digit, got {value!r}")
    return value


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise InvalidManifest(f"field {key!r} must be a list")
    limit = _MAX_ITEMS.get(key, _MAX_LIST)
    if len(value) > limit:
        raise InvalidManifest(f"field {key!r} lists {len(value)} entries, at most {limit} are allowed",
                              reason="LIMIT_EXCEEDED")
    return value


def _str_list(data: Mapping[str, Any], key: str, pattern: re.Pattern[str] | None = None,
              hint: str = "") -> tuple[str, ...]:
    items = _list(data, key)
    for item in items:
        if not isinstance(item, str) or not item.strip() or len(item) > 200 or "\x00" in item:
            raise InvalidManifest(f"field {key!r} must be a list of non-empty strings")
        if pattern is not None and not pattern.match(item):
            raise InvalidManifest(f"field {key!r} has a malformed entry {item!r}; "
                                  f"expected {hint}")
        _readable(item.strip(), key, one_line=True)
    if len(set(items)) != len(items):
        raise InvalidManifest(f"field {key!r} lists an entry twice")
    return tuple(item.strip() for item in items)


def _language(data: Mapping[str, Any]) -> str:
    if "documentation-language" not in data:
        return ""
    return _matching(data, "documentation-language", _LANG_RE, "a BCP 47 tag like 'en'")


def _path_field(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidManifest(f"field {key!r} must list file paths as strings")
    return safe_relative_path(value, field=key)


def _parts(value: Any) -> tuple[Part, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidManifest("field 'parts' must be a non-empty array of tables ([[parts]])")
    parts = tuple(_part(i, item) for i, item in enumerate(value))
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise InvalidManifest("field 'parts' has two parts with the same name")
    return parts


def _part(index: int, item: Any) -> Part:
    where = f"parts[{index}]."
    _check_keys(item, ("name", "files"), _PART_KEYS - {"name", "files"}, where=where)
    files = item["files"]
    if not isinstance(files, list) or not files:
        raise InvalidManifest(f"field {where}'files' must be a non-empty list of paths")
    quantity = item.get("quantity", 1)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 10_000:
        raise InvalidManifest(f"field {where}'quantity' must be an integer from 1 to 10000")
    return Part(
        name=_text(item, "name", one_line=True, where=where),
        files=tuple(_path_field(f"{where}files", f) for f in files),
        material=_text(item, "material", required=False, one_line=True, where=where),
        quantity=quantity,
    )


def _openscad(value: Any) -> OpenScad | None:
    if value is None:
        return None
    _check_keys(value, ("source",), _OPENSCAD_KEYS - {"source"}, where="openscad.")
    source = _path_field("openscad.source", value["source"])
    if not source.endswith(".scad"):
        raise InvalidManifest("field 'openscad.source' must name a .scad file")
    params = value.get("parameters", {})
    if not isinstance(params, Mapping):
        raise InvalidManifest("field 'openscad.parameters' must be a table of defaults")
    for key, default in params.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", key):
            raise InvalidManifest(f"openscad parameter {key!r} is not an OpenSCAD identifier")
        if isinstance(default, str) and (len(default) > _MAX_TEXT or "\x00" in default):
            raise InvalidManifest(f"openscad parameter {key!r} is too long or has forbidden characters")
        if not isinstance(default, bool | int | float | str):
            raise InvalidManifest(f"openscad parameter {key!r} must be a number, string or bool")
    return OpenScad(source=source, parameters=tuple(sorted(params.items())))
