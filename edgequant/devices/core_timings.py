"""Published instruction throughputs of the ARM cores edgequant prices counted instructions on.

For each core type: how many instructions of each class (the qemu plugin's
INSTRUCTION_CLASSES) one core can retire per cycle, when nothing else limits it.
The figures are the sustained throughputs of the instructions XNNPACK's and
ruy's kernels run, as given in Arm's Software Optimization Guides (Cortex-A55,
A57, A72, A73, A75, A76, X1; "throughput" column of the ASIMD and load/store
tables: up to the A75 a Q-form FMLA/SDOT occupies both 64-bit FP pipes, from
the A76 on each of two 128-bit pipes takes one) and Arm's descriptions of the Cortex-A53 (in-order, dual issue, 64-bit
NEON datapath: a 128-bit operation takes two issue slots), and their decode
widths. Rounded to the instruction forms the kernels use (128-bit Q forms):

    dot         SDOT/UDOT (vector and by element)
    fp_mac      FMLA/FMUL and scalar FMADD
    int_mac     MLA/MUL, SMLAL/UMLAL (long), SMULL, SADALP
    simd_other  every other SIMD/FP instruction (moves, adds, shifts, conversions)
    load/store  one instruction each, whatever its size (the bytes are priced apart)
    scalar      integer and branch instructions
    issue       every instruction, at the core's decode width

Kryo (Snapdragon 820/821) has no public guide: its entry says so and uses the
Cortex-A72 figures (the closest published three-wide out-of-order ARMv8.0 core).
"""

from __future__ import annotations

from dataclasses import dataclass

# What the qemu plugin counts per invoke (insncount.c CLASS_NAMES, same order), and the bytes
# its loads and stores move.
INSTRUCTION_CLASSES = ("dot", "fp_mac", "int_mac", "simd_other", "load", "store", "scalar")
MIX_FIELDS = INSTRUCTION_CLASSES + ("load_bytes", "store_bytes")
# What the cost model prices: each class at its own pipes' throughput, and every instruction at
# the core's decode width (a narrow front end limits code that mixes classes well).
PRICED = INSTRUCTION_CLASSES + ("issue",)


@dataclass(frozen=True)
class CoreTimings:
    core: str
    in_order: bool
    dot_product: bool  # ARMv8.2 SDOT/UDOT
    per_cycle: dict[str, float]  # instructions of each class one core retires per cycle
    source: str

    def ideal_cycles(self, mix: dict[str, int]) -> dict[str, float]:  # noqa: D401
        """Cycles each priced class of `mix` needs at this core's published throughput."""
        counts = {**{c: mix.get(c, 0) for c in INSTRUCTION_CLASSES},
                  "issue": sum(mix.get(c, 0) for c in INSTRUCTION_CLASSES)}
        return {c: counts[c] / self.per_cycle[c] for c in PRICED}


def _t(dot, fp_mac, int_mac, simd_other, load, store, scalar, issue) -> dict[str, float]:
    return {"dot": dot, "fp_mac": fp_mac, "int_mac": int_mac, "simd_other": simd_other, "load": load,
            "store": store, "scalar": scalar, "issue": issue}


_SWOG = "Arm Cortex-{} Software Optimization Guide (throughputs of Q-form ASIMD, loads, stores, integer ALU)"

CORES: dict[str, CoreTimings] = {
    "Cortex-A53": CoreTimings("Cortex-A53", True, False, _t(0.5, 0.5, 1, 0.5, 1, 1, 2, 2),
                              "Arm Cortex-A53 TRM: in-order dual issue, 64-bit NEON datapath (Q forms take 2 "
                              "slots; SMLAL/SMULL read 64-bit halves: one slot)"),
    "Cortex-A55": CoreTimings("Cortex-A55", True, True, _t(1, 1, 1, 1, 1, 1, 2, 2), _SWOG.format("A55")),
    "Cortex-A57": CoreTimings("Cortex-A57", False, False, _t(1, 1, 1, 2, 1, 1, 2, 3), _SWOG.format("A57")),
    "Cortex-A72": CoreTimings("Cortex-A72", False, False, _t(1, 1, 1, 2, 1, 1, 2, 3), _SWOG.format("A72")),
    "Cortex-A73": CoreTimings("Cortex-A73", False, False, _t(1, 1, 1, 2, 1, 1, 2, 2), _SWOG.format("A73")),
    "Cortex-A75": CoreTimings("Cortex-A75", False, True, _t(1, 1, 1, 2, 1, 1, 2, 3), _SWOG.format("A75")),
    "Cortex-A76": CoreTimings("Cortex-A76", False, True, _t(2, 2, 1, 2, 2, 1, 3, 4), _SWOG.format("A76")),
    "Cortex-X1": CoreTimings("Cortex-X1", False, True, _t(4, 4, 2, 4, 3, 2, 4, 5), _SWOG.format("X1")),
    "Kryo": CoreTimings("Kryo", False, False, _t(1, 1, 1, 2, 1, 1, 2, 3),
                        "no published guide for Qualcomm's Kryo (Snapdragon 820/821): Cortex-A72 figures"),
}


def timings(core: str) -> CoreTimings:
    try:
        return CORES[core]
    except KeyError:
        raise KeyError(f"no instruction timings for core '{core}'; known: {', '.join(CORES)}") from None
