"""Reading and writing binary glTF (GLB) containers.

A GLB file is a 12-byte header (magic ``glTF``, version, total length) followed
by chunks, each an 8-byte header (length, type) and its data: first a JSON
chunk, then optionally a BIN chunk. :func:`inspect_glb` checks that structure
without reading the chunk data, so it costs a few small reads whatever the
file size. It tells three outcomes apart: the file is a whole GLB, it looks
like a GLB that is still being written, or it can never be one.

The writers at the bottom build small valid models (the demo's meshes) and
synthetic GLBs of any size for tests and benchmarks.
"""

from __future__ import annotations

import json
import math
import os
import random
import struct
from dataclasses import dataclass
from typing import BinaryIO, Literal

MAGIC = b"glTF"
HEADER_BYTES = 12
CHUNK_HEADER_BYTES = 8
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
MAX_JSON_CHUNK_BYTES = 64 * 1024 * 1024

Verdict = Literal["ok", "incomplete", "invalid"]


@dataclass(frozen=True)
class GlbCheck:
    """The outcome of :func:`inspect_glb`.

    ``reason`` is a stable code for sidecars and logs (``empty_file``,
    ``not_glb``, ``unsupported_version``, ``truncated``, ``inconsistent_chunks``,
    ``invalid_json``) and ``message`` a sentence for people.
    """

    verdict: Verdict
    reason: str = ""
    message: str = ""
    declared_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


def _invalid(reason: str, message: str) -> GlbCheck:
    return GlbCheck("invalid", reason, message)


def _incomplete(message: str, declared: int = 0) -> GlbCheck:
    return GlbCheck("incomplete", "truncated", message, declared)


def inspect_glb(stream: BinaryIO, size: int, *, check_json: bool = False) -> GlbCheck:
    """Check the GLB structure of an open binary ``stream`` of ``size`` bytes.

    Reads the header and the chunk headers only (and the JSON chunk when
    ``check_json`` is true). A file whose header promises more bytes than it
    has is ``incomplete``: it may still be being written. A file shorter than
    a header is ``incomplete`` too when its first bytes agree with the magic.
    """
    if size == 0:
        return _invalid("empty_file", "The file is empty.")

    stream.seek(0)
    header = stream.read(HEADER_BYTES)
    if header[:4] == b"\0\0\0\0":
        # Allocated at full size and not written yet (Explorer, SMB copies).
        return _incomplete("The file starts with zeros; it is still being written.")
    if not MAGIC.startswith(header[:4]) or (len(header) >= 4 and header[:4] != MAGIC):
        return _invalid(
            "not_glb",
            f"The file does not start with the GLB magic 'glTF' "
            f"(first bytes: {header[:8]!r}).",
        )
    if len(header) < HEADER_BYTES:
        return _incomplete(f"Only {len(header)} bytes of the 12-byte header so far.")

    _, version, declared = struct.unpack("<4sII", header)
    if version != 2:
        return _invalid(
            "unsupported_version",
            f"GLB version {version} is not supported; only version 2 is.",
        )
    if declared > size:
        return _incomplete(
            f"The header declares {declared} bytes but the file has {size}.",
            declared,
        )
    if declared < size:
        return _invalid(
            "inconsistent_chunks",
            f"The file has {size} bytes but its header declares {declared}.",
        )
    return _check_chunks(stream, declared, check_json=check_json)


