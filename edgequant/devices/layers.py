"""Per-layer counts: one invoke's counted instructions by TFLite node, and the kernel that ran each.

The counting plugin splits each measured invoke into segments where operators
start (insncount.c): kind N where the interpreter calls a node's kernel, X where
XNNPACK's runtime starts one of its operators, R where the interpreter takes
over again, S at the start of the window. This module maps them to the nodes:

- The interpreter calls the nodes of its execution plan in order. The plan is
  the nodes left to builtin kernels plus one DELEGATE node per XNNPACK
  partition, ordered by their first node (the order TFLite partitions in). A
  call that starts XNNPACK operators is a delegate node; its operators belong to
  the partition's nodes in order, matched by the kind of micro-kernel they ran
  (a CONV_2D runs a gemm, a DEPTHWISE_CONV_2D a dwconv ...). A node XNNPACK fused
  into its neighbour (a PAD into the next convolution) runs no operator of its own:
  it is listed with no instructions.
- Whatever runs outside an operator (the interpreter between nodes, the
  delegate's set-up, Python around invoke) is "runtime overhead", so the layers
  and the overhead add up to the whole invoke exactly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edgequant.devices.arm.symbols import MARKED_LIBRARY, attribute, demangle, without_parameters

OVERHEAD = "runtime overhead"
NO_OPERATOR = "no XNNPACK operator of its own: fused into a neighbour or left out"
TOP_LAYERS = 5  # how many layers the CLI and the reports show per estimate
FOLDED_SHARE = 0.01  # fallbacks outside the top layers taking less than this share are shown as one row

# Words of the XNNPACK micro-kernels each TFLite op runs. An op missing here, or an operator whose
# kernels name none of these words (a plain copy), matches anything.
OP_KERNEL_WORDS: dict[str, tuple[str, ...]] = {
    "CONV_2D": ("gemm", "conv_hwc"),
    "FULLY_CONNECTED": ("gemm",),
    "BATCH_MATMUL": ("gemm",),
    "TRANSPOSE_CONV": ("gemm",),
    "DEPTHWISE_CONV_2D": ("dwconv",),
    "ADD": ("vadd",),
    "SUB": ("vsub", "vadd"),
    "MUL": ("vmul",),
    "DIV": ("vdiv",),
    "MEAN": ("rsum", "rdsum", "gavgpool", "reduce"),
    "SUM": ("rsum", "rdsum", "reduce"),
    "AVERAGE_POOL_2D": ("avgpool",),
    "MAX_POOL_2D": ("maxpool",),
    "SOFTMAX": ("raddstoreexpminusmax", "rmax", "softmax"),
    "QUANTIZE": ("vcvt",),
    "DEQUANTIZE": ("vcvt",),
    "LOGISTIC": ("vsigmoid",),
    "TANH": ("vtanh",),
    "HARD_SWISH": ("vhswish",),
    "RELU": ("vclamp", "vrelu"),
    "RELU6": ("vclamp",),
    "LEAKY_RELU": ("vlrelu",),
    "PRELU": ("prelu",),
    "PAD": ("pad", "fill"),
    "RESIZE_BILINEAR": ("ibilinear",),
}
_ALL_WORDS = {w for words in OP_KERNEL_WORDS.values() for w in words}


@dataclass
class Segment:
    """What the plugin counted between two operator marks (summed over the invokes)."""

    kind: str  # S, N, X or R (insncount.c)
    site: int  # guest address of the block that started it
    instructions: int
    mix: dict[str, int]
    tb_counts: list[tuple[int, int]] = field(default_factory=list)  # (block address, instructions)


@dataclass(frozen=True)
class LayerCount:
    """One invoke's instructions of one TFLite node (or of the runtime overhead), and what ran them."""

    node: int | None  # TFLite node index; None for the runtime overhead
    op: str  # TFLite op (CONV_2D ...), or OVERHEAD
    name: str  # the node's first output tensor
    runtime: str  # "xnnpack" or "builtin"; "" for the overhead
    kernel: str  # the function that ran most of its instructions (demangled, without parameters)
    fallback: bool  # ran on builtin kernels in an XNNPACK run: not delegated
    instructions: int
    mix: dict[str, int]

    def to_dict(self) -> dict:
        return {"node": self.node, "op": self.op, "name": self.name, "runtime": self.runtime, "kernel": self.kernel,
                "fallback": self.fallback, "instructions": self.instructions, "mix": self.mix}


