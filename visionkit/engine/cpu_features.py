"""What this CPU can do for int8 inference: its name and whether it has an int8 dot-product instruction.

An int8 file only runs faster than a float one where the CPU multiplies and adds int8 values in one instruction:
AVX-512 VNNI or AVX-VNNI (``vpdpbusd``: four u8×s8 products summed into an int32 lane), AMX (int8 tile
multiplies) or ARM's dot product (``sdot``/``udot``). Without them (AVX2 only) x86 runtimes go through 16-bit
intermediates (``vpmaddubsw`` then ``vpmaddwd``): two multiplies per 32 int8 products against one fused multiply-add
per 8 float ones, so the int8 convolution is no faster. tools/bench_int8_ceiling.py measures it: on a 2-core AMD
EPYC (Zen 2, AVX2) onnxruntime's int8 convs ran at 0.97-1.08x their float time even at 128-256 channels.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

PROC_CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo flag (x86 "flags", ARM "Features") → the instruction set's usual name, best first
INT8_DOT_FLAGS = {
    "amx_int8": "AMX-INT8",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "asimddp": "ARM dot product",
}
# numpy's own CPU probe, for systems without /proc/cpuinfo (macOS, Windows): its feature name → ours
NUMPY_INT8_DOT = {"AVX512VNNI": "AVX-512 VNNI", "ASIMDDP": "ARM dot product"}
SIMD_FLAGS = {"avx512bw": "AVX-512", "avx2": "AVX2", "asimd": "NEON", "sse4_2": "SSE4.2"}  # widest first


@dataclass(frozen=True)
class CpuFeatures:
    """``model``: the CPU's name as the OS reports it; ``int8_dot``: its int8 dot-product instruction set (None:
    it has none); ``simd``: its widest vector instruction set we know of (None: unknown)."""

    model: str
    int8_dot: str | None
    simd: str | None

    def describe(self) -> str:
        """``AMD EPYC (AVX2, no int8 dot product)`` or ``Intel(R) Xeon(R) ... (AVX-512, int8 dot product: AVX-512
        VNNI)``."""
        simd = f"{self.simd}, " if self.simd else ""
        dot = f"int8 dot product: {self.int8_dot}" if self.int8_dot else "no int8 dot product"
        return f"{self.model} ({simd}{dot})"


def parse_cpuinfo(text: str) -> CpuFeatures:
    """The first processor's name and flags from the text of /proc/cpuinfo (x86 or ARM layout)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    dot = next((name for flag, name in INT8_DOT_FLAGS.items() if flag in flags), None)
    simd = next((name for flag, name in SIMD_FLAGS.items() if flag in flags), None)
    return CpuFeatures(model or platform.processor() or platform.machine() or "unknown CPU", dot, simd)


def _from_numpy() -> CpuFeatures:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as found
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as found
        except ImportError:
            found = {}
    dot = next((name for key, name in NUMPY_INT8_DOT.items() if found.get(key)), None)
    numpy_simd = {"AVX512BW": "AVX-512", "AVX2": "AVX2", "ASIMD": "NEON", "SSE42": "SSE4.2"}
    simd = next((name for key, name in numpy_simd.items() if found.get(key)), None)
    return CpuFeatures(platform.processor() or platform.machine() or "unknown CPU", dot, simd)


def cpu_features(cpuinfo: str | Path = PROC_CPUINFO) -> CpuFeatures:
    """This machine's CPU: from /proc/cpuinfo where there is one, else numpy's own probe of the CPU."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return _from_numpy()
    return parse_cpuinfo(text)
