"""Headless Chromium for the tests: the DOM a page renders to, a screenshot, its pixels.

Debian's ``chromium`` (``.ci/run`` installs it where missing; on a GitHub runner the image's
Google Chrome). Each call gets an empty profile and the flags that keep it off the network:
a test page is a local file. The PNG reader covers what Chromium writes (8-bit RGB or RGBA,
not interlaced), so no imaging library is needed.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

# Debian's first, then a GitHub runner image's Google Chrome; Ubuntu's chromium-browser last, as
# it may be only a wrapper around a snap.
CANDIDATES = ("chromium", "google-chrome", "google-chrome-stable", "chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
DEADLINE_S = 120


def binary() -> str:
    """The browser on PATH; an error naming the package to install when there is none."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(
        "no Chromium on PATH: apt-get install --no-install-recommends chromium "
        "(.ci/run does it where missing)"
    )


def _run(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run(
            [binary(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def dump_dom(page: Path) -> str:
    """The page's DOM once loaded and its scripts ran, serialised."""
    return _run(page, "--dump-dom").stdout


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 2400) -> Path:
    """A PNG of the page's first ``width`` x ``height`` CSS pixels."""
    _run(page, f"--window-size={width},{height}", f"--screenshot={out.resolve()}")
    assert out.is_file(), f"Chromium wrote no screenshot to {out}"
    return out


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """``(width, height, rows)``, each row ``width`` RGB triples (alpha dropped)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    channels = 3 if color == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        _unfilter(kind, line, previous, channels)
        rgb = line if channels == 3 else bytearray(b for i, b in enumerate(line) if i % 4 != 3)
        rows.append(bytes(rgb))
        previous = line
    return width, height, rows


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    """Undo one of PNG's five row filters in place (none and up at C speed)."""
    if kind == 0:
        return
    if kind == 2:
        line[:] = _add_bytes(line, previous)
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        corner = previous[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + pred) & 0xFF


def _add_bytes(a: bytearray, b: bytearray) -> bytes:
    """Byte-wise ``(a + b) % 256`` on whole rows as integers: the low 7 bits of each byte add
    without carrying into the next byte, the top bit is their xor."""
    n = len(a)
    low = int.from_bytes(b"\x7f" * n, "big")
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    return (((x & low) + (y & low)) ^ ((x ^ y) & ~low & ((1 << (8 * n)) - 1))).to_bytes(n, "big")


def count_color(rows: list[bytes], rgb: str, tolerance: int = 12) -> int:
    """Pixels within ``tolerance`` per channel of ``rgb`` (``"#7b2cbf"``).

    Each channel is mapped through a 0/1 table and the three masks are ANDed as integers: C
    speed, where a loop over the pixels in Python would take seconds for one screenshot.
    """
    want = bytes.fromhex(rgb.lstrip("#"))
    tables = [bytes(int(abs(v - w) <= tolerance) for v in range(256)) for w in want]
    hits = 0
    for row in rows:
        masks = [int.from_bytes(row[c::3].translate(tables[c]), "big") for c in range(3)]
        hits += (masks[0] & masks[1] & masks[2]).bit_count()
    return hits
