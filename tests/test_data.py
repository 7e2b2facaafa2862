"""Calibration/evaluation data: every source kind, preprocessing, checks and streaming memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from edgequant.data.stream import InputSpec, iter_batches, iter_samples
from edgequant.errors import DataError
from edgequant.recipe.schema import DataSpec
from tests.conftest import REPO


def spec(source: dict, **kw) -> DataSpec:
    return DataSpec.model_validate({"source": source, **kw})


def test_fashion_mnist_reads_real_images_and_labels():
    samples = list(iter_samples(spec({"type": "fashion-mnist", "split": "test"}, samples=3)))
    assert [s.label for s in samples] == [9, 2, 1]  # the first three test labels of Fashion-MNIST
    assert samples[0].x.shape == (28, 28, 1) and samples[0].x.dtype == np.float32
    assert samples[0].x.max() == 255.0  # no preprocessing declared: raw pixel values


def test_preprocess_scale_mean_std_layout():
    s = spec(
        {"type": "fashion-mnist", "split": "test"},
        samples=1,
        preprocess={"scale": 1 / 255, "mean": 0.5, "std": 0.5, "layout": "nchw"},
    )
    x = next(iter_samples(s)).x
    assert x.shape == (1, 28, 28)
    assert x.min() == pytest.approx(-1.0) and x.max() == pytest.approx(1.0)


def test_npy_with_labels(tmp_path):
    x = np.arange(5 * 4 * 4 * 1, dtype=np.float32).reshape(5, 4, 4, 1)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(5))
    s = spec({"type": "npy", "path": str(tmp_path / "x.npy"), "labels": str(tmp_path / "y.npy")})
    batches = list(iter_batches(s, InputSpec("in", (4, 4, 1)), batch_size=2))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), np.arange(5))


def test_npz_keys_and_missing_key(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.ones((3, 2, 2, 1)), labels=np.array([0, 1, 2]))
    s = spec({"type": "npz", "path": str(tmp_path / "d.npz"), "key": "images", "labels_key": "labels"})
    assert [smp.label for smp in iter_samples(s)] == [0, 1, 2]
    bad = spec({"type": "npz", "path": str(tmp_path / "d.npz"), "key": "x"})
    with pytest.raises(DataError, match=r"d.npz: no array 'x' \(it holds images, labels\)"):
        list(iter_samples(bad))


def test_image_folder_with_subfolder_labels_resize_and_color(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    s = spec(
        {"type": "images", "path": str(tmp_path), "labels": "subfolders"},
        preprocess={"resize": [16, 12], "color": "grayscale"},
    )
    samples = list(iter_samples(s, InputSpec("in", (16, 12, 1))))
    assert [smp.label for smp in samples] == [0, 0, 1, 1]
    assert all(smp.x.shape == (16, 12, 1) for smp in samples)


def test_shipped_face_calibration_set():
    s = spec(
        {"type": "images", "path": str(REPO / "calibration_sets" / "lfw_faces")},
        preprocess={"color": "grayscale", "resize": [64, 64], "scale": 1 / 255},
    )
    samples = list(iter_samples(s, InputSpec("in", (64, 64, 1))))
    assert len(samples) == 100
    assert 0.2 < float(np.mean([smp.x.mean() for smp in samples])) < 0.8  # real photos, not blank frames


def gen_samples(n: int = 4, bad_at: int = -1):
    for i in range(n):
        x = np.full((2, 2, 1), i, dtype=np.float32)
        if i == bad_at:
            x[0, 0, 0] = np.inf
        yield x, i % 2


def test_callable_source_and_bad_sample_index():
    s = spec({"type": "callable", "target": "tests.test_data:gen_samples", "kwargs": {"n": 4}}, samples=10)
    assert [smp.label for smp in iter_samples(s)] == [0, 1, 0, 1]
    bad = spec({"type": "callable", "target": "tests.test_data:gen_samples", "kwargs": {"bad_at": 2}}, samples=10)
    with pytest.raises(DataError, match="calibration sample 2 from tests.test_data:gen_samples contains infinite"):
        list(iter_samples(bad, role="calibration"))


def test_callable_that_cannot_be_imported():
    s = spec({"type": "callable", "target": "no_such_package.mod:fn"}, samples=1)
    with pytest.raises(DataError, match="no_such_package.mod:fn: failed to import: it raised ModuleNotFoundError"):
        list(iter_samples(s))


def test_streaming_memory_does_not_grow_with_the_number_of_samples(tmp_path):
    """A 20,000-sample .npy (63 MB) is streamed through a few hundred kB of Python allocations."""
    path = tmp_path / "big.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(20_000, 28, 28, 1))[:] = 0.5
    s = spec({"type": "npy", "path": str(path)})
    tracemalloc.start()
    count = sum(1 for _ in iter_samples(s, InputSpec("in", (28, 28, 1))))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 20_000
    assert peak < 2_000_000, f"peak {peak:,} bytes while streaming"  # the file is 62,720,128 bytes


def endless_samples():
    while True:
        yield np.zeros((2, 2, 1), dtype=np.float32)


def test_an_endless_callable_is_bounded_by_samples():
    s = spec({"type": "callable", "target": "tests.test_data:endless_samples"}, samples=5)
    assert len(list(iter_samples(s))) == 5


def test_labels_are_class_ids_or_target_arrays(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 2, 2, 1), np.float32))
    np.save(tmp_path / "ints.npy", np.array([0.0, 1.0, 2.0]))  # integer-valued floats are class ids
    np.save(tmp_path / "onehot.npy", np.eye(3, dtype=np.float32))  # one-hot rows, for categorical losses
    np.save(tmp_path / "negative.npy", np.array([0, -1, 2]))
    labels = {name: spec({"type": "npy", "path": str(tmp_path / "x.npy"), "labels": str(tmp_path / f"{name}.npy")})
              for name in ("ints", "onehot", "negative")}
    assert [s.label for s in iter_samples(labels["ints"])] == [0, 1, 2]
    np.testing.assert_array_equal(np.stack([s.label for s in iter_samples(labels["onehot"])]), np.eye(3))
    with pytest.raises(DataError, match=r"sample 1 from .*x.npy: label -1 is not a class id"):
        list(iter_samples(labels["negative"]))
