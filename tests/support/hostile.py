"""Hostile files that stay inside every size limit and would cost a worker seconds or hundreds of
megabytes to decode: what the site must refuse from their headers.

Built on the fly from the committed example lesion; the tests send small ones, ``benchmarks.soak``
the full-size ones.
"""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

LESION = Path(__file__).resolve().parents[2] / "examples" / "images" / "ISIC_0024306.jpg"
SOS = b"\xff\xda"  # a JPEG scan starts here; entropy-coded bytes never contain it (0xFF is stuffed)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def jpeg_with(data: bytes, extra: bytes, *, before_scan: int = 0) -> bytes:
    """The JPEG ``data`` with ``extra`` bytes inserted before its scan number ``before_scan`` (0: the first).

    ``b"\\xff" * n`` is padding between markers, ``b"\\xff\\xfe\\x00\\x02" * n`` is n empty comments.
    """
    at = -1
    for _ in range(before_scan + 1):
        at = data.index(SOS, at + 1)
    return data[:at] + extra + data[at:]


def jpeg_claiming(data: bytes, size: tuple[int, int], *, extra_scans: int = 0) -> bytes:
    """The JPEG ``data`` with its frame header rewritten to claim ``size`` and its last scan repeated
    ``extra_scans`` times: a large, many-scan JPEG in a few kilobytes."""
    frame = next(data.index(marker) for marker in (b"\xff\xc0", b"\xff\xc2") if marker in data)
    width, height = size
    data = data[: frame + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[frame + 9 :]
    last_scan = data.rindex(SOS)
    return data[:-2] + data[last_scan:-2] * extra_scans + b"\xff\xd9"


def progressive_jpeg(size: tuple[int, int], *, scans: int) -> bytes:
    """The lesion resized to ``size`` as a genuine progressive JPEG of ``scans`` scans.

    Pillow writes ten scans; the shortest is repeated in place up to ``scans``, so the file stays
    about as small as the ten-scan one (7071² of 64 scans: ~540 kB) and decodes, with warnings.
    """
    buffer = io.BytesIO()
    Image.open(LESION).convert("RGB").resize(size, Image.Resampling.BILINEAR).save(
        buffer, "JPEG", progressive=True, quality=75
    )
    data = buffer.getvalue()
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == SOS]
    if scans < len(starts):
        raise ValueError(f"scans={scans} is fewer than the {len(starts)} Pillow writes")
    ends = [*starts[1:], len(data) - 2]  # the last scan runs to the end-of-image marker
    start, end = min(zip(starts, ends), key=lambda scan: scan[1] - scan[0])
    return data[:end] + data[start:end] * (scans - len(starts)) + data[end:]


def scan_bomb(extra_scans: int = 2000) -> bytes:
    """A small progressive JPEG whose last scan is repeated: thousands of scans in tens of kilobytes."""
    buffer = io.BytesIO()
    Image.open(LESION).convert("RGB").resize((96, 72), Image.Resampling.BICUBIC).save(
        buffer, "JPEG", progressive=True, quality=90
    )
    data = buffer.getvalue()
    last_scan = data.rindex(SOS)
    return data[:-2] + data[last_scan:-2] * extra_scans + b"\xff\xd9"


def zero_png(side: int = 7000) -> bytes:
    """An all-black side×side PNG: ~150 kB that would decode to side² × 3 bytes."""
    rows = zlib.compress(b"".join(b"\0" + bytes(3 * side) for _ in range(side)), 9)
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def png_in_chunks(count: int, *, side: int = 100) -> bytes:
    """A valid side×side PNG of noise whose image data is split into ``count`` tiny IDAT chunks
    (at most one per byte of compressed data: about 3 × side² of them)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
    data, chunks, position = buffer.getvalue(), [], 8
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        chunks.append((data[position + 4 : position + 8], data[position + 8 : position + 8 + length]))
        position += 12 + length
    pixels = b"".join(body for kind, body in chunks if kind == b"IDAT")
    step = -(-len(pixels) // count)
    pieces = [(b"IDAT", pixels[i : i + step]) for i in range(0, len(pixels), step)]
    chunks = [chunks[0], *pieces, (b"IEND", b"")]  # IHDR, the pieces, IEND
    return data[:8] + b"".join(_png_chunk(kind, body) for kind, body in chunks)


def flat_webp(size: tuple[int, int]) -> bytes:
    """A lossless WebP of one colour: 4096² in 706 bytes, 50 MB once decoded."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 100)).save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()
