"""Make `lfw_faces/`: 100 real face photos from scikit-image's bundled LFW subset, as 64x64 grayscale PNGs.

    pip install scikit-image && python calibration_sets/make_lfw_faces.py

`skimage.data.lfw_subset()` holds 200 25x25 crops of Labeled Faces in the Wild:
the first 100 are faces, the last 100 are not. The faces are upsampled to the
64x64 input of the FER emotion model (recipes/fer_emotion.yaml).
"""

from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "lfw_faces"


def main() -> None:
    from skimage.data import lfw_subset

    faces = lfw_subset()[:100]
    OUT.mkdir(exist_ok=True)
    for i, face in enumerate(faces):
        img = Image.fromarray(np.round(face * 255).astype(np.uint8), mode="L").resize((64, 64), Image.BICUBIC)
        img.save(OUT / f"face_{i:03d}.png", optimize=True)
    print(f"wrote {len(faces)} faces to {OUT}")


if __name__ == "__main__":
    main()
