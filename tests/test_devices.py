"""Simulated edge devices: profiles, the emulated ARM runner (real qemu), ARM parity and estimates.

The slow tests run real aarch64 LiteRT under qemu-aarch64; they need the ARM
environment (`edgequant devices setup`, which CI runs first; otherwise the first
test builds it, about a minute).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgequant.devices import latency_model
from edgequant.devices.core_timings import CORES, INSTRUCTION_CLASSES, PRICED
from edgequant.devices.profiles import DERIVED_INTERVAL_WIDENING, QEMU_CPU_FEATURES, list_profiles, load_profile
from edgequant.errors import InputError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REQUIRED = {"rpi3", "rpi4", "rpi5", "pixel3", "pixel4", "pixel6", "cortex-a55", "jetson-nano", "host"}
REPO = Path(__file__).resolve().parents[1]
RPI4 = REPO / "edgequant" / "devices" / "profiles" / "rpi4.yaml"
COUNTS = REPO / "benchmarks" / "device_counts.json"
needs_qemu = pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="qemu-user is not installed")


# --- profiles ---------------------------------------------------------------------------------


def test_shipped_profiles_load_and_are_consistent():
    profiles = {p.name: p for p in list_profiles()}
    assert REQUIRED <= set(profiles)
    for p in profiles.values():
        if not p.emulated:
            continue
        # the faked cpuinfo never claims what the emulated CPU lacks (that would be SIGILL)
        assert set(p.cpuinfo_features) <= QEMU_CPU_FEATURES[p.qemu_cpu], p.name
        assert p.cost.source and p.clock_ghz > 0 and p.cores >= 1
        # every core a thread may run on is priced by its own published timings
        assert all(c.core in CORES for c in p.clusters()), p.name
        # a dot-product core is emulated with dot product, and only then
        assert CORES[p.core].dot_product == ("asimddp" in p.cpuinfo_features), p.name
    assert profiles["pixel4"].qemu_cpu == "cortex-a76" and "asimddp" in profiles["pixel4"].cpuinfo_features
    assert profiles["rpi4"].qemu_cpu == "cortex-a72" and "asimddp" not in profiles["rpi4"].cpuinfo_features
    # calibrated devices carry their leave-one-device-out error; the others say they have no rows
    assert profiles["rpi4"].calibration_error_pct is not None and profiles["rpi4"].cost.calibration_rows >= 4
    assert profiles["pixel6"].calibration_error_pct is None and profiles["pixel6"].cost.calibration_rows == 0
    # a device without rows of its own gets the wider interval of a profile made with `devices new`
    for p in profiles.values():
        if p.emulated:
            assert p.cost.interval_widening == (1.0 if p.cost.calibration_rows else DERIVED_INTERVAL_WIDENING), p.name


def test_profile_clocks_are_the_published_ones():
    """The clocks of the cores that run the benchmark, as the devices' makers publish them."""
    clocks = {p.name: (p.clock_ghz, p.threaded_clock_ghz, p.cores) for p in list_profiles() if p.emulated}
    assert clocks["pixel1"] == (2.15, 2.15, 2)  # Snapdragon 821 in the Pixel: 2x Kryo 2.15 GHz (+2x 1.6)
    assert clocks["pixel2"] == (2.35, 2.35, 4)  # Google's Pixel 2 spec: 2.35 GHz + 1.9 GHz
    assert clocks["pixel3"] == (2.5, 2.5, 4)  # Google's Pixel 3 spec: 2.5 GHz + 1.6 GHz
    assert clocks["pixel3a"] == (2.0, 2.0, 2)  # Snapdragon 670: 2x Kryo 360 Gold 2.0 GHz
    assert clocks["pixel4"] == (2.84, 2.42, 4)  # Snapdragon 855: 1x 2.84 + 3x 2.42 GHz A76
    assert clocks["rpi3"] == (1.4, 1.4, 4) and clocks["rpi4"] == (1.5, 1.5, 4) and clocks["rpi5"] == (2.4, 2.4, 4)
    assert clocks["jetson-nano"] == (1.43, 1.43, 4)  # NVIDIA's Jetson Nano spec: 4x A57 @ 1.43 GHz
    # big.LITTLE: threads beyond the big cores run on the little ones
    assert [(c.cores, c.core) for c in load_profile("pixel4").clusters()] == [
        (1, "Cortex-A76"), (3, "Cortex-A76"), (4, "Cortex-A55")]


def test_cpuinfo_names_the_real_core():
    text = load_profile("pixel6").cpuinfo_text(2)
    assert text.count("processor\t:") == 2
    assert "CPU part\t: 0xd44" in text  # Cortex-X1, emulated as cortex-a76
    assert "asimddp" in text.splitlines()[2]


