"""Runs inside the emulated arm64 Python: load a .tflite, invoke it on given inputs, save outputs.

Only the standard library, numpy and ai_edge_litert are available here (no
edgequant). The host writes a request JSON; this script answers with files:
  outputs  .npz of every output tensor per sample ("<sample>_<output>")
  maps     this process's /proc/self/maps (qemu gives guest addresses), for
           attributing counted instructions to the libraries' symbols
  ops      (if asked) the interpreter's nodes, delegate nodes included

Each counted invoke runs inside a measurement window of the insncount plugin:
close() on two fds that never exist, which the plugin sees as markers.
"""

import json
import os
import sys

MARK_BEGIN = 0x7E5A0001  # must match insncount.c
MARK_END = 0x7E5A0002
MARK_BASE = 0x7E5A0003  # lseek(MARK_BASE, base): where the library the operator marks are in was loaded


def _mark(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _tell_library_base(library):
    """Tell the plugin where `library` (a file name) is loaded: its ELF address 0, as symbols.py computes it."""
    base = None
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and os.path.basename(parts[5].strip()) == library:
                start = int(parts[0].split("-")[0], 16) - int(parts[2], 16)
                base = start if base is None else min(base, start)
    if base is not None:
        try:
            os.lseek(MARK_BASE, base, 0)
        except OSError:
            pass


def _write_ops(interp, path):
    """The nodes as this runtime sees them, delegate nodes included: which ran on XNNPACK, and their names."""
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = []
    for o in interp._get_ops_details():
        outputs = [int(i) for i in o["outputs"]]
        ops.append({"index": int(o["index"]), "op": o["op_name"], "inputs": [int(i) for i in o["inputs"]],
                    "outputs": outputs, "name": names.get(outputs[0], "") if outputs else ""})
    with open(path, "w") as f:
        json.dump(ops, f)


def main(request_path):
    with open(request_path) as f:
        req = json.load(f)
    import numpy as np
    from ai_edge_litert import interpreter as litert

    if req.get("marks_library"):  # before the first invoke translates the marked code
        _tell_library_base(req["marks_library"])

    resolver = {
        "xnnpack": litert.OpResolverType.AUTO,
        "builtin": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "reference": litert.OpResolverType.BUILTIN_REF,
    }[req["kernels"]]
    interp = litert.Interpreter(
        model_path=req["model"], num_threads=req["threads"], experimental_op_resolver_type=resolver
    )
    interp.allocate_tensors()
    in_details = interp.get_input_details()
    out_details = interp.get_output_details()
    with np.load(req["inputs"], allow_pickle=False) as data:
        samples = [[data[f"{s}_{i}"] for i in range(len(in_details))] for s in range(req["samples"])]

    def run(sample, counted):
        for detail, x in zip(in_details, sample):
            interp.set_tensor(detail["index"], x)
        if counted:
            _mark(MARK_BEGIN)
        interp.invoke()
        if counted:
            _mark(MARK_END)
        return [interp.get_tensor(d["index"]).copy() for d in out_details]

    for _ in range(req["warmup"]):  # the first invoke also finishes lazy set-up: never count it
        run(samples[0], False)
    outputs = {}
    for s, sample in enumerate(samples):
        for o, y in enumerate(run(sample, req["count"])):
            outputs[f"{s}_{o}"] = y
    np.savez(req["outputs"], **outputs)
    if req.get("ops"):
        try:
            _write_ops(interp, req["ops"])
        except Exception as exc:  # a private API of the interpreter: per-layer figures are optional, outputs are not
            print(f"no per-layer figures: {exc}", file=sys.stderr)
    with open("/proc/self/maps") as src, open(req["maps"], "w") as dst:
        dst.write(src.read())


if __name__ == "__main__":
    main(sys.argv[1])
