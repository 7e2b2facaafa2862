"""Write the samples bundled in the APK: the first Fashion-MNIST test image of each class.

    python android_demo/scripts/make_bundled_samples.py

Reads Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) and writes
app/src/main/assets/bundled/samples.bin (raw uint8, [10, 28, 28, 1]) and samples.json (the
app manifest's `samples` entry, plus `class_names`). The app uses them when no samples were
pushed and the model's input has 28x28x1 values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edgequant.data.idx import iter_idx
from edgequant.data.sources import FASHION_MNIST_CLASSES

DATA = Path("/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).resolve().parents[1] / "app" / "src" / "main" / "assets" / "bundled"


def main() -> None:
    first: dict[int, np.ndarray] = {}
    for image, label in zip(iter_idx(DATA / "t10k-images-idx3-ubyte.gz"), iter_idx(DATA / "t10k-labels-idx1-ubyte.gz")):
        first.setdefault(int(label), image)
        if len(first) == len(FASHION_MNIST_CLASSES):
            break
    labels = sorted(first)
    x = np.stack([first[c] for c in labels])[..., None].astype(np.uint8)
    data = x.tobytes(order="C")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "samples.bin").write_bytes(data)
    spec = {
        "file": "samples.bin",
        "dtype": "uint8",
        "shape": list(x.shape),
        "sha256": hashlib.sha256(data).hexdigest(),
        "labels": labels,
        "class_names": list(FASHION_MNIST_CLASSES),
        "source": "Fashion-MNIST test set (t10k), first image of each class",
    }
    (OUT / "samples.json").write_text(json.dumps(spec, indent=2) + "\n")
    print(f"wrote {OUT / 'samples.bin'} ({len(data)} bytes) and samples.json")


if __name__ == "__main__":
    main()