def test_user_profile_by_path(tmp_path):
    mine = tmp_path / "myboard.yaml"
    mine.write_text(RPI4.read_text().replace("name: rpi4", "name: myboard").replace("clock_ghz: 1.5", "clock_ghz: 1.8"))
    prof = load_profile(str(mine))
    assert prof.name == "myboard" and prof.clock_ghz == 1.8


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (("qemu_cpu: cortex-a72", "qemu_cpu: cortex-a99"), "qemu_cpu", "not one of"),
        (("cpuinfo_features: [fp, asimd, evtstrm, crc32, cpuid]", "cpuinfo_features: [fp, asimd, asimddp]"),
         "(profile)", "asimddp, which qemu's cortex-a72 lacks"),
        (("cpu_part: 0xd08", "cpu_part: 0xd0b"), "(profile)", "assume dot product"),
        (("clock_ghz: 1.5", "clock_gz: 1.5"), "clock_gz", "did you mean 'clock_ghz'"),
        (("core: Cortex-A72", "core: Cortex-A99"), "(profile)", "no published instruction timings"),
        (("  calibration_rows:", "  cpi_float: 0.9\n  calibration_rows:"), "cost.cpi_float", "unknown field"),
        (("  calibration_rows:", "  interval_widening: 0.5\n  calibration_rows:"), "cost.interval_widening",
         "greater than or equal to 1"),
    ],
    ids=["unknown-qemu-cpu", "feature-the-cpu-lacks", "part-implies-dotprod", "typo-in-field", "core-without-timings",
         "old-per-profile-costs", "narrowed-interval"],
)
def test_bad_profile_names_file_and_field(tmp_path, edit, field, message):
    bad = tmp_path / "bad.yaml"
    assert edit[0] in RPI4.read_text()
    bad.write_text(RPI4.read_text().replace(*edit))
    with pytest.raises(InputError) as err:
        load_profile(bad)
    text = str(err.value)
    assert text.startswith(f"{bad}: {field}:"), text
    assert message in text


def test_unknown_device_suggests_a_name():
    with pytest.raises(InputError, match=r"unknown device 'rpi44' \(did you mean 'rpi4'\?\)"):
        load_profile("rpi44")
    with pytest.raises(InputError, match="no such device profile file"):
        load_profile("missing/board.yaml")


def test_devices_new_writes_a_validated_profile_with_a_wider_interval(tmp_path, capsys):
    from edgequant.cli import main

    out = tmp_path / "imx8mp.yaml"
    args = ["devices", "new", "--like", "rpi3", "--name", "imx8mp", "--clock", "1.8", "--cores", "4",
            "--memory", "4096", "--bandwidth", "4", "--device", "NXP i.MX 8M Plus", "--out", str(out)]
    assert main(args) == 0
    prof = load_profile(out)
    assert (prof.core, prof.qemu_cpu, prof.clock_ghz, prof.cores, prof.memory_mb) == (
        "Cortex-A53", "cortex-a53", 1.8, 4, 4096)
    assert prof.cost.calibration_rows == 0 and prof.cost.interval_widening > 1
    # same counts, same core: the estimate scales with the clock; its interval is wider than rpi3's
    work = _counted_workload("mobilenet_v1", "int8", "rpi3")
    rpi3 = load_profile("rpi3")
    assert latency_model.estimate_ms(work, prof, 1) < latency_model.estimate_ms(work, rpi3, 1)
    lo, hi, _ = latency_model.interval_ms(100.0, "Cortex-A53", "int8", "xnnpack", widening=prof.cost.interval_widening)
    lo3, hi3, _ = latency_model.interval_ms(100.0, "Cortex-A53", "int8", "xnnpack")
    assert lo < lo3 < 100 < hi3 < hi
    assert main(args) == 2  # the file exists
    assert main(["devices", "new", "--like", "host", "--name", "x", "--out", str(tmp_path / "x.yaml")]) == 2
    assert main(["devices", "new", "--like", "rpi3", "--name", "Bad Name", "--out", str(tmp_path / "y.yaml")]) == 2


# --- the cost model (pure arithmetic on the committed counts, no emulation) --------------------


def _counted_workload(model: str, precision: str, profile: str, kernels: str = "xnnpack") -> latency_model.Workload:
    """A workload from benchmarks/device_counts.json: real counts, measured under qemu by the fit script."""
    import json
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import fit_device_profiles as fit

    row = {"model": model, "precision": precision, "profile": profile, "kernels": kernels}
    work = fit.workload_for(row, json.loads(COUNTS.read_text()))
    assert work is not None, f"no counts for {row}"
    return work


