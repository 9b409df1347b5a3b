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

from hub.errors import InvalidManifest
from hub.licenses import parse_expression

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "OpenScad",
    "Part",
    "dump_manifest",
    "manifest_from_dict",
    "missing_files",
    "parse_manifest",
    "safe_relative_path",
]

MANIFEST_NAME = "spime.toml"

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
_DERIVATIVE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}@[0-9a-f]{8,64}$")
_LANG_RE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,39}$")
_MAX_TEXT = 10_000
_MAX_PATH = 1024

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


def safe_relative_path(name: str) -> str:
    """Check that ``name`` is a safe relative POSIX path inside a design.

    Args:
        name: a path as written in a manifest or a push.

    Returns:
        The same path, unchanged.

    Raises:
        InvalidManifest: the path is empty, absolute, has a ``..``, ``.`` or empty
            part, a backslash, a NUL or another control character, or is too long.
    """
    problem = _path_problem(name)
    if problem:
        raise InvalidManifest(f"file path {name!r} is not allowed: {problem}; "
                              "use a relative path inside the design folder")
    return name


def _path_problem(name: str) -> str:
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name) > _MAX_PATH:
        return f"it is longer than {_MAX_PATH} characters"
    if "\x00" in name or any(ord(c) < 32 for c in name):
        return "it contains NUL or a control character"
    if "\\" in name:
        return "it contains a backslash (use '/')"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "it is absolute"
    parts = name.split("/")
    if ".." in parts:
        return "it contains '..'"
    if any(p in ("", ".") for p in parts):
        return "it has an empty or '.' component"
    return ""


def parse_manifest(text: str) -> Manifest:
    """Parse and validate the text of a ``spime.toml``.

    Args:
        text: the manifest's TOML text.

    Returns:
        The validated manifest.

    Raises:
        InvalidManifest: the TOML is malformed, a required field is missing, a
            field has the wrong type or value, or a key is unknown. The message
            names the field.
        InvalidLicense: the ``license`` is not a valid SPDX expression.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidManifest(f"{MANIFEST_NAME} is not valid TOML: {exc}") from exc
    return manifest_from_dict(data)


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
    return value


def _str_list(data: Mapping[str, Any], key: str, pattern: re.Pattern[str] | None = None,
              hint: str = "") -> tuple[str, ...]:
    items = _list(data, key)
    for item in items:
        if not isinstance(item, str) or not item.strip() or len(item) > 200:
            raise InvalidManifest(f"field {key!r} must be a list of non-empty strings")
        if pattern is not None and not pattern.match(item):
            raise InvalidManifest(f"field {key!r} has a malformed entry {item!r}; "
                                  f"expected {hint}")
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
    return safe_relative_path(value)


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
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise InvalidManifest(f"openscad parameter {key!r} is not an OpenSCAD identifier")
        if not isinstance(default, bool | int | float | str):
            raise InvalidManifest(f"openscad parameter {key!r} must be a number, string or bool")
    return OpenScad(source=source, parameters=tuple(sorted(params.items())))
