"""Batched evaluation against one-sample-at-a-time invocation, on the 10,000 Fashion-MNIST test images.

    python benchmarks/eval_throughput.py [--model recipes/build/fashion_mnist/int8.tflite] [--rounds 3]

Both sides run the same model, on the same preprocessed images already in memory,
through edgequant's BatchRunner (quantize inputs, invoke, dequantize outputs), and
check they compute the same predictions. The batched side resizes the interpreter's
input to the batch; the other invokes once per image, as a plain loop would. The
rounds alternate the two sides, so machine noise hits both. The result is printed and written to
docs/results/eval_throughput.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from results_page import printed_results

from edgequant.data.idx import iter_idx
from edgequant.measure.evaluate import BatchRunner

REPO = Path(__file__).resolve().parents[1]
DATA = Path("/usr/share/datasets/fashion-mnist")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=REPO / "recipes/build/fashion_mnist/int8.tflite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: build it first: edgequant build recipes/fashion_mnist.yaml")

    x = np.stack(list(iter_idx(DATA / "t10k-images-idx3-ubyte.gz")))[..., None].astype(np.float32) / 255.0
    batched, single = BatchRunner(args.model), BatchRunner(args.model)

    def run_batched():
        return np.concatenate([batched(x[i : i + args.batch_size]) for i in range(0, len(x), args.batch_size)])

    def run_single():
        return np.concatenate([single(x[i : i + 1]) for i in range(len(x))])

    times = {"batched": [], "single": []}
    outputs = {}
    for r in range(args.rounds):
        for name, fn in (("batched", run_batched), ("single", run_single))[:: 1 if r % 2 == 0 else -1]:
            started = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - started)
    same = float((outputs["batched"].argmax(1) == outputs["single"].argmax(1)).mean())
    best = {k: min(v) for k, v in times.items()}
    with printed_results("eval_throughput"):
        print(f"{args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model}, {len(x):,} images, best of {args.rounds} alternating rounds")
        print(f"  batched ({args.batch_size} per invoke)   {best['batched']:7.3f} s  {len(x) / best['batched']:>10,.0f} images/s")
        print(f"  one image per invoke       {best['single']:7.3f} s  {len(x) / best['single']:>10,.0f} images/s")
        print(f"  batched is {best['single'] / best['batched']:.1f}x faster; same top-1 on {same:.2%} of images")


if __name__ == "__main__":
    main()
