"""The Android app's logic: Python writes the app manifest, the Kotlin core reads it, and both compute the same.

The Kotlin side (android_demo/core) is compiled with kotlinc by android_demo/scripts/test-core.sh,
which also runs its JUnit tests; CoreCli then replays real LiteRT outputs through the app's code path.
Tolerances: input bytes, top-k indices and scores must be identical; latency statistics agree to 1e-9
relative (summation order differs between Kotlin and NumPy).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgequant.android import app_logic
from edgequant.android.app_manifest import SCHEMA_FILE, AppPreprocess
from edgequant.android.push import write_app_files
from edgequant.android.samples import read_samples
from edgequant.errors import DataError, InputError, ModelFileError

REPO = Path(__file__).resolve().parents[1]
TEST_CORE = REPO / "android_demo" / "scripts" / "test-core.sh"
FMNIST = Path("/usr/share/datasets/fashion-mnist")
KOTLINC_DEFAULT = Path.home() / ".cache" / "edgequant" / "kotlin" / "node_modules" / "kotlin-compiler" / "bin" / "kotlinc"
N_SAMPLES = 64


def _kotlinc() -> Path | None:
    for candidate in (os.environ.get("KOTLINC"), KOTLINC_DEFAULT, shutil.which("kotlinc")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def kotlin_core(tmp_path_factory) -> dict:
    """Compile the core and run its unit tests once; the classpath for CoreCli and the JUnit output."""
    kotlinc = _kotlinc()
    if kotlinc is None:
        message = "kotlinc not installed: npm install --prefix ~/.cache/edgequant/kotlin kotlin-compiler@2.4.20"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it; a silent skip there would hide the Kotlin side
        pytest.skip(message)
    out = tmp_path_factory.mktemp("kotlinc")
    proc = subprocess.run(
        ["bash", str(TEST_CORE), str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "KOTLINC": str(kotlinc)},
    )
    assert proc.returncode == 0, f"test-core.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    lib = kotlinc.resolve().parent.parent / "lib"
    json_jar = os.environ.get("JSON_JAR", "/usr/share/java/com.android.json.jar")  # org.json, as test-core.sh
    return {"classpath": f"{out / 'classes'}:{lib / 'kotlin-stdlib.jar'}:{json_jar}", "junit": proc.stdout}


def _core_cli(kotlin_core: dict, *args: str) -> None:
    proc = subprocess.run(
        ["java", "-cp", kotlin_core["classpath"], "dev.edgequant.core.CoreCli", *args],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def _fmnist_test_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    from itertools import islice

    from edgequant.data.idx import iter_idx

    x = np.stack(list(islice(iter_idx(FMNIST / "t10k-images-idx3-ubyte.gz"), n)))
    y = np.array(list(islice(iter_idx(FMNIST / "t10k-labels-idx1-ubyte.gz"), n)), dtype=np.int64)
    return x, y


@pytest.fixture(scope="module")
def staged(fmnist_int8_tflite, tmp_path_factory) -> dict:
    """The files `edgequant push` would send for the real int8 Fashion-MNIST build, plus host LiteRT outputs."""
    from edgequant.data.sources import FASHION_MNIST_CLASSES
    from edgequant.model.runtime import load_interpreter

    work = tmp_path_factory.mktemp("push_stage")
    x, y = _fmnist_test_images(N_SAMPLES)
    np.savez(work / "samples.npz", x=x, y=y)  # (N, 28, 28) uint8: the push reshapes to the model's (28, 28, 1)
    (work / "labels.txt").write_text("\n".join(FASHION_MNIST_CLASSES) + "\n")
    files = write_app_files(
        fmnist_int8_tflite, work / "device", labels=work / "labels.txt", inputs=work / "samples.npz"
    )
    manifest = files.manifest
    preprocess = AppPreprocess.from_manifest(manifest["preprocess"])
    raw = read_samples(manifest["samples"], files.manifest_path.parent)
    inputs = [app_logic.prepare_input(raw[i], preprocess, manifest["inputs"][0]) for i in range(len(raw))]

    interp = load_interpreter(fmnist_int8_tflite)
    in_detail, out_detail = interp.get_input_details()[0], interp.get_output_details()[0]
    outputs = []
    for q in inputs:
        interp.set_tensor(in_detail["index"], q)
        interp.invoke()
        outputs.append(interp.get_tensor(out_detail["index"]).copy())
    return {"files": files, "manifest": manifest, "preprocess": preprocess, "raw": raw, "labels": y,
            "inputs": inputs, "outputs": outputs, "in_detail": in_detail, "work": work}


# --- Python side: the manifest and the app's arithmetic ------------------------------------------


def _check_schema(value, schema: dict, path: str = "$") -> None:
    """The subset of JSON Schema our schema file uses: type/const/enum/required/properties/items/oneOf/pattern."""
    import re

    if "oneOf" in schema:
        errors = []
        for option in schema["oneOf"]:
            try:
                _check_schema(value, option, path)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{path}: matches no option: {errors}")
    if "const" in schema:
        assert value == schema["const"], f"{path}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    kinds = schema.get("type")
    if kinds:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        pytypes = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "null": type(None)}
        assert any(isinstance(value, pytypes[k]) and not isinstance(value, bool) for k in kinds), f"{path}: {value!r} is not {kinds}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{path}: missing {key}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), f"{path}: unexpected keys {set(value) - set(props)}"
        for key, sub in props.items():
            if key in value:
                _check_schema(value[key], sub, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        assert len(value) >= schema.get("minItems", 0), f"{path}: fewer than {schema['minItems']} items"
        for i, item in enumerate(value):
            _check_schema(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, str) and "pattern" in schema:
        assert re.search(schema["pattern"], value), f"{path}: {value!r} does not match {schema['pattern']}"
    if isinstance(value, (int, float)) and "exclusiveMinimum" in schema:
        assert value > schema["exclusiveMinimum"], f"{path}: {value} <= {schema['exclusiveMinimum']}"
    if isinstance(value, (int, float)) and "minimum" in schema:
        assert value >= schema["minimum"], f"{path}: {value} < {schema['minimum']}"


def test_the_app_manifest_follows_its_schema_and_the_build(staged, fmnist_int8_tflite):
    manifest = json.loads(staged["files"].manifest_path.read_text())
    _check_schema(manifest, json.loads(SCHEMA_FILE.read_text()))
    build = json.loads((Path(fmnist_int8_tflite).parent / "manifest.json").read_text())
    artifact = next(a for a in build["artifacts"] if a["file"] == Path(fmnist_int8_tflite).name)
    assert manifest["model"]["sha256"] == artifact["sha256"]
    assert manifest["model"]["mode"] == "int8"
    assert manifest["preprocess"]["scale"] == artifact["provenance"]["preprocess"]["scale"]
    assert manifest["provenance"]["recipe_sha256"] == artifact["provenance"]["recipe"]["sha256"]
    assert manifest["inputs"][0]["dtype"] == "int8" and manifest["inputs"][0]["shape"] == [1, 28, 28, 1]
    assert manifest["samples"]["shape"] == [N_SAMPLES, 28, 28, 1]
    assert manifest["samples"]["labels"] == staged["labels"].tolist()
    assert manifest["labels"][9] == "Ankle boot"


def test_app_inputs_are_what_edgequant_feeds_the_interpreter(staged):
    """The app's preprocessing + quantization equals edgequant's own (data.preprocess + runtime.quantize_input)."""
    from edgequant.data.preprocess import preprocess
    from edgequant.model.runtime import quantize_input
    from edgequant.recipe.schema import Preprocess

    spec = Preprocess(scale=staged["preprocess"].scale)
    for i, raw in enumerate(staged["raw"]):
        x = preprocess(raw, spec)[None]  # (1, 28, 28, 1) float32
        np.testing.assert_array_equal(app_logic.normalize(raw, staged["preprocess"], [1, 28, 28, 1]), x)
        expected = quantize_input(x, staged["in_detail"])  # the interpreter's own scale and zero point
        assert staged["inputs"][i].dtype == np.int8
        np.testing.assert_array_equal(staged["inputs"][i], expected)


def test_python_top_k_breaks_ties_by_lower_index():
    assert app_logic.top_k(np.array([0.1, 0.5, 0.2, 0.5, 0.2], np.float32), 4) == [(1, 0.5), (3, 0.5), (2, np.float32(0.2)), (4, np.float32(0.2))]
    assert [i for i, _ in app_logic.top_k(np.array([0.0, np.nan, 1.0, -0.0], np.float32), 4)] == [2, 0, 3, 1]


def test_without_a_build_manifest_everything_comes_from_the_file(fmnist_int8_tflite, tmp_path):
    lone = tmp_path / "copy" / "fmnist.tflite"
    lone.parent.mkdir()
    shutil.copyfile(fmnist_int8_tflite, lone)
    manifest = write_app_files(lone, tmp_path / "out", scale=1 / 255).manifest
    assert manifest["model"]["name"] == "fmnist" and manifest["model"]["mode"] == "int8"
    assert manifest["preprocess"] == {"scale": 1 / 255, "mean": [0.0], "std": [1.0], "layout": "nhwc"}
    assert manifest["provenance"] == {"build_manifest": None, "source_model_sha256": None, "recipe_sha256": None}
    assert manifest["samples"] is None and manifest["labels"] == []
    assert write_app_files(lone, tmp_path / "out2").manifest["preprocess"]["scale"] == 1.0


def test_a_changed_artifact_is_refused(fmnist_int8_tflite, tmp_path):
    build_dir = Path(fmnist_int8_tflite).parent
    shutil.copyfile(fmnist_int8_tflite, tmp_path / Path(fmnist_int8_tflite).name)
    build = json.loads((build_dir / "manifest.json").read_text())
    for a in build["artifacts"]:
        a["sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(build))
    with pytest.raises(ModelFileError, match=r"differs from .*manifest\.json's 000000000000…: the file changed after the build"):
        write_app_files(tmp_path / Path(fmnist_int8_tflite).name, tmp_path / "out")


def test_samples_and_labels_that_do_not_fit_are_refused(fmnist_int8_tflite, tmp_path):
    np.savez(tmp_path / "big.npz", x=np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"big\.npz: each sample has shape \(32, 32\), the model input needs \(28, 28, 1\)"):
        write_app_files(fmnist_int8_tflite, tmp_path / "a", inputs=tmp_path / "big.npz")
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 28, 28), np.uint8), b=np.zeros(3))
    with pytest.raises(DataError, match=r"no array 'x' \(arrays: a, b\)"):
        write_app_files(fmnist_int8_tflite, tmp_path / "b", inputs=tmp_path / "two.npz")
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    with pytest.raises(InputError, match=r"3 labels for 10 output classes"):
        write_app_files(fmnist_int8_tflite, tmp_path / "c", labels=tmp_path / "labels.txt")


# --- Kotlin side: same manifest, same bytes, same answers ----------------------------------------


@pytest.mark.slow
def test_kotlin_core_unit_tests_pass(kotlin_core):
    tail = kotlin_core["junit"].strip().splitlines()[-1]
    assert tail.startswith("OK (") and int(tail.split("(")[1].split()[0]) >= 25, tail


@pytest.mark.slow
def test_kotlin_reads_the_manifest_and_computes_what_python_does(kotlin_core, staged, tmp_path):
    files, manifest = staged["files"], staged["manifest"]
    outputs = tmp_path / "outputs.bin"
    outputs.write_bytes(b"".join(o.tobytes() for o in staged["outputs"]))
    latencies = np.random.default_rng(0).integers(200_000, 5_000_000, size=37)
    (tmp_path / "lat.txt").write_text("\n".join(str(int(v)) for v in latencies))
    _core_cli(
        kotlin_core, "--manifest", str(files.manifest_path), "--inputs-out", str(tmp_path / "inputs.bin"),
        "--outputs", str(outputs), "--latencies-ns", str(tmp_path / "lat.txt"), "--top-k", "3", "--out", str(tmp_path / "kt.json"),
    )
    kt = json.loads((tmp_path / "kt.json").read_text())

    # The manifest as Kotlin parsed it.
    km = kt["manifest"]
    assert km["model_sha256"] == manifest["model"]["sha256"]
    assert km["inputs"][0] == {"name": manifest["inputs"][0]["name"], "shape": [1, 28, 28, 1], "dtype": "int8",
                               "scale": manifest["inputs"][0]["quantization"]["scale"], "zero_point": [-128]}
    assert km["labels"] == manifest["labels"]
    assert np.float32(km["preprocess"]["scale"]) == np.float32(manifest["preprocess"]["scale"])

    # The same int8 input bytes for every real image.
    kt_inputs = (tmp_path / "inputs.bin").read_bytes()
    assert kt_inputs == b"".join(q.tobytes() for q in staged["inputs"])

    # The same top-3 (indices, exact float32 scores, labels) from the same outputs.
    run = kt["run"]
    ties = 0
    for i, (pred, out) in enumerate(zip(run["predictions"], staged["outputs"])):
        scores = app_logic.dequantize(out, manifest["outputs"][0])
        expected = app_logic.top_k(scores, 3)
        assert [(t["index"], t["score"]) for t in pred["top"]] == expected, f"sample {i}"
        assert [t["label"] for t in pred["top"]] == [manifest["labels"][j] for j, _ in expected]
        assert pred["expected"] == int(staged["labels"][i])
        ties += len({s for _, s in expected}) < 3
    assert ties > 0, "no sample had tied scores in its top 3: the tie rule went untested"
    correct = sum(app_logic.top_k(app_logic.dequantize(o, manifest["outputs"][0]), 1)[0][0] == y
                  for o, y in zip(staged["outputs"], staged["labels"]))
    assert run["accuracy"] == {"top1_correct": correct, "count": N_SAMPLES, "top1": correct / N_SAMPLES}
    assert correct >= 0.8 * N_SAMPLES  # the trained model: a sanity check that inputs were fed right

    # Latency statistics as NumPy computes them.
    ms = latencies / 1e6
    lat = run["latency"]
    assert lat["runs"] == len(ms)
    for key, value in (("mean_ms", ms.mean()), ("median_ms", np.median(ms)), ("p90_ms", np.percentile(ms, 90)),
                       ("min_ms", ms.min()), ("max_ms", ms.max()), ("std_ms", ms.std())):
        assert lat[key] == pytest.approx(value, rel=1e-9), key


@pytest.mark.slow
def test_kotlin_rounds_exact_ties_half_to_even_like_numpy(kotlin_core, staged, tmp_path):
    """Float32 samples built to land exactly on .5 after x / scale + zero_point, with an odd zero point."""
    manifest = json.loads(json.dumps(staged["manifest"]))
    scale = float(np.float32(0.054818872))
    manifest["inputs"][0]["quantization"] = {"scale": [scale], "zero_point": [-27], "axis": 0}
    manifest["preprocess"] = {"scale": 1.0, "mean": [0.0], "std": [1.0], "layout": "nhwc"}
    k = np.arange(-100, 100, dtype=np.float64)
    x = np.resize(np.float32((k + 0.5) * scale), 3 * 784).astype(np.float32).reshape(3, 28, 28, 1)
    x[0, 0, :4, 0] = [2.4942586, -0.23512162, 1e6, -1e6]  # float32 vs float64 disagree on the first two; clamping
    data = x.astype("<f4").tobytes()
    import hashlib

    manifest["samples"] = {"file": "ties.bin", "dtype": "float32", "shape": [3, 28, 28, 1],
                           "sha256": hashlib.sha256(data).hexdigest(), "labels": None}
    (tmp_path / "ties.bin").write_bytes(data)
    (tmp_path / "app_manifest.json").write_text(json.dumps(manifest))
    _core_cli(kotlin_core, "--manifest", str(tmp_path / "app_manifest.json"), "--inputs-out", str(tmp_path / "q.bin"), "--out", str(tmp_path / "kt.json"))

    pre = AppPreprocess()
    python = np.stack([app_logic.prepare_input(x[i], pre, manifest["inputs"][0]) for i in range(3)])
    shifted = x / np.float32(scale) + np.float32(-27)
    exact_ties = np.count_nonzero(shifted == np.floor(shifted) + 0.5)
    half_away = np.clip(np.floor(np.abs(shifted) + 0.5) * np.sign(shifted), -128, 127).astype(np.int8)
    assert exact_ties > 1000, "the samples should mostly be exact ties"
    assert np.count_nonzero(half_away.reshape(python.shape) != python) > 500, "half-away-from-zero must give other bytes"
    assert (tmp_path / "q.bin").read_bytes() == python.tobytes()
