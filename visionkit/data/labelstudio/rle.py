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
        chunk = self.bits[self.pos : end]
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
        raise DataError(
            f"brush RLE declares {count} values, but the region's size needs {expected} "
            f"(original_height × original_width × RGBA)"
        )
    # a chunk of at least 3 + min(widths) + word bits yields at most 2**max(widths) values
    chunks = (len(stream.bits) - HEADER_BITS) // (3 + min(widths) + word)
    if count > chunks * 2 ** max(widths):
        raise DataError(
            f"brush RLE declares {count} values, more than its {len(stream.bits) // 8} bytes can "
            f"encode (corrupt or not an RLE mask)"
        )
    out = np.zeros(count, dtype=np.uint8 if word <= 8 else np.uint32)
    x = 0
    while x < count:
        repeat = stream.read(1)
        n = stream.read(widths[stream.read(2)]) + 1
        if x + n > count:
            raise DataError(f"brush RLE run of {n} overflows the {count} values it declares")
        if repeat:
            out[x : x + n] = stream.read(word)
        else:
            for i in range(n):
                out[x + i] = stream.read(word)
        x += n
    return out


def decode_brush_mask(rle: list[int] | bytes, height: int, width: int) -> np.ndarray:
    """The alpha channel (H, W) uint8 of a brush region."""
    flat = decode_rle(rle, expected=height * width * 4)
    return flat.reshape(height, width, 4)[..., 3].astype(np.uint8)


RUN_WIDTHS = (3, 4, 8, 16)  # run-length field widths: a run of up to 8, 16, 256 or 65,536 values
WORD_BITS = 8
CHUNK_BITS = 1 + 2 + RUN_WIDTHS[-1] + WORD_BITS  # the longest chunk: flag, width choice, run length, value
BLOCK = 1 << 16  # chunks turned into bits at a time: memory stays a few MB for any mask


def _field_bits(
    values: np.ndarray, widths: np.ndarray, offsets: np.ndarray, cols: np.ndarray, bits: np.ndarray
) -> None:
    """Write each row's field (``values`` in ``widths`` bits, most significant first) at column ``offsets``."""
    pos = cols - offsets[:, None]
    inside = (pos >= 0) & (pos < widths[:, None])
    shift = np.clip(widths[:, None] - 1 - pos, 0, 31)
    bits |= (((values[:, None] >> shift) & 1) * inside).astype(np.uint8)


def encode_rle(values: np.ndarray) -> list[int]:
    """Flat uint8 values → the rle-pack byte list ``decode_rle`` reads back (and Label Studio draws). Every run,
    even of one value, is a repeat chunk: a mask's RGBA values come in runs of at least 4."""
    v = np.asarray(values, dtype=np.uint8).ravel()
    if v.size >= 1 << 32:
        raise DataError(f"a brush mask of {v.size} values does not fit RLE's 32-bit count")
    header = [(v.size, 32), (WORD_BITS - 1, 5), *((w - 1, 4) for w in RUN_WIDTHS)]
    out = bytearray()
    carry = np.array([int(b) for value, width in header for b in format(value, f"0{width}b")], np.uint8)
    if v.size:
        starts = np.r_[0, np.flatnonzero(v[1:] != v[:-1]) + 1]
        lengths = np.diff(np.r_[starts, v.size])
        longest = 1 << RUN_WIDTHS[-1]
        pieces = -(-lengths // longest)  # runs longer than the widest field are split
        run_of_piece = np.repeat(np.arange(len(lengths)), pieces)
        index_in_run = np.arange(len(run_of_piece)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        last = index_in_run == pieces[run_of_piece] - 1
        n = np.where(last, lengths[run_of_piece] - (pieces[run_of_piece] - 1) * longest, longest).astype(np.int64)
        word = v[starts][run_of_piece].astype(np.int64)
        which = np.searchsorted([1 << w for w in RUN_WIDTHS], n - 1, side="right")  # narrowest field for n-1
        width = np.asarray(RUN_WIDTHS, np.int64)[which]
        cols = np.arange(CHUNK_BITS)[None, :]
        for a in range(0, len(n), BLOCK):
            b = min(a + BLOCK, len(n))
            k, w = b - a, width[a:b]
            bits = np.zeros((k, CHUNK_BITS), np.uint8)
            bits[:, 0] = 1  # repeat flag
            _field_bits(which[a:b].astype(np.int64), np.full(k, 2), np.full(k, 1), cols, bits)
            _field_bits(n[a:b] - 1, w, np.full(k, 3), cols, bits)
            _field_bits(word[a:b], np.full(k, WORD_BITS), 3 + w, cols, bits)
            stream = np.concatenate([carry, bits[cols < (3 + w + WORD_BITS)[:, None]]])
            whole = len(stream) // 8 * 8
            out += np.packbits(stream[:whole]).tobytes()
            carry = stream[whole:]
    out += np.packbits(carry).tobytes()  # the last bits, zero-padded to a byte
    return list(out)


def encode_brush_mask(mask: np.ndarray) -> list[int]:
    """A boolean (H, W) region → brush RLE, as Label Studio stores it: every RGBA byte 255 inside, 0 outside."""
    return encode_rle(np.repeat(np.where(np.asarray(mask, bool).ravel(), 255, 0).astype(np.uint8), 4))