def _plan(ops: list[dict]) -> list[tuple[dict, list[dict]]]:
    """The execution plan: (node, the nodes it runs: itself, or a DELEGATE's partition), in order."""
    originals = [o for o in ops if o["op"] != "DELEGATE"]
    producer = {t: o for o in originals for t in o["outputs"]}
    delegated: dict[int, list[dict]] = {}
    for d in (o for o in ops if o["op"] == "DELEGATE"):
        members: dict[int, dict] = {}
        stack = list(d["outputs"])
        boundary = set(d["inputs"])
        while stack:
            t = stack.pop()
            node = producer.get(t)
            if t in boundary or node is None or node["index"] in members:
                continue
            members[node["index"]] = node
            stack.extend(node["inputs"])
        delegated[d["index"]] = sorted(members.values(), key=lambda o: o["index"])
    inside = {m["index"] for members in delegated.values() for m in members}
    entries = [(o, [o]) for o in originals if o["index"] not in inside]
    entries += [(d, delegated[d["index"]]) for d in ops if d["op"] == "DELEGATE" and delegated[d["index"]]]
    return sorted(entries, key=lambda e: e[1][0]["index"])


def _node_site(segments: list[Segment]) -> int | None:
    """The call site of the node kernels: the interpreter calls them most (other calls happen once per invoke)."""
    calls = Counter(s.site for s in segments if s.kind == "N")
    if not calls:
        return None
    first = {}
    for i, s in enumerate(segments):
        first.setdefault(s.site, i)
    return max(calls, key=lambda site: (calls[site], first[site]))


@dataclass
class _Call:
    segment: Segment
    operators: list[Segment] = field(default_factory=list)


def _calls(segments: list[Segment]) -> tuple[list[_Call], list[Segment]]:
    """The node calls of one invoke (with their XNNPACK operators) and every segment outside them."""
    site = _node_site(segments)
    calls: list[_Call] = []
    overhead: list[Segment] = []
    open_call = False
    for s in segments:
        if s.kind == "N" and s.site == site:
            calls.append(_Call(s))
            open_call = True
        elif s.kind == "X" and open_call:
            calls[-1].operators.append(s)
        else:
            overhead.append(s)
            open_call = False
    return calls, overhead


class _Symbols:
    """Function names of segments' blocks (one maps file for every segment)."""

    def __init__(self, maps_text: str):
        self.maps_text = maps_text

    def kernel(self, segments: list[Segment], xnnpack: bool) -> str:
        """The function that ran most: for XNNPACK its micro-kernel, else the top one of LiteRT's own code
        outside the interpreter loop (not the C library's allocator or memcpy)."""
        ranked = attribute([tb for s in segments for tb in s.tb_counts], self.maps_text)
        litert = [k.symbol for k in ranked if k.library == MARKED_LIBRARY and "Subgraph" not in k.symbol]
        ukernels = [s for s in litert if "ukernel" in s] if xnnpack else []
        return (ukernels or litert or [k.symbol for k in ranked] or ["?"])[0]


def _matches(op: str, kernel: str) -> bool:
    words = OP_KERNEL_WORDS.get(op)
    if words is None or not any(w in kernel for w in _ALL_WORDS):
        return True
    return any(w in kernel for w in words)


def _assign_operators(members: list[dict], kernels: list[str]) -> list[int | None]:
    """For each XNNPACK operator (by its micro-kernel), the index in `members` of the node it runs.

    In order: an operator continues the last node where it matches it and not the next one (a node
    XNNPACK runs as several operators), else it runs the next node that matches; nodes skipped on the
    way were fused into a neighbour. None where no node is left that matches.
    """
    out: list[int | None] = []
    last, nxt = None, 0
    for kernel in kernels:
        if last is not None and _matches(members[last]["op"], kernel) and not (
                nxt < len(members) and _matches(members[nxt]["op"], kernel)):
            out.append(last)
            continue
        k = next((k for k in range(nxt, len(members)) if _matches(members[k]["op"], kernel)), None)
        if k is None:
            out.append(last)
            continue
        out.append(k)
        last, nxt = k, k + 1
    return out