def test_counted_mix_covers_every_instruction():
    import json

    for key, entry in json.loads(COUNTS.read_text())["counts"].items():
        assert sum(entry["mix"][c] for c in INSTRUCTION_CLASSES) == entry["instructions"], key
        dot_core = "0x51:0x80" in key or any(f":{part}" in key for part in ("0xd05", "0xd0b", "0xd44"))  # Kryo
        # 385/485, Cortex-A55, A76, X1
        if "|int8|" in key and dot_core:
            assert entry["mix"]["dot"] > entry["mix"]["int_mac"], key  # SDOT kernels on dot-product cores
        if not dot_core:
            assert entry["mix"]["dot"] == 0, key


def test_threads_scale_up_to_the_cores_and_spill_onto_little_cores():
    work = _counted_workload("mobilenet_v1", "fp32", "rpi4")
    rpi4 = load_profile("rpi4")
    by_threads = [latency_model.estimate_ms(work, rpi4, n) for n in range(1, 6)]
    assert all(a > b for a, b in zip(by_threads, by_threads[1:4]))  # more threads, faster, up to the cores
    assert by_threads[4] == by_threads[3]  # a 5th thread on 4 cores gains nothing
    # an in-order A53 gains more from 4 threads than an A72 on the same memory term
    a53 = _counted_workload("mobilenet_v1", "int8", "rpi3")
    rpi3 = load_profile("rpi3")
    assert latency_model.estimate_ms(a53, rpi3, 1) / latency_model.estimate_ms(a53, rpi3, 4) > 2.5
    # Pixel 4: the 5th thread lands on an A55, which adds less than an A76 did
    px4 = load_profile("pixel4")
    w = _counted_workload("mobilenet_v1", "fp32", "pixel4", "builtin")
    t = [latency_model.estimate_ms(w, px4, n) for n in (3, 4, 5)]
    assert t[0] - t[1] > t[1] - t[2] > 0


def test_single_threaded_nodes_cap_the_thread_speed_up():
    """A detector's post-processing runs on one thread (TFLite's builtin kernel): counted per node under
    emulation, it is 6.6% of EfficientDet-Lite0 int8's instructions on the A76, and more threads do not shorten it."""
    import dataclasses

    work = _counted_workload("efficientdet_lite0", "int8", "rpi5")
    assert 0.03 < work.serial_instructions / work.instructions < 0.1
    rpi5 = load_profile("rpi5")
    parallel = dataclasses.replace(work, serial_instructions=0)
    speed_up = latency_model.estimate_ms(work, rpi5, 1) / latency_model.estimate_ms(work, rpi5, 4)
    assert 1 < speed_up < latency_model.estimate_ms(parallel, rpi5, 1) / latency_model.estimate_ms(parallel, rpi5, 4)
    assert latency_model.estimate_ms(work, rpi5, 1) == latency_model.estimate_ms(parallel, rpi5, 1)
    serial = dataclasses.replace(work, weight_bytes=0, activation_bytes=0, serial_instructions=work.instructions)
    assert latency_model.estimate_ms(serial, rpi5, 4) == pytest.approx(latency_model.estimate_ms(serial, rpi5, 1))


def test_int8_prices_dot_product_by_the_core():
    """int8 on a dot-product core runs ~3x fewer instructions (one SDOT does 16 multiply-adds, an FMLA 4);
    without SDOT (A53: SMLAL) it runs almost as many as fp32. The cores' prices turn that into speed-ups."""
    px6, rpi3 = load_profile("pixel6"), load_profile("rpi3")
    f32, i8 = (_counted_workload("efficientnet_lite0", p, "pixel6") for p in ("fp32", "int8"))
    assert i8.mix["dot"] > i8.mix["int_mac"] and f32.instructions / i8.instructions > 2
    dot_speedup = latency_model.estimate_ms(f32, px6, 1) / latency_model.estimate_ms(i8, px6, 1)
    # published on the Pixel 6 (MediaPipe, whole pipeline): 23.52 / 10.08 = 2.33x; the fit is held to it
    assert 2.0 < dot_speedup < 2.9
    # an SDOT is priced as an SDOT: at the FMLA's price the same counts would claim a larger speed-up
    params = latency_model.shipped_params()
    as_float = latency_model.CostParams(**{**params.to_dict(), "price": {**params.price, "dot": params.price["fp_mac"]}})
    assert params.price["dot"] != params.price["fp_mac"]
    assert (latency_model.estimate_ms(f32, px6, 1, as_float) / latency_model.estimate_ms(i8, px6, 1, as_float)
            != pytest.approx(dot_speedup, rel=1e-3))
    f32, i8 = (_counted_workload("mobilenet_v1", p, "rpi3") for p in ("fp32", "int8"))
    assert i8.mix["dot"] == 0 and f32.instructions / i8.instructions < 1.6
    a53_speedup = latency_model.estimate_ms(f32, rpi3, 1) / latency_model.estimate_ms(i8, rpi3, 1)
    assert 1.2 < a53_speedup < dot_speedup