def _check_chunks(stream: BinaryIO, declared: int, *, check_json: bool) -> GlbCheck:
    offset = HEADER_BYTES
    index = 0
    while offset < declared:
        stream.seek(offset)
        chunk_header = stream.read(CHUNK_HEADER_BYTES)
        if len(chunk_header) < CHUNK_HEADER_BYTES:
            return _invalid(
                "inconsistent_chunks",
                f"Chunk {index} header at byte {offset} is cut off.",
            )
        length, chunk_type = struct.unpack("<II", chunk_header)
        if chunk_type == 0:
            # No real chunk has type 0: these are zeros of a file that was
            # allocated at its full size and is still being filled in.
            return _incomplete(
                f"Chunk {index} at byte {offset} is still zeros.", declared
            )
        end = offset + CHUNK_HEADER_BYTES + length
        if end > declared:
            return _invalid(
                "inconsistent_chunks",
                f"Chunk {index} runs to byte {end}, past the declared {declared}.",
            )
        if index == 0 and chunk_type != CHUNK_JSON:
            return _invalid(
                "inconsistent_chunks", "The first chunk is not the JSON chunk."
            )
        if index == 0 and check_json:
            problem = _check_json_chunk(stream, length)
            if problem:
                return _invalid("invalid_json", problem)
        offset = end
        index += 1

    if index == 0:
        return _invalid("inconsistent_chunks", "The file has no chunks.")
    return GlbCheck("ok", declared_bytes=declared)


