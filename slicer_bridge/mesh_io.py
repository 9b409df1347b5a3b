"""Load triangle meshes with limits checked before the bulk of a file is read.

Binary STL is read straight into numpy (no per-triangle Python); ASCII STL, OBJ,
PLY and 3MF are parsed with their sizes checked first. Nothing here merges
vertices or judges geometry: that is :mod:`slicer_bridge.printability`'s job.
Every failure is a :class:`MeshError` whose message says what is wrong with the
file and what to do next.
"""

from __future__ import annotations

import lzma
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree import ElementTree

import numpy as np
from numpy.typing import NDArray

from slicer_bridge.base import SlicerBridgeError

__all__ = [
    "ArchiveRefused",
    "EmptyMesh",
    "InvalidGeometry",
    "LoadLimits",
    "LoadedMesh",
    "MeshError",
    "MeshFormatError",
    "MeshTooLarge",
    "UnsupportedFormat",
    "load_mesh",
    "read_binary_stl_header",
    "write_binary_stl",
]

_STL_HEADER = 84
_MAX_COORDINATE = 1e9
_STL_CHUNK = 1 << 18
_STL_RECORD = 50
_STL_DTYPE = np.dtype([
    ("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attr", "<u2"),
])
# 3MF `unit` attribute -> millimetres (3MF core spec, 3.4 "Model").
_3MF_UNITS = {
    "micron": 0.001, "millimeter": 1.0, "centimeter": 10.0,
    "inch": 25.4, "foot": 304.8, "meter": 1000.0,
}
_3MF_NS = "{http://schemas.microsoft.com/3dmanufacturing/core/2015/02}"


class MeshError(SlicerBridgeError, ValueError):
    """A mesh file cannot be used. The file (its author) is at fault; retrying will not help."""


class UnsupportedFormat(MeshError):
    """The file's extension names no format this loader reads."""


class EmptyMesh(MeshError):
    """The file holds no triangles."""


class MeshFormatError(MeshError):
    """The file is corrupt, truncated or not what its extension says."""


class MeshTooLarge(MeshError):
    """The file exceeds a size or triangle limit; refused before it was loaded."""


class ArchiveRefused(MeshError):
    """A 3MF archive is refused before extraction (not a zip, zip bomb, too many entries)."""


class InvalidGeometry(MeshError):
    """Vertices that are NaN or infinite, or faces that index missing vertices."""


@dataclass(frozen=True, slots=True)
class LoadLimits:
    """What a loader accepts; checked before the bulk of a file is read.

    Attributes:
        max_file_bytes: Largest file accepted at all.
        max_triangles: Most triangles accepted (after triangulating polygons).
        max_vertices: Most vertices accepted (indexed formats).
        max_archive_bytes: Largest total declared uncompressed size of a 3MF.
        max_compression_ratio: Largest declared uncompressed/compressed ratio of
            any 3MF entry; text mesh data compresses about 5-20x, bombs 1000x.
        max_archive_entries: Most entries in a 3MF zip.
        max_text_bytes: Largest text mesh (ASCII STL, OBJ, ASCII PLY, a 3MF's
            model XML) accepted: text is parsed in Python, at several times its
            size in memory.
    """

    max_file_bytes: int = 1 << 30
    max_triangles: int = 5_000_000
    max_vertices: int = 10_000_000
    max_archive_bytes: int = 1 << 30
    max_compression_ratio: float = 200.0
    max_archive_entries: int = 1000
    max_text_bytes: int = 256 << 20