def test_interval_band_properties():
    band = latency_model.interval_from_errors([0.0] * 4)
    assert band["lo"] <= -0.09 and band["hi"] >= 0.09 and band["rows"] == 4  # never narrower than ±10%
    # the same spread of errors (same 10th/90th percentiles) from 5 rows and from 51
    wide = latency_model.interval_from_errors(list(np.linspace(-0.3, 0.3, 5)))
    more = latency_model.interval_from_errors(list(np.linspace(-0.3, 0.3, 51)))
    assert wide["hi"] - wide["lo"] > more["hi"] - more["lo"]  # fewer rows, wider band
    lo, hi, group = latency_model.interval_ms(20.0, "Cortex-A76", "int8", "xnnpack")
    assert lo < 20.0 < hi and group
    # the band comes from the most specific group with enough rows: the core's own, else all dot-product cores
    params = latency_model.shipped_params()
    for core, precision in (("Cortex-A76", "int8"), ("Cortex-A76", "fp32"), ("Cortex-A53", "fp32")):
        expected = next(g for g in latency_model.interval_group(core, precision, "xnnpack")
                        if params.intervals.get(g, {}).get("rows", 0) >= latency_model.MIN_INTERVAL_ROWS)
        assert latency_model.interval_ms(20.0, core, precision, "xnnpack")[2] == expected


def test_every_estimate_lies_inside_its_interval():
    """For every shipped profile, precision, kernel family and thread count, the interval an estimate quotes
    holds the estimate itself (the Cortex-A73 fp32 band once ended below it: `177.7 ms (178–288 ms)`)."""
    import json

    counts = json.loads(COUNTS.read_text())["counts"]
    checked = 0
    for prof in list_profiles():
        if not prof.emulated:
            continue
        for precision in ("fp32", "int8"):
            for kernels in latency_model.KERNEL_FAMILIES:
                # counts of this precision and kernels, on this profile's qemu CPU where the file has them
                keys = [k for k in counts if k.split("|")[1] == precision and k.endswith(f"|{kernels}")]
                key = next((k for k in keys if k.split("|")[2] == prof.qemu_cpu), keys[0])
                entry = counts[key]
                work = latency_model.Workload(entry["instructions"], entry["mix"], 4_000_000, 5_000_000, kernels,
                                              serial_instructions=entry.get("serial_instructions", 0))
                assert latency_model.precision_of(entry["mix"]) == precision, key
                for threads in range(1, prof.max_threads + 1):
                    est = latency_model.estimate_ms(work, prof, threads)
                    lo, hi, group = latency_model.interval_ms(est, prof.core, precision, kernels,
                                                              widening=prof.cost.interval_widening)
                    assert lo < est < hi, (prof.name, precision, kernels, threads, group, lo, est, hi)
                    checked += 1
    assert checked > 100


def test_cost_model_terms_the_fit_validates():
    """The terms `fit --sensitivity` tries: weights read per thread, a cost per node, streaming nodes' bytes."""
    import dataclasses

    rpi4 = load_profile("rpi4")
    mib = 1 << 20
    work = latency_model.Workload(10**8, {"fp_mac": 10**8}, 4 * mib, 6 * mib, nodes=100,
                                  streaming_nodes=(("stream", 3 * mib),))
    base = dataclasses.replace(latency_model.shipped_params(), node_kcycles=0.0, node_sync_kcycles=0.0,
                               streaming=False, on_chip_kb=0.0, stream_factor=1.0)
    assert latency_model.dram_bytes(work, rpi4, base) == 4 * mib + 2 * 6 * mib  # everything, as before
    per_thread = dataclasses.replace(base, weights_per_thread=True)
    assert latency_model.dram_bytes(work, rpi4, per_thread, threads=4) == 4 * 4 * mib + 2 * 6 * mib
    assert latency_model.dram_bytes(work, rpi4, per_thread, threads=9) == 4 * 4 * mib + 2 * 6 * mib  # 4 cores
    # a cost per node: dispatch on one thread, plus the thread pool's barrier per extra thread
    nodes = dataclasses.replace(base, node_kcycles=3.0, node_sync_kcycles=2.0, roofline_p=1.0)
    flat = dataclasses.replace(base, roofline_p=1.0)
    for threads, kcycles in ((1, 3.0), (4, 3.0 + 3 * 2.0)):
        extra = latency_model.estimate_ms(work, rpi4, threads, nodes) - latency_model.estimate_ms(work, rpi4, threads, flat)
        assert abs(extra - 100 * kcycles / (rpi4.clock_ghz * 1e3)) < 1e-9
    # streaming bytes: the same at every thread count, so more threads save less
    stream = dataclasses.replace(base, streaming=True)
    one, four = (latency_model.estimate_ms(work, rpi4, t, stream) for t in (1, 4))
    assert latency_model.estimate_ms(work, rpi4, 1, base) < one
    assert one / four < latency_model.estimate_ms(work, rpi4, 1, base) / latency_model.estimate_ms(work, rpi4, 4, base)


