"""`edgequant build --ray`: a real two-node Ray cluster on this machine (`ray start --head` and a second
node with `ray start --address`), stopped afterwards; tiny Fashion-MNIST recipes."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.test_parallel import HOME_CACHE, REPO, comparable_manifest, comparable_report, new_cache, write_recipe

pytest.importorskip("ray")
RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_under(folder: str) -> list[int]:
    """The processes whose command line names `folder`: the ones this cluster started."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if folder.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head and second node, each with one CPU; the workers count in a cold cache of their own."""
    if not (HOME_CACHE / "arm64" / "state.json").is_file():
        pytest.skip("no ARM emulation environment: run `edgequant devices setup`")
    workers_cache = new_cache(tmp_path_factory.mktemp("ray") / "workers-cache")
    temp = tempfile.mkdtemp(prefix="eqray", dir="/tmp")  # short: Ray's socket paths live under it
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(REPO), EDGEQUANT_CACHE_DIR=str(workers_cache), RAY_USAGE_STATS_ENABLED="0")
    started = time.monotonic()
    try:
        subprocess.run([str(RAY), "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                        f"--temp-dir={temp}", "--disable-usage-stats"], env=env, check=True, capture_output=True)
        subprocess.run([str(RAY), "start", f"--address={address}", "--num-cpus=1"], env=env, check=True,
                       capture_output=True)
        print(f"two-node Ray cluster up in {time.monotonic() - started:.1f} s")
        yield address, workers_cache
    finally:
        for signum in (signal.SIGTERM, signal.SIGKILL):
            for pid in _processes_under(temp):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
            time.sleep(2)
        assert not _processes_under(temp), "Ray processes outlived the test"
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_three_recipes_over_ray_give_the_serial_builds_files_and_figures(cluster, tmp_path):
    address, workers_cache = cluster
    recipes = []
    for name in ("one", "two", "three"):
        (tmp_path / name).mkdir()
        recipes.append(write_recipe(tmp_path / name, name))
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    env["EDGEQUANT_CACHE_DIR"] = str(new_cache(tmp_path / "serial-cache"))
    serial = subprocess.run([sys.executable, "-m", "edgequant", "build", *map(str, recipes), "--jobs", "1"],
                            capture_output=True, text=True, env=env)
    assert serial.returncode == 0, serial.stderr
    serial_dirs = {}
    for recipe in recipes:
        serial_dirs[recipe] = recipe.parent / "serial"
        (recipe.parent / "build" / recipe.stem).rename(serial_dirs[recipe])

    env["EDGEQUANT_CACHE_DIR"] = str(new_cache(tmp_path / "driver-cache"))  # the driver emulates nothing itself
    over_ray = subprocess.run([sys.executable, "-m", "edgequant", "build", *map(str, recipes), "--ray", address],
                              capture_output=True, text=True, env=env)
    assert over_ray.returncode == 0, over_ray.stderr
    assert len(list(workers_cache.glob("counts/*.json"))) == 2 * 3  # the workers counted 3 models on 2 devices
    assert not list((tmp_path / "driver-cache").glob("counts/*.json"))
    for recipe in recipes:
        built = recipe.parent / "build" / recipe.stem
        for file in ("float32.tflite", "dynamic.tflite", "int8.tflite"):
            assert (built / file).read_bytes() == (serial_dirs[recipe] / file).read_bytes()
        assert_same_figures(comparable_report(built), comparable_report(serial_dirs[recipe]))
        assert comparable_manifest(built) == comparable_manifest(serial_dirs[recipe])


def assert_same_figures(over_ray: dict, serial: dict) -> None:
    """The same figures, down to the instruction counts, though these workers' ARM environment lives in another
    folder: the emulated process sees no host path. (Without `setarch -R` the heap's placement may move a few
    instructions per million.)"""
    from edgequant.devices.arm.guest import _no_aslr_prefix

    for diff in _differences(over_ray, serial):
        where, a, b = diff
        assert not _no_aslr_prefix() and (".details." in where or ".layers[" in where), diff
        if isinstance(a, (int, float)):
            assert math.isclose(a, b, rel_tol=1e-4, abs_tol=100), diff


def _differences(a, b, where: str = "report") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [d for k in a for d in _differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [(where, a, b)]


@pytest.mark.slow
def test_a_worker_without_the_arm_environment_fails_in_one_line(cluster, tmp_path, capsys):
    import ray

    from edgequant.cli import main

    address, _ = cluster
    recipe = write_recipe(tmp_path, "no_arm")
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    ray.init(address=address, runtime_env={"env_vars": {"EDGEQUANT_CACHE_DIR": str(empty)}},
             log_to_driver=False, logging_level="ERROR")
    try:
        code = main(["build", str(recipe), "--ray", address, "--no-bench"])
    finally:
        ray.shutdown()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err[-1].startswith("edgequant: error: ") and "no ARM environment in " + str(empty) in err[-1]
    assert "run `edgequant devices setup` on every node" in err[-1]
    assert not list(empty.iterdir())  # the worker did not start building an environment
