"""The host CPU features that decide which XNNPACK kernels run, and so whether int8 pays off.

XNNPACK picks its microkernels at start-up from the CPU's features (through the cpuinfo library,
which reads CPUID and the OS-enabled register state on x86, and the kernel's hwcaps on ARM). The
ones that matter for int8 against fp32:
- x86: AVX2 (+FMA) gives fp32 8-wide FMA; int8 without VNNI multiplies through 16-bit madd steps,
  so int8 is at best modestly faster than fp32. AVX-512 doubles widths. AVX-512 VNNI and AVX-VNNI
  add VPDPBUSD, a 4-way int8 dot product per lane: XNNPACK's qs8 GEMM kernels then do 4x the MACs
  of fp32 FMA per instruction.
- ARM: NEON (asimd) baseline; `asimddp` (dot product, SDOT/UDOT, Cortex-A55/A76 and later) is
  what makes int8 2-3x faster than fp32; `i8mm` (SMMLA, Armv8.6) faster still; `asimdhp`/`fphp`
  allow fp16 arithmetic.
Read from /proc/cpuinfo flags here; `/proc/cpuinfo` reflects what the (virtual) CPU advertises.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

X86_FEATURES = ("sse4_1", "avx", "fma", "f16c", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_tile")
ARM_FEATURES = ("asimd", "asimdhp", "fphp", "asimddp", "i8mm", "bf16", "sve", "sve2")


@dataclass(frozen=True)
class HostFeatures:
    arch: str  # "x86_64" or "aarch64" (or what platform.machine() says)
    cpu: str
    cores: int
    flags: tuple[str, ...] = field(default=())  # the relevant flags present, in the order listed above

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def is_x86(self) -> bool:
        return self.arch in ("x86_64", "amd64", "i686", "x86")

    @property
    def is_arm(self) -> bool:
        return self.arch in ("aarch64", "arm64") or self.arch.startswith("armv")

    @property
    def int8_dot_product(self) -> str | None:
        """The int8 dot-product instruction set XNNPACK can use here, or None."""
        if self.is_x86:
            for flag, name in (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI")):
                if self.has(flag):
                    return name
            return None
        if self.is_arm:
            if self.has("i8mm"):
                return "I8MM (SMMLA) and dot product"
            if self.has("asimddp"):
                return "dot product (SDOT)"
        return None

    @property
    def int8_kernel_family(self) -> str:
        """The XNNPACK qs8 GEMM kernel family expected on this CPU (names as in XNNPACK's symbols)."""
        if self.is_x86:
            if self.has("avx512_vnni"):
                return "avx512vnni"
            if self.has("avx_vnni"):
                return "avxvnni"
            if self.has("avx512bw"):
                return "avx512skx (16-bit madd, no VNNI)"
            if self.has("avx2"):
                return "avx2 (16-bit madd, no VNNI)"
            return "sse (no VNNI)"
        if self.is_arm:
            if self.has("i8mm"):
                return "neoni8mm"
            if self.has("asimddp"):
                return "neondot"
            return "neon (no dot product)"
        return "scalar"

    def summary(self) -> str:
        dot = self.int8_dot_product
        return (f"{self.cpu or self.arch}, {self.cores} cores; "
                f"{', '.join(self.flags) or 'no relevant SIMD flags'}; "
                f"int8 dot product: {dot or 'none'}")

    def to_dict(self) -> dict:
        return dict(asdict(self), int8_dot_product=self.int8_dot_product, int8_kernel_family=self.int8_kernel_family)


def parse_cpuinfo(text: str, arch: str | None = None, cores: int | None = None) -> HostFeatures:
    """HostFeatures from the text of a /proc/cpuinfo (x86 'flags' or ARM 'Features' lines)."""
    flags: set[str] = set()
    cpu = ""
    processors = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):
            flags.update(value.split())
        elif key in ("model name", "hardware") and not cpu:
            cpu = value.strip()
        elif key == "processor":
            processors += 1
    if arch is None:
        arch = "aarch64" if flags & {"asimd", "fp", "evtstrm"} and "sse2" not in flags else platform.machine()
    known = X86_FEATURES if arch in ("x86_64", "amd64") else ARM_FEATURES
    return HostFeatures(arch=arch, cpu=cpu, cores=cores or processors or 1,
                        flags=tuple(f for f in known if f in flags))


def read_host_features(cpuinfo_path: str | Path = "/proc/cpuinfo") -> HostFeatures:
    """This machine's features. Without /proc/cpuinfo (macOS), only the architecture is known."""
    import os

    try:
        text = Path(cpuinfo_path).read_text()
    except OSError:
        return HostFeatures(arch=platform.machine(), cpu=platform.processor(), cores=os.cpu_count() or 1)
    return parse_cpuinfo(text, arch=platform.machine(), cores=os.cpu_count())