def test_streaming_nodes_are_the_nodes_without_weights_and_depthwise_convolutions():
    from types import SimpleNamespace as NS

    def tensor(shape, constant=False):
        return NS(is_constant=constant, shape=shape, dtype="float32")

    t = [tensor((1, 8, 8, 4)), tensor((4, 3, 3, 4), constant=True), tensor((1, 8, 8, 4)), tensor((1, 8, 8, 4)),
         tensor((1, 3, 3, 4), constant=True), tensor((1, 8, 8, 4))]
    ops = [NS(op_type="CONV_2D", inputs=(0, 1), outputs=(2,)), NS(op_type="ADD", inputs=(2, 0), outputs=(3,)),
           NS(op_type="DEPTHWISE_CONV_2D", inputs=(3, 4, -1), outputs=(5,))]
    size = 8 * 8 * 4 * 4  # the weights (constant) and the missing bias (-1) are not activation bytes
    nodes = latency_model.streaming_nodes(NS(tensors=t, operators=ops))
    assert nodes == (("stream", 3 * size), ("depthwise", 2 * size))


def test_only_streaming_nodes_too_large_for_the_chip_reach_dram():
    """A node whose tensors fit on chip adds nothing; a larger one adds its bytes at the device's bandwidth, and the
    depthwise ones only with streaming_depthwise."""
    import dataclasses

    rpi4 = load_profile("rpi4")
    kib = 1024
    nodes = (("stream", 512 * kib), ("stream", 4096 * kib), ("depthwise", 2048 * kib))
    work = latency_model.Workload(10**8, {"fp_mac": 10**8}, 0, 0, streaming_nodes=nodes)
    params = dataclasses.replace(latency_model.shipped_params(), streaming=True, streaming_depthwise=True,
                                 on_chip_kb=1024.0)
    assert latency_model.streamed_bytes(work, params) == (4096 + 2048) * kib
    assert latency_model.streamed_bytes(work, dataclasses.replace(params, streaming_depthwise=False)) == 4096 * kib
    assert latency_model.streamed_bytes(work, dataclasses.replace(params, on_chip_kb=0.0)) == (512 + 4096 + 2048) * kib
    fits = dataclasses.replace(work, streaming_nodes=(("stream", 512 * kib),))
    off = dataclasses.replace(params, streaming=False)
    assert latency_model.estimate_ms(fits, rpi4, 1, params) == latency_model.estimate_ms(fits, rpi4, 1, off)
    big = dataclasses.replace(work, streaming_nodes=(("stream", 4096 * kib),))
    bandwidth = rpi4.memory_bandwidth_gbs * params.memory_efficiency * params.stream_factor
    added = latency_model.estimate_ms(big, rpi4, 1, params) - latency_model.estimate_ms(big, rpi4, 1, off)
    assert added == pytest.approx(4096 * kib / (bandwidth * 1e6))  # no weights or other tensors: nothing else moves


def test_fit_reproduces_the_shipped_parameters(capsys):
    """cost_params.json is what the fit script computes from the committed calibration rows and counts,
    and the script prints leave-one-row-out and leave-one-device-out errors by group."""
    import json
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import fit_device_profiles as fit

    rows = fit.read_rows(fit.DEFAULT_CSV)
    counts = json.loads(COUNTS.read_text())
    data = fit.usable_rows(rows, counts)
    ratios = fit.ratio_pairs(rows, counts)
    params = fit.fit_params(data, ratios)
    shipped = latency_model.shipped_params()
    for c in PRICED:
        assert params.price[c] == pytest.approx(shipped.price[c], rel=1e-3)
    for factor in ("in_order_factor", "builtin_factor", "memory_efficiency", "delegate_factor"):
        assert getattr(params, factor) == pytest.approx(getattr(shipped, factor), rel=1e-3)
    assert params.contention == pytest.approx(shipped.contention, abs=1e-3)
    assert shipped.intervals["*|*|*"]["rows"] == len(data)
    # rows nobody can cite are neither fitted nor scored; the Pixel 6 pairs are fitted as ratios only
    uncited = [r for r in rows if r["uncited"]]
    assert len(uncited) == 7 and not {r["line"] for r in uncited} & {r["line"] for r, _ in data}
    assert [(f["profile"], f["model"]) for f, _, _, _ in ratios] == [
        ("pixel6", "efficientnet_lite0"), ("pixel6", "efficientnet_lite2"),
        ("pixel6", "efficientdet_lite0"), ("pixel6", "efficientdet_lite2")]
    assert not any(r["ratio_only"] for r, _ in data)