def _sum_mix(segments: list[Segment]) -> dict[str, int]:
    mix: Counter = Counter()
    for s in segments:
        mix.update(s.mix)
    return dict(mix)


def attribute_layers(segments: list[Segment], windows: int, instructions_per_invoke: int, ops: list[dict],
                     maps_text: str, kernels: str) -> list[LayerCount]:
    """One invoke's instructions by TFLite node in plan order, then the runtime overhead (the rest, so
    that they add up to `instructions_per_invoke` exactly). Empty when the segments do not follow the
    interpreter's plan (no node calls seen, or not one per plan entry)."""
    calls, overhead = _calls(segments)
    plan = _plan(ops)
    if not calls or len(calls) != len(plan):
        return []
    symbols = _Symbols(maps_text)
    per_node: dict[int, list[Segment]] = {}
    node_of: dict[int, tuple[dict, str]] = {}  # index -> (node, runtime)
    for call, (entry, members) in zip(calls, plan):
        if entry["op"] != "DELEGATE":
            if call.operators:
                return []
            per_node[entry["index"]] = [call.segment]
            node_of[entry["index"]] = (entry, "builtin")
            continue
        overhead.append(call.segment)  # the delegate's own work: set-up, between its operators
        names = [symbols.kernel([op], xnnpack=True) for op in call.operators]
        for op, k in zip(call.operators, _assign_operators(members, names)):
            if k is None:
                overhead.append(op)
                continue
            per_node.setdefault(members[k]["index"], []).append(op)
        for member in members:
            node_of[member["index"]] = (member, "xnnpack")
            per_node.setdefault(member["index"], [])  # listed with no instructions: see NO_OPERATOR
    kernel = {index: symbols.kernel(segs, xnnpack=node_of[index][1] == "xnnpack") if segs else NO_OPERATOR
              for index, segs in per_node.items()}
    readable = demangle(list(kernel.values()))
    layers = []
    for index in sorted(per_node):
        node, runtime = node_of[index]
        segs = per_node[index]
        mix = {c: round(v / windows) for c, v in _sum_mix(segs).items()}
        layers.append(LayerCount(
            index, node["op"], node["name"], runtime,
            without_parameters(readable[kernel[index]]) if kernel[index] in readable else kernel[index],
            fallback=runtime == "builtin" and kernels == "xnnpack",
            instructions=round(sum(s.instructions for s in segs) / windows), mix=mix))
    rest_mix = {c: round(v / windows) for c, v in _sum_mix(overhead).items()}
    rest = instructions_per_invoke - sum(layer.instructions for layer in layers)
    layers.append(LayerCount(None, OVERHEAD, "interpreter, delegate set-up and Python around the operators", "",
                             "", False, rest, rest_mix))
    return layers


@dataclass(frozen=True)
class LayerEstimate:
    """A layer's share of a device estimate (an estimate too)."""

    node: int | None
    op: str
    name: str
    runtime: str
    kernel: str
    fallback: bool
    instructions: int
    latency_ms: float
    share: float  # of the whole-model estimate

    def to_dict(self) -> dict:
        return {"node": self.node, "op": self.op, "name": self.name, "runtime": self.runtime, "kernel": self.kernel,
                "fallback": self.fallback, "instructions": self.instructions,
                "latency_ms": round(self.latency_ms, 4), "share": round(self.share, 4)}


def ran_on(layer: dict) -> str:
    """A layer's kernel in words (a LayerEstimate dict), saying so where a node fell back from XNNPACK to the
    builtin kernels."""
    if not layer["runtime"] or layer["kernel"] == NO_OPERATOR:
        return layer["kernel"]
    where = "XNNPACK" if layer["runtime"] == "xnnpack" else "builtin"
    return f"{where} {layer['kernel']}" + (" (fallback: not delegated to XNNPACK)" if layer["fallback"] else "")


