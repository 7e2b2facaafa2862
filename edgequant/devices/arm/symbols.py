"""Attribute counted instructions to the functions they ran in (XNNPACK's kernels, mostly).

The plugin reports executed instructions per translation block start address.
The guest's /proc/self/maps says which file each address belongs to and where it
was loaded, and the file's ELF symbol table (read with binutils' `nm`) names the
function around each address. LiteRT's aarch64 wheel keeps a full .symtab in
libpywrap_litert_common.so, so kernels show up by name, e.g.
xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_4x16c4__asm_aarch64_neondot_cortex_a55.
"""

from __future__ import annotations

import bisect
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# Where the model's operators start, for the plugin's segments (insncount.c): the TFLite interpreter
# calls each node's kernel with a `blr` inside Subgraph::InvokeImpl (OpInvoke is inlined there), and
# XNNPACK's runtime runs each of its operators through xnn_run_operator_with_index.
MARKED_LIBRARY = "libpywrap_litert_common.so"
NODE_CALLER = "_ZN6tflite8Subgraph10InvokeImplEv"
OPERATOR_ENTRY = "xnn_run_operator_with_index"


@dataclass(frozen=True)
class KernelShare:
    symbol: str
    library: str
    instructions: int
    share: float  # of all counted instructions

    def to_dict(self) -> dict:
        return {"symbol": self.symbol, "library": self.library, "instructions": self.instructions,
                "share": round(self.share, 4)}


@dataclass(frozen=True)
class _Mapping:
    start: int
    end: int
    offset: int
    path: str


def parse_maps(text: str) -> list[_Mapping]:
    maps = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "x" not in parts[1]:
            continue  # only executable mappings hold code
        start, end = (int(v, 16) for v in parts[0].split("-"))
        maps.append(_Mapping(start, end, int(parts[2], 16), parts[5].strip()))
    return sorted(maps, key=lambda m: m.start)


def _load_bias(text: str, path: str) -> int:
    """Where the file's ELF address 0 is in memory: start - offset of its first mapping."""
    best = None
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].strip() == path:
            start = int(parts[0].split("-")[0], 16) - int(parts[2], 16)
            best = start if best is None else min(best, start)
    return best or 0


@lru_cache(maxsize=32)
def _symbols(path: str, mtime_ns: int) -> tuple[list[int], list[str]]:
    """Sorted start addresses and names of the functions in an ELF file's symbol table."""
    nm = shutil.which("nm")
    if nm is None or not Path(path).is_file():
        return [], []
    out = subprocess.run([nm, "--defined-only", "-n", path], capture_output=True, text=True).stdout
    if not out.strip():
        out = subprocess.run([nm, "-D", "--defined-only", "-n", path], capture_output=True, text=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


def attribute(tb_counts: list[tuple[int, int]], maps_text: str) -> list[KernelShare]:
    """Every function that executed instructions of `tb_counts` ((address, instructions) pairs), most first."""
    maps = parse_maps(maps_text)
    starts = [m.start for m in maps]
    total = sum(n for _, n in tb_counts)
    by_symbol: dict[tuple[str, str], int] = defaultdict(int)
    bias_cache: dict[str, int] = {}
    for addr, n in tb_counts:
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0 or addr >= maps[i].end:
            by_symbol[("[unknown]", "?")] += n
            continue
        path = maps[i].path
        if path not in bias_cache:
            bias_cache[path] = _load_bias(maps_text, path)
        file_addr = addr - bias_cache[path]
        p = Path(path)
        addrs, names = _symbols(path, p.stat().st_mtime_ns) if p.is_file() else ([], [])
        j = bisect.bisect_right(addrs, file_addr) - 1
        name = names[j] if j >= 0 else f"[{p.name}]"
        by_symbol[(name, p.name)] += n
    ranked = sorted(by_symbol.items(), key=lambda kv: (-kv[1], kv[0]))
    return [KernelShare(sym, lib, n, n / total if total else 0.0) for (sym, lib), n in ranked]


def operator_marks(library: Path) -> str | None:
    """The plugin's marks file for `library` (ELF addresses), or None where its symbols do not say."""
    addrs, names = _symbols(str(library), library.stat().st_mtime_ns) if library.is_file() else ([], [])
    where = {name: i for i, name in enumerate(names)}
    if NODE_CALLER not in where or where[NODE_CALLER] + 1 >= len(addrs):
        return None
    i = where[NODE_CALLER]
    lines = [f"call {addrs[i]:x} {addrs[i + 1]:x}"]
    if OPERATOR_ENTRY in where:
        lines.append(f"entry {addrs[where[OPERATOR_ENTRY]]:x}")
    return "\n".join(lines) + "\n"


def demangle(symbols: list[str]) -> dict[str, str]:
    """C++ symbols as people read them (binutils' c++filt, one call for all); unchanged where it is missing."""
    mangled = sorted({s for s in symbols if s.startswith("_Z")})
    tool = shutil.which("c++filt")
    if not mangled or tool is None:
        return {}
    try:
        out = subprocess.run([tool], input="\n".join(mangled) + "\n", capture_output=True, text=True, check=True,
                             timeout=30).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(zip(mangled, out)) if len(out) == len(mangled) else {}


def without_parameters(name: str) -> str:
    """A demangled C++ name without its parameter list: `ns::f<T>(int, ...) const` -> `ns::f<T>`."""
    end = name.rstrip().removesuffix(" const")
    if not end.endswith(")"):
        return name
    depth = 0
    for i in range(len(end) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(end[i], 0)
        if depth == 0:
            return end[:i]
    return name