@pytest.mark.slow
def test_efficientdet_lite_matches_its_published_definition():
    """The detectors the Raspberry Pi 4/5 and Pixel 6 rows measured, built from their definition: one output
    per anchor (9 per cell of P3-P7), and the exact parameter counts of automl's own code (as
    benchmarks/efficientdet_automl_check.py builds it from the tflite-model-maker 0.4.3 wheel)."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import efficientdet_lite

    for name, side, cells, params in (("efficientdet_lite0", 320, (40, 20, 10, 5, 3), 3_290_606),
                                      ("efficientdet_lite2", 448, (56, 28, 14, 7, 4), 5_324_894)):
        assert efficientdet_lite.level_sides(side) == list(cells)
        anchors = efficientdet_lite.anchors(side)
        assert anchors.shape == (9 * sum(n * n for n in cells), 4)
        model = efficientdet_lite.build(name)
        assert [tuple(o.shape) for o in model.outputs] == [(None, len(anchors), 4), (None, len(anchors), 90)]
        assert model.count_params() == params


# --- real emulation ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fmnist_images() -> np.ndarray:
    """The first 32 real Fashion-MNIST test images, float32 in [0, 1], (32, 28, 28, 1)."""
    from edgequant.data.idx import iter_idx

    path = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
    if not path.is_file():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    images = []
    for img in iter_idx(path):
        images.append(img)
        if len(images) == 32:
            break
    return np.stack(images)[..., None].astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def tiny_cnn(tmp_path_factory, fmnist_images) -> dict[str, Path]:
    """A small Keras CNN (28x28x1 -> 10) as float32 and full-integer int8 .tflite files."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        tf.keras.layers.Conv2D(16, 3, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(32, 3, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10),
    ])
    out = tmp_path_factory.mktemp("tiny_cnn")
    paths = {}
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    paths["float32"] = out / "float32.tflite"
    paths["float32"].write_bytes(converter.convert())
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in fmnist_images[:16])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    paths["int8"] = out / "int8.tflite"
    paths["int8"].write_bytes(converter.convert())
    return paths


@pytest.fixture(scope="module")
def arm_env():
    from edgequant.devices.arm.install import ensure_arm_environment

    return ensure_arm_environment()


@needs_qemu
@pytest.mark.slow
def test_setup_is_idempotent(arm_env):
    from edgequant.devices.arm.install import ensure_arm_environment

    again = ensure_arm_environment()
    assert [s.action for s in again.steps] == ["present"] * 3
    assert (again.root / "usr" / "bin" / again.python).is_file() and again.plugin.is_file()


@needs_qemu
@pytest.mark.slow
def test_runner_counts_int8_below_fp32_on_cortex_a76(arm_env, tiny_cnn, fmnist_images):
    from edgequant.devices.arm.runner import run_on_device

    runs = {v: run_on_device(p, "pixel4", [fmnist_images[0]], env=arm_env) for v, p in tiny_cnn.items()}
    for run in runs.values():
        assert run.qemu_cpu == "cortex-a76" and run.invokes_counted == 1
        assert run.outputs[0][0].shape == (1, 10)
        assert run.instructions_per_invoke > 10_000
    assert runs["int8"].instructions_per_invoke < runs["float32"].instructions_per_invoke
    # the instruction mix covers every counted instruction; int8 runs SDOT, float runs FMLA
    for run in runs.values():
        assert sum(run.instruction_mix[c] for c in INSTRUCTION_CLASSES) == run.instructions_per_invoke
        assert run.instruction_mix["load_bytes"] > 4 * run.instruction_mix["load"] > 0
    assert runs["int8"].instruction_mix["dot"] > 0 and runs["float32"].instruction_mix["dot"] == 0
    assert runs["float32"].instruction_mix["fp_mac"] > runs["int8"].instruction_mix["fp_mac"]
    # kernel attribution: the dot-product int8 kernels that a Cortex-A76 runs
    top = runs["int8"].kernel_shares[0]
    assert top.symbol.startswith("xnn_qs8") and "neondot" in top.symbol, top.symbol
    assert runs["int8"].xnnpack_kernel_share > 0.5


