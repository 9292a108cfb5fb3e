"""Label Studio brush masks: RLE in the thi-ng/rle-pack layout, written from its description.

Bit stream, most significant bit first: 32 bits value count; 5 bits word size − 1; four 4-bit run-length
widths − 1. Then chunks until all values are out: 1 flag bit (1 = repeat one value, 0 = literals), 2 bits that
pick a run-length width, that many bits of run length − 1, then the word(s). The values are the RGBA bytes of
the whole image (H·W·4); the mask is the alpha channel.
"""

from __future__ import annotations

import numpy as np

from visionkit.errors import DataError


class _Bits:
    def __init__(self, data: bytes):
        self.bits = np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8))
        self.pos = 0

    def read(self, n: int) -> int:
        end = self.pos + n
        if end > len(self.bits):
            raise DataError("brush RLE ends early (truncated or not an RLE mask)")
        chunk = self.bits[self.pos:end]
        self.pos = end
        value = 0
        for b in chunk.tolist():
            value = (value << 1) | b
        return value


HEADER_BITS = 32 + 5 + 4 * 4


def decode_rle(rle: list[int] | bytes, expected: int | None = None) -> np.ndarray:
    """The flat values packed in ``rle``. The count the header declares is checked before anything is allocated:
    it must equal ``expected`` (when given) and fit in what the stream's length can encode."""
    if isinstance(rle, str) or not isinstance(rle, (list, tuple, bytes, bytearray)):
        raise DataError(f"brush RLE must be a list of byte values 0-255, got {type(rle).__name__}")
    try:
        stream = _Bits(bytes(rle))
    except (ValueError, TypeError) as e:
        raise DataError(f"brush RLE must be a list of byte values 0-255: {e}") from e
    count = stream.read(32)
    word = stream.read(5) + 1
    widths = [stream.read(4) + 1 for _ in range(4)]
    if expected is not None and count != expected:
        raise DataError(f"brush RLE declares {count} values, but the region's size needs {expected} "
                        f"(original_height × original_width × RGBA)")
    # a chunk of at least 3 + min(widths) + word bits yields at most 2**max(widths) values
    chunks = (len(stream.bits) - HEADER_BITS) // (3 + min(widths) + word)
    if count > chunks * 2 ** max(widths):
        raise DataError(f"brush RLE declares {count} values, more than its {len(stream.bits) // 8} bytes can "
                        f"encode (corrupt or not an RLE mask)")
    out = np.zeros(count, dtype=np.uint8 if word <= 8 else np.uint32)
    x = 0
    while x < count:
        repeat = stream.read(1)
        n = stream.read(widths[stream.read(2)]) + 1
        if x + n > count:
            raise DataError(f"brush RLE run of {n} overflows the {count} values it declares")
        if repeat:
            out[x:x + n] = stream.read(word)
        else:
            for i in range(n):
                out[x + i] = stream.read(word)
        x += n
    return out


def decode_brush_mask(rle: list[int] | bytes, height: int, width: int) -> np.ndarray:
    """The alpha channel (H, W) uint8 of a brush region."""
    flat = decode_rle(rle, expected=height * width * 4)
    return flat.reshape(height, width, 4)[..., 3].astype(np.uint8)