def slowest(layers: list[dict], n: int) -> list[dict]:
    """The `n` TFLite nodes (LayerEstimate dicts) that take longest, longest first; not the runtime overhead."""
    return sorted((layer for layer in layers if layer["node"] is not None), key=lambda layer: -layer["latency_ms"])[:n]


def shown(layers: list[dict]) -> list[dict]:
    """What the CLI and the reports show of an estimate's layers (LayerEstimate dicts): the TOP_LAYERS
    slowest, the other nodes that fell back from XNNPACK (two or more under 1% of the time are folded into one
    row, so shape bookkeeping such as a Flatten's SHAPE/PACK does not crowd the table), then the runtime overhead."""
    top = slowest(layers, TOP_LAYERS)
    fallbacks = [x for x in layers if x["fallback"] and x not in top]
    big = [x for x in fallbacks if x["share"] >= FOLDED_SHARE]
    small = [x for x in fallbacks if x["share"] < FOLDED_SHARE]
    if len(small) == 1:
        big += small
    elif small:
        ops = ", ".join(dict.fromkeys(x["op"] for x in small))
        big.append({"node": None, "op": f"{len(small)} small nodes:", "name": ops, "runtime": "builtin",
                    "kernel": "kernels", "fallback": True, "latency_ms": sum(x["latency_ms"] for x in small),
                    "share": sum(x["share"] for x in small)})
    return top + big + [x for x in layers if x["node"] is None and x["op"] == OVERHEAD]


def short_name(name: str) -> str:
    """A node's name for a table: the first of the tensor names the converter joined with ';'."""
    return name.split(";")[0]


def shown_rows(layers: list[dict]) -> list[tuple[str, str, float, float, str]]:
    """shown(layers) as table rows: (node and op, layer name, ms, share, kernel in words)."""
    rows = []
    for layer in shown(layers):
        node = f"#{layer['node']} {layer['op']}" if layer["node"] is not None else layer["op"]
        rows.append((node, short_name(layer["name"]), layer["latency_ms"], layer["share"], ran_on(layer) or "-"))
    return rows


# TFLite's builtin kernels that split their work over the interpreter's threads (through ruy or the CPU
# backend's thread pool). XNNPACK parallelizes all of its operators; every other builtin node, and the
# interpreter itself, runs on one thread whatever the thread count.
MULTITHREADED_BUILTINS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV"})


def single_threaded(layer: dict) -> bool:
    """Whether a layer (a LayerCount dict) runs on one thread whatever the thread count."""
    return layer["runtime"] != "xnnpack" and layer["op"] not in MULTITHREADED_BUILTINS


def serial_instructions(layers: list[dict]) -> int:
    """The instructions of one invoke that run on one thread (a detector's post-processing, a Flatten's shape
    bookkeeping, the interpreter between nodes): more threads do not shorten them."""
    return sum(layer["instructions"] for layer in layers if single_threaded(layer))


def price_layers(layers: list[dict], latency_ms: float, profile, kernels: str, threads: int) -> list[LayerEstimate]:
    """Split the whole-model estimate over the layers (LayerCount dicts) in proportion to each one's priced compute.

    Each layer is priced alone with the same cost model (its instruction mix, on the device's core,
    clock and threads) and gets that share of `latency_ms`. Summing the layers priced alone would not
    give the model's figure: the cost model is not additive (pipes overlap, and the memory roofline
    belongs to the whole invoke's traffic), so apportioning is what makes the layers add up to the
    estimate while ranking them by the same per-class prices.
    """
    from edgequant.devices import latency_model

    costs = [latency_model.estimate_ms(
        latency_model.Workload(layer["instructions"], layer["mix"], 0, 0, kernels,
                               serial_instructions=layer["instructions"] if single_threaded(layer) else 0),
        profile, threads) if layer["instructions"] > 0 else 0.0 for layer in layers]
    total = sum(costs)
    out = []
    for layer, cost in zip(layers, costs):
        share = cost / total if total else 0.0
        out.append(LayerEstimate(layer["node"], layer["op"], layer["name"], layer["runtime"], layer["kernel"],
                                 layer["fallback"], layer["instructions"], latency_ms * share, share))
    return out