@needs_qemu
@pytest.mark.slow
def test_cortex_a72_runs_the_non_dotprod_kernels(arm_env, tiny_cnn):
    from edgequant.devices.arm.runner import run_on_device

    run = run_on_device(tiny_cnn["int8"], "rpi4", env=arm_env)
    symbols = [k.symbol for k in run.kernel_shares if k.symbol.startswith("xnn_qs8")]
    assert symbols and not any("neondot" in s for s in symbols), symbols
    assert run.instruction_mix["dot"] == 0 and run.instruction_mix["int_mac"] > 0  # SMLAL, no SDOT


@needs_qemu
@pytest.mark.slow
def test_int8_parity_is_bit_exact_on_fashion_mnist(arm_env, tiny_cnn, fmnist_images):
    from edgequant.devices.parity import check_parity

    for device in ("rpi4", "pixel4"):
        result = check_parity(tiny_cnn["int8"], device, list(fmnist_images[:16]))
        assert result.samples == 16
        assert result.exact, result.summary()
        assert result.top1_agreement == 1.0
        assert result.to_dict()["outputs"][0]["mismatched"] == 0


@needs_qemu
@pytest.mark.slow
def test_float_parity_reports_a_small_error(arm_env, tiny_cnn, fmnist_images):
    from edgequant.devices.parity import check_parity

    result = check_parity(tiny_cnn["float32"], "pixel4", list(fmnist_images[:8]))
    assert not result.integer_outputs
    assert result.max_abs_error < 1e-4  # float sums in a different order on ARM: tiny, not zero-guaranteed
    assert result.top1_agreement == 1.0


@needs_qemu
@pytest.mark.slow
def test_estimate_is_deterministic_and_labelled(arm_env, tiny_cnn, tmp_path, monkeypatch):
    from edgequant.devices.arm import runner
    from edgequant.devices.arm.guest import _no_aslr_prefix
    from edgequant.devices.arm.runner import run_on_device
    from edgequant.devices.estimate import estimate_latency

    first = estimate_latency(tiny_cnn["int8"], "rpi4", threads=2)
    second = estimate_latency(tiny_cnn["int8"], "rpi4", threads=2)
    assert first.to_dict() == second.to_dict()
    # counting again from scratch, the way estimates count (with the per-layer marks), from a path of another
    # length, gives the very same instructions (no cache involved), and so does a count cached by another clone
    # of edgequant (CI: 591,991 against 592,023 when the guest still ran the runner script from its clone's
    # path): the guest never sees a host path, and runs without address randomization where setarch may turn
    # it off (elsewhere the heap's placement may move a few instructions per million). Counting without the
    # marks is another guest run: the Python around invoke then differs by a few hundred instructions.
    other = tmp_path / ("long-directory-name-" * 3) / "a-longer-file-name.tflite"
    other.parent.mkdir()
    shutil.copy(tiny_cnn["int8"], other)
    a = run_on_device(tiny_cnn["int8"], "rpi4", env=arm_env)
    monkeypatch.setattr(runner, "GUEST_RUNNER", Path(shutil.copy(runner.GUEST_RUNNER, other.parent)))  # another clone
    b = run_on_device(other, "rpi4", env=arm_env)
    for n in (a.instructions_per_invoke, b.instructions_per_invoke):
        if _no_aslr_prefix():
            assert n == first.instructions_per_invoke
        else:
            assert n == pytest.approx(first.instructions_per_invoke, rel=1e-5)
    d = first.to_dict()
    assert d["kind"] == "estimate" and d["label"].startswith("estimate for LiteRT + XNNPACK (")
    assert d["kernels"] == "xnnpack" and d["precision"] == "int8"
    lo, hi = d["interval_ms"]
    assert lo < d["latency_ms"] < hi
    assert d["latency_ms_by_threads"]["2"] == d["latency_ms"] < d["latency_ms_by_threads"]["1"]
    assert d["memory"]["fits"] is True
    # the builtin kernels are counted apart (other instructions) and say which runtime they are for
    builtin = estimate_latency(tiny_cnn["int8"], "rpi4", threads=2, kernels="builtin")
    assert builtin.instructions_per_invoke != first.instructions_per_invoke
    assert "builtin kernels" in builtin.label and builtin.to_dict() == estimate_latency(
        tiny_cnn["int8"], "rpi4", threads=2, kernels="builtin").to_dict()
    with pytest.raises(InputError, match="kernels"):
        estimate_latency(tiny_cnn["int8"], "rpi4", kernels="reference")