@dataclass(frozen=True, slots=True, eq=False)
class LoadedMesh:
    """A triangle soup or indexed mesh exactly as the file stated it.

    Attributes:
        vertices: (n, 3) float32 (binary STL, as stored) or float64, in the file's
            units (3MF: converted to mm).
        faces: (m, 3) int64 indices into `vertices`, m >= 1; None for a triangle
            soup (binary STL), where face i is vertices 3i, 3i+1, 3i+2.
        format: "stl-binary", "stl-ascii", "obj", "ply" or "3mf".
        notes: Things the loader did that a person should know (triangulated
            polygons, a 3MF unit converted, trailing bytes ignored).
        unit_hint: Unit declared by the file ("millimeter" for 3MF), or "".
    """

    vertices: NDArray[np.floating[Any]]
    faces: NDArray[np.int64] | None
    format: str
    notes: tuple[str, ...] = field(default=())
    unit_hint: str = ""

    @property
    def face_count(self) -> int:
        """Number of triangles."""
        return len(self.vertices) // 3 if self.faces is None else len(self.faces)

    def face_indices(self) -> NDArray[np.int64]:
        """The (m, 3) int64 faces, materialized for a soup."""
        if self.faces is None:
            return np.arange(len(self.vertices), dtype=np.int64).reshape(-1, 3)
        return self.faces


