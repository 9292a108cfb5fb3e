"""cpu_features: the CPU's name and int8 dot-product instructions read from /proc/cpuinfo, and the export's note
when an int8 file is not much faster than its float one."""

from visionkit.engine.cpu_features import CpuFeatures, cpu_features, parse_cpuinfo
from visionkit.export.onnx_int8 import speed_note

ZEN2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni
processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni
"""
ICE_LAKE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse4_2 avx avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16
"""
SAPPHIRE_RAPIDS = """model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx2 avx512bw avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8
"""
GRAVITON2 = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
"""
CORTEX_A53 = """processor\t: 0
Features\t: fp asimd evtstrm crc32 cpuid
"""


def test_reads_the_int8_dot_product_instructions_of_x86_and_arm_cpus():
    zen2 = parse_cpuinfo(ZEN2)
    assert zen2 == CpuFeatures("AMD EPYC 7B12", None, "AVX2")
    assert zen2.describe() == "AMD EPYC 7B12 (AVX2, no int8 dot product)"
    assert parse_cpuinfo(ICE_LAKE).int8_dot == "AVX-512 VNNI" and parse_cpuinfo(ICE_LAKE).simd == "AVX-512"
    assert parse_cpuinfo(SAPPHIRE_RAPIDS).int8_dot == "AMX-INT8"  # the strongest of the three it has
    graviton = parse_cpuinfo(GRAVITON2)
    assert graviton.int8_dot == "ARM dot product" and graviton.simd == "NEON" and graviton.model  # no "model name"
    assert parse_cpuinfo(CORTEX_A53).int8_dot is None


def test_falls_back_to_numpy_without_proc_cpuinfo(tmp_path):
    found = cpu_features(tmp_path / "missing")
    assert found.model and found.describe().startswith(found.model)


def test_the_export_explains_an_int8_file_that_is_not_faster():
    fast = {"float": 10.0, "int8": 5.0}
    slow = {"float": 10.0, "int8": 9.2}
    assert speed_note(fast, parse_cpuinfo(ZEN2)) == ""  # int8 paid: nothing to explain
    note = speed_note(slow, parse_cpuinfo(ZEN2))
    assert "×0.92" in note and "AMD EPYC 7B12 (AVX2, no int8 dot product)" in note and "float file" in note
    other = speed_note(slow, parse_cpuinfo(ICE_LAKE))  # the CPU is not the reason: the model's layers are
    assert "×0.92" in other and "AVX-512 VNNI" in other and "act=relu" in other and "float file" not in other