@needs_qemu
@pytest.mark.slow
def test_cli_estimate_names_its_runtime_and_interval(arm_env, tiny_cnn, capsys):
    import json

    from edgequant.cli import main

    assert main(["devices", "estimate", str(tiny_cnn["float32"]), "-d", "pixel4", "--kernels", "builtin",
                 "-t", "4", "--json"]) == 0
    (est,) = json.loads(capsys.readouterr().out)
    assert est["kernels"] == "builtin" and est["runtime"].startswith("LiteRT builtin")
    assert est["interval_ms"][0] < est["latency_ms"] < est["interval_ms"][1]
    assert set(est["latency_ms_by_threads"]) == {str(n) for n in range(1, 9)}  # 4 A76 + 4 A55
    assert main(["devices", "estimate", str(tiny_cnn["float32"]), "-d", "pixel4"]) == 0
    text = capsys.readouterr().out
    assert "estimate for LiteRT + XNNPACK" in text and "ms (" in text


@needs_qemu
@pytest.mark.slow
def test_compare_shows_int8_speedup_on_a_dotprod_core(arm_env, tiny_cnn):
    from edgequant.devices.compare import compare_on_devices

    result = compare_on_devices(tiny_cnn, ["pixel4", "host"])
    assert {r.device for r in result.rows} == {"pixel4"}  # the host is measured, not estimated
    assert result.speedup("pixel4", "int8") > 1.0


def test_cli_lists_profiles():
    from edgequant.cli import main

    assert main(["devices", "list", "--json"]) == 0
    assert main(["devices", "show", "rpi4"]) == 0
    assert main(["devices", "show", "nope"]) == 2


@needs_qemu
@pytest.mark.slow
def test_project_fashion_mnist_int8_is_bit_exact_on_arm(arm_env, fmnist_int8_tflite, fmnist_test_set):
    """The shipped example's int8 artifact, on real test images, computes the same bytes on A72 and A76 kernels."""
    from edgequant.devices.parity import check_parity

    x, _ = fmnist_test_set
    for device in ("rpi4", "pixel4"):
        result = check_parity(fmnist_int8_tflite, device, list(x[:32]))
        assert result.samples == 32 and result.exact, result.summary()


@pytest.fixture(scope="module")
def mobilenet_v2_int8(tmp_path_factory):
    """keras.applications MobileNetV2 1.0 224 (weights=None), int8, calibrated on the shipped face photos."""
    import keras

    import edgequant as eq
    from edgequant.recipe.schema import DataSpec

    faces = DataSpec.model_validate({
        "source": {"type": "images", "path": str(Path(__file__).resolve().parents[1] / "calibration_sets" / "lfw_faces")},
        "preprocess": {"color": "rgb", "resize": [224, 224], "scale": 1 / 127.5, "mean": 1.0},
    })
    keras.utils.set_random_seed(0)
    data = eq.quantize(keras.applications.MobileNetV2(weights=None), "int8",
                       calibration=faces.model_copy(update={"samples": 16}))
    path = tmp_path_factory.mktemp("mnv2") / "mobilenet_v2_int8.tflite"
    path.write_bytes(data)
    from edgequant.data.stream import iter_samples

    return path, [s.x for s in iter_samples(faces.model_copy(update={"samples": 4}))]


@needs_qemu
@pytest.mark.slow
def test_mobilenet_v2_int8_is_bit_exact_on_cortex_a76(arm_env, mobilenet_v2_int8):
    from edgequant.devices.parity import check_parity

    path, photos = mobilenet_v2_int8
    result = check_parity(path, "pixel4", photos)
    assert result.samples == 4 and result.exact, result.summary()


def test_recipe_devices_pick_their_runtime(tmp_path):
    from edgequant.recipe.loader import load_recipe

    recipe = tmp_path / "r.yaml"
    (tmp_path / "m.keras").write_bytes(b"")  # the recipe checks the path exists; nothing reads it here
    recipe.write_text(
        "model: {path: m.keras}\n"
        "devices: [rpi4, {name: pixel4, kernels: builtin}]\n"
        "variants: [{name: float32, mode: float32, gates: {max_latency_ms: {pixel4: 5}}}]\n"
    )
    r = load_recipe(recipe)
    assert r.device_names == ["rpi4", "pixel4"]
    assert (r.device_kernels("rpi4"), r.device_kernels("pixel4")) == ("xnnpack", "builtin")
    recipe.write_text(recipe.read_text().replace("kernels: builtin", "kernels: ruy"))
    with pytest.raises(InputError, match="kernels"):
        load_recipe(recipe)