def load_mesh(path: str | Path, limits: LoadLimits = LoadLimits()) -> LoadedMesh:
    """Load a mesh file (binary/ASCII STL, OBJ, PLY, 3MF) with limits.

    Args:
        path: The file; its extension chooses the format (STL sniffs binary/ASCII).
        limits: Size limits, checked before the bulk of the file is read.

    Returns:
        The mesh as stated in the file, vertices finite and face indices in range.

    Raises:
        MeshError: A subclass naming what is wrong: UnsupportedFormat, EmptyMesh,
            MeshFormatError, MeshTooLarge, ArchiveRefused, InvalidGeometry.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    readers = {".stl": _read_stl, ".obj": _read_obj, ".ply": _read_ply, ".3mf": _read_3mf}
    if suffix not in readers:
        raise UnsupportedFormat(
            f"{path.name}: unsupported mesh format {suffix or '(no extension)'!r}; "
            "export it as STL, OBJ, PLY or 3MF")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MeshFormatError(f"{path}: cannot read the file: {exc.strerror}") from exc
    if size == 0:
        raise EmptyMesh(f"{path.name}: the file is empty (0 bytes); export the mesh again")
    if size > limits.max_file_bytes:
        raise MeshTooLarge(
            f"{path.name}: {size:,} bytes exceeds the limit of {limits.max_file_bytes:,} bytes; "
            "simplify or split the model")
    try:
        with path.open("rb") as stream:
            mesh = readers[suffix](stream, size, limits, path.name)
    except OSError as exc:
        raise MeshFormatError(f"{path}: cannot read the file: {exc.strerror}") from exc
    return _validated(mesh, limits, path.name)


def _validated(mesh: LoadedMesh, limits: LoadLimits, name: str) -> LoadedMesh:
    if mesh.face_count == 0:
        raise EmptyMesh(f"{name}: the file holds no triangles; export the mesh again")
    if mesh.face_count > limits.max_triangles:
        raise MeshTooLarge(_too_many(name, mesh.face_count, limits))
    v = mesh.vertices
    finite = np.isfinite(v[:, 0]) & np.isfinite(v[:, 1]) & np.isfinite(v[:, 2])
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidGeometry(
            f"{name}: {len(bad):,} vertices have NaN or infinite coordinates "
            f"(first at vertex index {int(bad[0])}); the exporter wrote broken numbers, "
            "export the mesh again")
    largest = max(-float(mesh.vertices.min()), float(mesh.vertices.max()))
    if largest > _MAX_COORDINATE:
        raise InvalidGeometry(
            f"{name}: a coordinate is {largest:.3g}, beyond {_MAX_COORDINATE:.0e} (a part "
            "larger than 1000 km): the file is corrupt or in the wrong unit")
    if mesh.faces is None:
        return mesh
    if len(mesh.vertices) == 0 or mesh.faces.min() < 0 or mesh.faces.max() >= len(mesh.vertices):
        raise InvalidGeometry(
            f"{name}: faces refer to vertices that do not exist "
            f"({len(mesh.vertices):,} vertices); the file is corrupt")
    return mesh


def _too_many(name: str, count: int, limits: LoadLimits) -> str:
    return (f"{name}: {count:,} triangles exceeds the limit of {limits.max_triangles:,}; "
            "decimate the mesh (e.g. in MeshLab or Blender) and try again")


# --- STL -----------------------------------------------------------------------------

def read_binary_stl_header(stream: BinaryIO, size: int) -> int | None:
    """Return the triangle count a binary STL header declares, or None if not binary.

    A file counts as binary STL when its size is exactly 84 + 50 * count, or when
    it does not start with "solid" followed by a "facet" soon after (ASCII STL
    always does; some binary exporters also write "solid" into the header).

    Raises:
        MeshFormatError: The file is shorter than the 84-byte header.
    """
    head = stream.read(_STL_HEADER)
    if len(head) < _STL_HEADER:
        if head.lstrip().startswith(b"solid"):
            return None
        raise MeshFormatError(
            f"the file is {len(head)} bytes, shorter than a binary STL header (84 bytes): "
            "it is truncated")
    count = int(np.frombuffer(head, "<u4", 1, 80)[0])
    if size == _STL_HEADER + _STL_RECORD * count:
        return count
    if head.lstrip().startswith(b"solid"):
        stream.seek(0)
        start = stream.read(1024)
        stream.seek(_STL_HEADER)
        if b"facet" in start or b"endsolid" in start:
            return None
    return count


def _read_stl(stream: BinaryIO, size: int, limits: LoadLimits, name: str) -> LoadedMesh:
    count = read_binary_stl_header(stream, size)
    if count is None:
        _check_text_size(size, limits, name, "ASCII STL")
        stream.seek(0)
        return _read_ascii_stl(stream.read(), limits, name)
    if count > limits.max_triangles:
        raise MeshTooLarge(_too_many(name, count, limits))
    expected = _STL_HEADER + _STL_RECORD * count
    if size < expected:
        held = (size - _STL_HEADER) // _STL_RECORD
        raise MeshFormatError(
            f"{name}: the binary STL header claims {count:,} triangles ({expected:,} bytes) "
            f"but the file has {size:,} bytes, room for {held:,}: it is truncated or corrupt; "
            "export or download it again")
    vertices = np.empty((count, 3, 3), dtype=np.float32)
    for start in range(0, count, _STL_CHUNK):
        records = np.fromfile(stream, dtype=_STL_DTYPE, count=min(_STL_CHUNK, count - start))
        if len(records) != min(_STL_CHUNK, count - start):
            raise MeshFormatError(f"{name}: the file ended early while reading triangles")
        vertices[start:start + len(records)] = records["vertices"]
    notes = () if size == expected else (
        f"ignored {size - expected:,} bytes after the {count:,} triangles",)
    return LoadedMesh(vertices.reshape(-1, 3), None, "stl-binary", notes)


_FLOAT = rb"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?))"
_ASCII_VERTEX = re.compile(rb"vertex\s+" + _FLOAT + rb"\s+" + _FLOAT + rb"\s+" + _FLOAT,
                           re.IGNORECASE)


def _check_text_size(size: int, limits: LoadLimits, name: str, what: str) -> None:
    if size > limits.max_text_bytes:
        raise MeshTooLarge(
            f"{name}: {size:,} bytes of {what} exceeds the limit of {limits.max_text_bytes:,} "
            "bytes for text mesh formats; export it as binary STL or 3MF instead")


_NAME_SLACK = 16


def _read_ascii_stl(data: bytes, limits: LoadLimits, name: str) -> LoadedMesh:
    facets = data.count(b"endfacet")
    if facets > limits.max_triangles:
        raise MeshTooLarge(_too_many(name, facets, limits))
    # Count before collecting: a file of only "vertex" lines must not become a list of
    # millions of tuples first (a solid's name may say "vertex" too, hence the slack).
    mentions = data.count(b"vertex")
    if mentions > 3 * facets + _NAME_SLACK:
        raise MeshFormatError(
            f"{name}: the ASCII STL has {mentions:,} vertex lines for {facets:,} facets "
            "(3 each expected): it is truncated or corrupt")
    found = _ASCII_VERTEX.findall(data)
    if not found:
        raise EmptyMesh(f"{name}: the ASCII STL holds no triangles; export the mesh again")
    if len(found) % 3 or len(found) != 3 * facets:
        raise MeshFormatError(
            f"{name}: the ASCII STL has {len(found):,} vertex lines for {facets:,} facets "
            "(3 each expected): it is truncated or corrupt")
    return LoadedMesh(np.array(found, dtype=np.float64), None, "stl-ascii")


def write_binary_stl(path: str | Path, vertices: NDArray[np.float64],
                     faces: NDArray[np.int64]) -> None:
    """Write a binary STL.

    Args:
        path: Destination; overwritten.
        vertices: (n, 3) float64.
        faces: (m, 3) int64 indices into `vertices`.

    Raises:
        OSError: The file cannot be written.
    """
    triangles = vertices[faces]
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite input is written as is
        normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    records = np.zeros(len(faces), dtype=_STL_DTYPE)
    records["normal"] = normals
    records["vertices"] = triangles
    with Path(path).open("wb") as out:
        out.write(b"spimeforge binary STL".ljust(80, b" "))
        out.write(np.uint32(len(faces)).tobytes())
        records.tofile(out)


# --- OBJ -----------------------------------------------------------------------------

_OBJ_VERTEX = re.compile(rb"^v[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)", re.MULTILINE)
_OBJ_VERTEX_LINE = re.compile(rb"^v[ \t]", re.MULTILINE)
_OBJ_FACE_LINE = re.compile(rb"^f[ \t]", re.MULTILINE)
_OBJ_CORNER = rb"[ \t]+([1-9]\d*)(?:/\S*)?"
_OBJ_TRIANGLE = re.compile(rb"^f" + _OBJ_CORNER * 3 + rb"[ \t]*\r?$", re.MULTILINE)


def _read_obj(stream: BinaryIO, size: int, limits: LoadLimits, name: str) -> LoadedMesh:
    _check_text_size(size, limits, name, "OBJ")
    data = stream.read()
    vertex_total = len(_OBJ_VERTEX_LINE.findall(data))
    if vertex_total > limits.max_vertices:
        raise MeshTooLarge(f"{name}: {vertex_total:,} vertices exceeds the limit of "
                           f"{limits.max_vertices:,}; decimate the mesh")
    fast = _read_obj_triangles(data, vertex_total, limits, name)
    if fast is not None:
        return fast
    return _read_obj_lines(data.decode("utf-8", errors="replace"), vertex_total, limits, name)


def _read_obj_triangles(data: bytes, vertex_total: int, limits: LoadLimits,
                        name: str) -> LoadedMesh | None:
    """The common OBJ, parsed without a per-line loop: only "v x y z" and triangles
    with positive in-range indices. None means "use the line-by-line parser"."""
    if b"\\\n" in data or b"\\\r\n" in data:
        return None
    face_total = len(_OBJ_FACE_LINE.findall(data))
    if face_total > limits.max_triangles:
        return None
    vertices = _OBJ_VERTEX.findall(data)
    triangles = _OBJ_TRIANGLE.findall(data)
    if len(vertices) != vertex_total or len(triangles) != face_total:
        return None
    try:
        vertex_array = np.array(vertices, dtype=np.float64).reshape(-1, 3)
    except ValueError:
        return None
    try:
        faces = np.array(triangles, dtype=np.int64).reshape(-1, 3) - 1
    except (ValueError, OverflowError):  # an index beyond int64: the line parser names it
        return None
    if faces.size and faces.max() >= vertex_total:
        return None
    return LoadedMesh(vertex_array, faces, "obj")


def _read_obj_lines(text: str, vertex_total: int, limits: LoadLimits, name: str) -> LoadedMesh:
    text = text.replace("\\\r\n", " ").replace("\\\n", " ")
    if "\r" in text:  # CRLF and old Mac CR line ends, as str.splitlines reads them
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    vertices: list[tuple[str, str, str]] = []
    faces: list[list[int]] = []
    polygons = 0
    for number, line in enumerate(_lines(text), 1):
        if line.startswith("v "):
            parts = line.split()
            if len(parts) < 4:
                raise MeshFormatError(f"{name} line {number}: a vertex needs 3 coordinates")
            vertices.append((parts[1], parts[2], parts[3]))
        elif line.startswith("f "):
            budget = limits.max_triangles - len(faces) + 2
            corners = _obj_corners(line, number, len(vertices), vertex_total, name, budget)
            if len(corners) > budget:
                raise MeshTooLarge(_too_many(name, len(faces) + len(corners) - 2, limits))
            polygons += len(corners) > 3
            faces.extend([corners[0], corners[i], corners[i + 1]]
                         for i in range(1, len(corners) - 1))
            if len(faces) > limits.max_triangles:
                raise MeshTooLarge(_too_many(name, len(faces), limits))
    try:
        vertex_array = np.array(vertices, dtype=np.float64).reshape(-1, 3)
    except ValueError as exc:
        raise MeshFormatError(f"{name}: a vertex coordinate is not a number: {exc}") from exc
    notes = (f"triangulated {polygons:,} polygons with more than 3 corners",) if polygons else ()
    face_array = np.array(faces, dtype=np.int64).reshape(-1, 3)
    return LoadedMesh(vertex_array, face_array, "obj", notes)


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` one at a time: a list of every line of a file of short lines took 27
    times the file's size."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield text[start:end]
        start = end + 1


_TOKEN = re.compile(r"\S+")


def _obj_corners(line: str, number: int, defined: int, total: int, name: str,
                 budget: int) -> list[int]:
    """Zero-based vertex indices of one "f" line; negative indices count back from the
    vertices defined so far, positive ones may refer to any vertex of the file. Stops
    after ``budget + 1`` corners (the caller refuses the polygon): one "f" line of
    millions of corners must not be held in memory first."""
    corners: list[int] = []
    for token_match in _TOKEN.finditer(line, 1):
        if len(corners) > budget:
            break
        token = token_match.group()
        try:
            index = int(token.split("/")[0])
        except ValueError as exc:
            raise MeshFormatError(f"{name} line {number}: {token!r} is not a vertex index") from exc
        resolved = index - 1 if index > 0 else defined + index
        limit = total if index > 0 else defined
        if index == 0 or not 0 <= resolved < limit:
            where = "in the file" if index > 0 else "before it"
            raise InvalidGeometry(
                f"{name} line {number}: face refers to vertex {index}, but only {limit:,} "
                f"vertices are defined {where}; the OBJ is corrupt")
        corners.append(resolved)
    if len(corners) < 3:
        raise MeshFormatError(f"{name} line {number}: a face needs at least 3 vertices")
    return corners


# --- PLY -----------------------------------------------------------------------------

_PLY_ELEMENT = re.compile(rb"^element\s+(\w+)\s+(\d+)", re.MULTILINE)


def _read_ply(stream: BinaryIO, size: int, limits: LoadLimits, name: str) -> LoadedMesh:
    head = stream.read(min(size, 65536))
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise MeshFormatError(f"{name}: not a PLY file (no 'ply' magic or no end_header)")
    declared = _PLY_ELEMENT.findall(head[:end])
    if wide := next((k.decode() for k, v in declared if len(v) > 18), None):  # int() refuses 5,000 digits
        raise MeshTooLarge(f"{name}: the PLY header declares a {wide} count of more than 18 digits")
    counts = {k.decode(): int(v) for k, v in declared}
    if counts.get("face", 0) > limits.max_triangles:
        raise MeshTooLarge(_too_many(name, counts["face"], limits))
    if counts.get("vertex", 0) > limits.max_vertices:
        raise MeshTooLarge(f"{name}: {counts['vertex']:,} vertices exceeds the limit of "
                           f"{limits.max_vertices:,}; decimate the mesh")
    if b"format ascii" in head[:end]:
        _check_text_size(size, limits, name, "ASCII PLY")
    stream.seek(0)
    # trimesh's PLY parser is vectorized; it is used only after the header passed the limits.
    from trimesh.exchange.ply import load_ply

    try:
        loaded = load_ply(stream, prefer_color=None, skip_materials=True)
    except Exception as exc:  # trimesh raises many types on a corrupt PLY
        raise MeshFormatError(f"{name}: the PLY file is corrupt: {exc}") from exc
    faces = np.asarray(loaded.get("faces", np.zeros((0, 3))), dtype=np.int64)
    if faces.ndim != 2 or (faces.size and faces.shape[1] != 3):
        raise MeshFormatError(f"{name}: the PLY faces are not triangles")
    vertices = np.asarray(loaded["vertices"], dtype=np.float64).reshape(-1, 3)
    return LoadedMesh(vertices, faces.reshape(-1, 3), "ply")


# --- 3MF -----------------------------------------------------------------------------

# What zipfile raises on a damaged or unreadable archive: NotImplementedError for a compression method
# or version it cannot read, RuntimeError for an encrypted entry, the decompressors' own errors for
# corrupt data (zlib.error, lzma.LZMAError; bz2 raises OSError), ValueError for impossible headers.
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError, zlib.error,
               lzma.LZMAError)


def _read_3mf(stream: BinaryIO, size: int, limits: LoadLimits, name: str) -> LoadedMesh:
    if not zipfile.is_zipfile(stream):
        raise ArchiveRefused(
            f"{name}: a 3MF file is a zip archive, and this is not one; export it again")
    stream.seek(0)
    try:
        archive = zipfile.ZipFile(stream)
    except _ZIP_ERRORS as exc:
        raise ArchiveRefused(f"{name}: the 3MF zip is corrupt: {exc}") from exc
    with archive:
        model = _3mf_model_entry(archive, limits, name)
        data = _read_entry(archive, model, name)
    return _parse_3mf_model(data, limits, name)


def _3mf_model_entry(archive: zipfile.ZipFile, limits: LoadLimits, name: str) -> zipfile.ZipInfo:
    entries = archive.infolist()
    if len(entries) > limits.max_archive_entries:
        raise ArchiveRefused(f"{name}: {len(entries):,} entries in the 3MF archive "
                             f"(limit {limits.max_archive_entries:,})")
    declared = sum(e.file_size for e in entries)
    if declared > limits.max_archive_bytes:
        raise ArchiveRefused(
            f"{name}: the 3MF archive declares {declared:,} bytes uncompressed, over the "
            f"limit of {limits.max_archive_bytes:,}; refused before extraction")
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if ratio > limits.max_compression_ratio:
            raise ArchiveRefused(
                f"{name}: entry {entry.filename!r} expands {ratio:,.0f}x "
                f"({entry.compress_size:,} -> {entry.file_size:,} bytes), over the limit of "
                f"{limits.max_compression_ratio:,.0f}x: a likely zip bomb, refused before "
                "extraction")
    models = [e for e in entries if e.filename.lower().endswith(".model")]
    if not models:
        raise MeshFormatError(f"{name}: the 3MF archive has no 3D model part (*.model)")
    main = [e for e in models if e.filename.lower() == "3d/3dmodel.model"]
    chosen = (main or models)[0]
    _check_text_size(chosen.file_size, limits, name, "3MF model XML")
    return chosen


def _read_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, name: str) -> bytes:
    try:
        with archive.open(entry) as part:
            # Read one byte past the declared size so a lying header is caught.
            data = part.read(entry.file_size + 1)
    except _ZIP_ERRORS as exc:
        raise ArchiveRefused(f"{name}: cannot extract {entry.filename!r}: {exc}") from exc
    if len(data) > entry.file_size:
        raise ArchiveRefused(f"{name}: {entry.filename!r} is larger than its declared size")
    return data


class _GuardedBuilder(ElementTree.TreeBuilder):
    """A tree builder that refuses a DTD (in any encoding: the parser has decoded it)
    and stops after ``cap`` elements, before they are all in memory."""

    def __init__(self, cap: int, name: str) -> None:
        super().__init__()
        self._left, self._cap, self._name = cap, cap, name

    def start(self, tag: str, attrs: dict[str, str]) -> ElementTree.Element:
        self._left -= 1
        if self._left < 0:
            raise MeshTooLarge(f"{self._name}: the 3MF model XML has more than {self._cap:,} "
                               "elements for the vertices and triangles it holds; refused")
        return super().start(tag, attrs)

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise ArchiveRefused(f"{self._name}: the 3MF model declares a DTD or entities; refused")


def _parse_xml(data: bytes, cap: int, name: str) -> ElementTree.Element:
    parser = ElementTree.XMLParser(target=_GuardedBuilder(cap, name))
    try:
        # Chunks: a refusal raised by the builder stops the parse at the chunk's end.
        for start in range(0, len(data), _XML_CHUNK):
            parser.feed(data[start:start + _XML_CHUNK])
        root: ElementTree.Element = parser.close()
    except MeshError:  # the builder's refusal (a ValueError too)
        raise
    # ValueError: an encoding expat cannot read ("multi-byte encodings are not supported");
    # 3MF models are UTF-8 (3MF core specification, 2.1).
    except (ElementTree.ParseError, ValueError, LookupError) as exc:
        raise MeshFormatError(f"{name}: the 3MF model XML is malformed: {exc}") from exc
    return root


_XML_CHUNK = 1 << 16
_XML_SLACK = 100_000  # resources, build items, metadata, components


def _parse_3mf_model(data: bytes, limits: LoadLimits, name: str) -> LoadedMesh:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ArchiveRefused(f"{name}: the 3MF model declares a DTD or entities; refused")
    n_triangles, n_vertices = data.count(b"<triangle"), data.count(b"<vertex")
    if n_triangles > limits.max_triangles:
        raise MeshTooLarge(_too_many(name, n_triangles, limits))
    if n_vertices > limits.max_vertices:
        raise MeshTooLarge(f"{name}: {n_vertices:,} vertices exceeds the limit of "
                           f"{limits.max_vertices:,}; decimate the mesh")
    # Elements other than (UTF-8 spelled) vertices and triangles are few in a real 3MF.
    root = _parse_xml(data, n_triangles + n_vertices + _XML_SLACK, name)
    unit = root.get("unit", "millimeter")
    if unit not in _3MF_UNITS:
        raise MeshFormatError(f"{name}: unknown 3MF unit {unit!r}")
    objects = {o.get("id"): o for o in root.iter(f"{_3MF_NS}object")}
    items = [(i.get("objectid"), _3mf_transform(i.get("transform"), name))
             for i in root.iter(f"{_3MF_NS}item")]
    if not items:
        items = [(key, np.eye(4)) for key in objects]
    _check_3mf_expansion(objects, [key for key, _ in items], limits, name)
    parts = [_3mf_object(objects, key, matrix, 0, name) for key, matrix in items]
    vertices, faces = _concatenate([p for group in parts for p in group])
    scale = _3MF_UNITS[unit]
    notes = () if unit == "millimeter" else (f"converted 3MF unit {unit!r} to millimetres",)
    return LoadedMesh(vertices * scale, faces, "3mf", notes, unit)


def _check_3mf_expansion(objects: dict[str | None, ElementTree.Element], keys: list[str | None],
                         limits: LoadLimits, name: str) -> None:
    """Refuse a build whose components and items expand past the limits, before expanding it.

    Each object's expanded size (its own mesh plus its components', recursively)
    is counted once and reused, so a few kilobytes of nested components that
    would expand to billions of triangles cost a few dictionary lookups.

    Raises:
        MeshTooLarge: the expanded triangles or vertices exceed the limits.
        MeshFormatError: a missing or cyclic object, or nesting deeper than 16.
    """
    sizes: dict[str | None, tuple[int, int]] = {}
    triangles = vertices = 0
    for key in keys:
        t, v = _3mf_expanded(objects, key, sizes, set(), name)
        triangles, vertices = triangles + t, vertices + v
    if triangles > limits.max_triangles:
        raise MeshTooLarge(
            f"{name}: the 3MF build expands (components and items) to {triangles:,} triangles, over the "
            f"limit of {limits.max_triangles:,}; refused before expanding it")
    if vertices > limits.max_vertices:
        raise MeshTooLarge(
            f"{name}: the 3MF build expands to {vertices:,} vertices, over the limit of "
            f"{limits.max_vertices:,}; refused before expanding it")


def _3mf_expanded(objects: dict[str | None, ElementTree.Element], key: str | None,
                  sizes: dict[str | None, tuple[int, int]], path: set[str | None],
                  name: str) -> tuple[int, int]:
    """(triangles, vertices) of one object with its components expanded, memoized in ``sizes``."""
    if key in sizes:
        return sizes[key]
    if key not in objects or key in path or len(path) > 16:
        raise MeshFormatError(f"{name}: 3MF build refers to missing or cyclic object {key!r}")
    obj = objects[key]
    triangles = vertices = 0
    mesh = obj.find(f"{_3MF_NS}mesh")
    if mesh is not None:
        triangles = sum(1 for _ in mesh.iter(f"{_3MF_NS}triangle"))
        vertices = sum(1 for _ in mesh.iter(f"{_3MF_NS}vertex"))
    path.add(key)
    for component in obj.iter(f"{_3MF_NS}component"):
        t, v = _3mf_expanded(objects, component.get("objectid"), sizes, path, name)
        triangles, vertices = triangles + t, vertices + v
    path.discard(key)
    sizes[key] = (triangles, vertices)
    return sizes[key]


def _3mf_object(objects: dict[str | None, ElementTree.Element], key: str | None,
                matrix: NDArray[np.float64], depth: int,
                name: str) -> list[tuple[NDArray[np.float64], NDArray[np.int64]]]:
    if key not in objects or depth > 16:
        raise MeshFormatError(f"{name}: 3MF build refers to missing or cyclic object {key!r}")
    obj = objects[key]
    found = []
    mesh = obj.find(f"{_3MF_NS}mesh")
    if mesh is not None:
        vertices, faces = _3mf_mesh(mesh, name)
        homogeneous = np.c_[vertices, np.ones(len(vertices))]
        found.append(((homogeneous @ matrix.T)[:, :3], faces))
    for component in obj.iter(f"{_3MF_NS}component"):
        inner = matrix @ _3mf_transform(component.get("transform"), name)
        found.extend(_3mf_object(objects, component.get("objectid"), inner, depth + 1, name))
    return found


def _3mf_mesh(mesh: ElementTree.Element,
              name: str) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    try:
        vertices = np.array([(v.get("x"), v.get("y"), v.get("z"))
                             for v in mesh.iter(f"{_3MF_NS}vertex")], dtype=np.float64)
        faces = np.array([(t.get("v1"), t.get("v2"), t.get("v3"))
                          for t in mesh.iter(f"{_3MF_NS}triangle")], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MeshFormatError(f"{name}: a 3MF vertex or triangle is malformed: {exc}") from exc
    vertices = vertices.reshape(-1, 3)
    faces = faces.reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise InvalidGeometry(
            f"{name}: a 3MF triangle refers to a vertex that does not exist "
            f"({len(vertices):,} vertices); the file is corrupt")
    return vertices, faces


def _3mf_transform(text: str | None, name: str) -> NDArray[np.float64]:
    matrix = np.eye(4)
    if text:
        shown = text if len(text) <= 60 else text[:57] + "..."
        try:
            values = np.array(text.split(), dtype=np.float64)
        except ValueError as exc:
            raise MeshFormatError(f"{name}: 3MF transform {shown!r} is not 12 numbers") from exc
        if len(values) != 12:
            raise MeshFormatError(f"{name}: 3MF transform {shown!r} needs 12 numbers")
        matrix[:3, :3] = values[:9].reshape(3, 3).T
        matrix[:3, 3] = values[9:]
    return matrix


def _concatenate(parts: list[tuple[NDArray[np.float64], NDArray[np.int64]]],
                 ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    if not parts:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    offsets = np.cumsum([0] + [len(v) for v, _ in parts[:-1]])
    vertices = np.concatenate([v for v, _ in parts])
    faces = np.concatenate([f + o for (_, f), o in zip(parts, offsets, strict=True)])
    return vertices, faces