def _check_json_chunk(stream: BinaryIO, length: int) -> str:
    if length > MAX_JSON_CHUNK_BYTES:
        return f"The JSON chunk is {length} bytes, larger than we read."
    data = stream.read(length)
    try:
        document = json.loads(data.rstrip(b" \x00").decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return f"The JSON chunk is not valid JSON: {exc}."
    version = (
        document.get("asset", {}).get("version") if isinstance(document, dict) else None
    )
    if not isinstance(version, str) or not version.startswith("2."):
        return "The JSON chunk has no glTF 2.x asset.version."
    return ""


def inspect_glb_path(
    path: str | os.PathLike[str], *, check_json: bool = False
) -> GlbCheck:
    """Open ``path`` and run :func:`inspect_glb` on it."""
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        return inspect_glb(stream, size, check_json=check_json)


# -- writers ----------------------------------------------------------------


def _pad(data: bytes, filler: bytes) -> bytes:
    return data + filler * (-len(data) % 4)


def assemble_glb(document: dict[str, object], binary: bytes) -> bytes:
    """Pack a glTF JSON document and its binary buffer into GLB bytes."""
    json_chunk = _pad(json.dumps(document, separators=(",", ":")).encode(), b" ")
    bin_chunk = _pad(binary, b"\x00")
    total = HEADER_BYTES + CHUNK_HEADER_BYTES * 2 + len(json_chunk) + len(bin_chunk)

    return b"".join(
        [
            struct.pack("<4sII", MAGIC, 2, total),
            struct.pack("<II", len(json_chunk), CHUNK_JSON),
            json_chunk,
            struct.pack("<II", len(bin_chunk), CHUNK_BIN),
            bin_chunk,
        ]
    )


def _mesh_document(
    name: str,
    vertex_count: int,
    index_count: int,
    bounds: tuple[list[float], list[float]],
    buffer_bytes: int,
) -> dict[str, object]:
    index_offset = vertex_count * 12
    return {
        "asset": {"version": "2.0", "generator": "glossi-watch"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [
            {
                "name": name,
                "primitives": [{"attributes": {"POSITION": 0}, "indices": 1}],
            }
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": vertex_count,
                "type": "VEC3",
                "min": bounds[0],
                "max": bounds[1],
            },
            {
                "bufferView": 1,
                "componentType": 5123,
                "count": index_count,
                "type": "SCALAR",
            },
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": index_offset, "target": 34962},
            {
                "buffer": 0,
                "byteOffset": index_offset,
                "byteLength": index_count * 2,
                "target": 34963,
            },
        ],
        "buffers": [{"byteLength": buffer_bytes}],
    }


def mesh_glb(
    name: str,
    positions: list[tuple[float, float, float]],
    triangles: list[tuple[int, int, int]],
    *,
    extra_bytes: int = 0,
) -> bytes:
    """Build a GLB holding one triangle mesh, optionally padded with data."""
    vertex_data = b"".join(struct.pack("<3f", *p) for p in positions)
    index_data = b"".join(struct.pack("<3H", *t) for t in triangles)
    binary = _pad(vertex_data + index_data, b"\x00") + bytes(extra_bytes)
    bounds = (
        [min(p[axis] for p in positions) for axis in range(3)],
        [max(p[axis] for p in positions) for axis in range(3)],
    )
    document = _mesh_document(
        name, len(positions), len(triangles) * 3, bounds, len(_pad(binary, b"\x00"))
    )
    return assemble_glb(document, binary)


def _cube() -> bytes:
    corners = [(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]
    faces = [
        (0, 1, 3),
        (0, 3, 2),
        (4, 6, 7),
        (4, 7, 5),
        (0, 4, 5),
        (0, 5, 1),
        (2, 3, 7),
        (2, 7, 6),
        (0, 2, 6),
        (0, 6, 4),
        (1, 5, 7),
        (1, 7, 3),
    ]
    return mesh_glb("cube", corners, faces)


def _pyramid() -> bytes:
    points = [
        (-0.5, 0.0, -0.5),
        (0.5, 0.0, -0.5),
        (0.5, 0.0, 0.5),
        (-0.5, 0.0, 0.5),
        (0.0, 1.0, 0.0),
    ]
    faces = [(0, 2, 1), (0, 3, 2), (0, 1, 4), (1, 2, 4), (2, 3, 4), (3, 0, 4)]
    return mesh_glb("pyramid", points, faces)


def _ring(segments: int = 24) -> bytes:
    points: list[tuple[float, float, float]] = []
    for step in range(segments):
        angle = 2 * math.pi * step / segments
        x, z = math.cos(angle), math.sin(angle)
        points += [(x, 0.0, z), (0.6 * x, 0.0, 0.6 * z)]
    faces: list[tuple[int, int, int]] = []
    for step in range(segments):
        a, b = 2 * step, 2 * ((step + 1) % segments)
        faces += [(a, b, a + 1), (a + 1, b, b + 1)]
    return mesh_glb("ring", points, faces)


def demo_models() -> dict[str, bytes]:
    """The small models the demo drops into its hot folder, by file name."""
    return {"cube.glb": _cube(), "pyramid.glb": _pyramid(), "ring.glb": _ring()}


def write_synthetic_glb(
    path: str | os.PathLike[str],
    total_bytes: int,
    *,
    seed: int = 0,
    piece_bytes: int = 1024 * 1024,
) -> None:
    """Write a valid GLB of exactly ``total_bytes`` bytes (a multiple of 4).

    The BIN chunk is filled with pseudo-random bytes from ``seed`` so that
    files of the same size differ; memory use stays at ``piece_bytes``.
    """
    head = _cube()
    json_length = struct.unpack_from("<I", head, HEADER_BYTES)[0]
    json_end = HEADER_BYTES + CHUNK_HEADER_BYTES + json_length
    bin_length = struct.unpack_from("<I", head, json_end)[0]
    bin_data = head[json_end + CHUNK_HEADER_BYTES :]

    document = json.loads(head[HEADER_BYTES + CHUNK_HEADER_BYTES : json_end])
    fixed = HEADER_BYTES + 2 * CHUNK_HEADER_BYTES + bin_length
    json_bytes = _sized_json(document, total_bytes - fixed)
    filler = total_bytes - fixed - len(json_bytes)
    document["buffers"][0]["byteLength"] = bin_length + filler
    json_bytes = _sized_json(document, total_bytes - fixed)
    filler = total_bytes - fixed - len(json_bytes)
    if total_bytes % 4 or filler < 0:
        raise ValueError(f"cannot write a GLB of {total_bytes} bytes")

    rng = random.Random(seed)
    with open(path, "wb") as out:
        out.write(struct.pack("<4sII", MAGIC, 2, total_bytes))
        out.write(struct.pack("<II", len(json_bytes), CHUNK_JSON) + json_bytes)
        out.write(struct.pack("<II", bin_length + filler, CHUNK_BIN) + bin_data)
        while filler > 0:
            piece = min(filler, piece_bytes)
            out.write(rng.randbytes(piece))
            filler -= piece


def _sized_json(document: dict[str, object], room: int) -> bytes:
    data = _pad(json.dumps(document, separators=(",", ":")).encode(), b" ")
    if len(data) > room:
        raise ValueError("no room for the JSON chunk")
    return data
