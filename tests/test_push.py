"""`edgequant push` without a phone: the real adb with no device, and no adb at all, both exit 2 in one line.

The adb server these tests talk to runs on a private port (ANDROID_ADB_SERVER_PORT), so a server
someone else started is never touched; the fixture stops only the one it started.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgequant.android.adb import Adb
from edgequant.cli import main

ADB = shutil.which("adb")


@pytest.fixture
def samples_npz(tmp_path):
    from itertools import islice

    from edgequant.data.idx import iter_idx

    x = np.stack(list(islice(iter_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"), 8)))
    np.savez(tmp_path / "samples.npz", x=x)
    return tmp_path / "samples.npz"


@pytest.fixture
def private_adb_server(monkeypatch):
    """An adb server of this test's own, on a free port; killed at the end if this test started it."""
    if ADB is None:
        if os.environ.get("CI"):
            pytest.fail("adb is not installed (apt-get install adb)")
        pytest.skip("adb is not installed (apt-get install adb)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", port)
    yield port
    try:
        subprocess.run([ADB, "-P", port, "kill-server"], capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:  # a server still starting can ignore kill-server: end it by its port
        subprocess.run(["pkill", "-f", f"tcp:{port} fork-server"], capture_output=True, timeout=10)


def test_no_device_attached_exits_2_with_one_line(fmnist_int8_tflite, samples_npz, private_adb_server, capsys):
    code = main(["push", str(fmnist_int8_tflite), "--inputs", str(samples_npz)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "edgequant: error: no Android device connected (`adb devices` lists none): "
        "connect one with USB debugging on, or start an emulator\n"
    )


def test_an_unknown_serial_is_named(fmnist_int8_tflite, private_adb_server, capsys):
    code = main(["push", str(fmnist_int8_tflite), "--serial", "emulator-5554", "--run"])
    assert code == 2
    assert capsys.readouterr().err == "edgequant: error: device 'emulator-5554' is not connected (adb devices lists: none)\n"


def test_the_adb_server_answers_on_the_private_port(private_adb_server):
    """The no-device result above came from a real adb server, not from a missing one."""
    assert Adb.devices(ADB) == []
    listed = subprocess.run([ADB, "-P", private_adb_server, "devices"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0 and listed.stdout.startswith("List of devices attached")


def test_adb_missing_from_path_exits_2(fmnist_int8_tflite, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code = main(["push", str(fmnist_int8_tflite)])
    assert code == 2
    assert capsys.readouterr().err == (
        "edgequant: error: adb not found on PATH: install Android platform-tools (Debian/Ubuntu: apt-get install adb)\n"
    )


def test_bad_options_and_files_fail_before_adb(fmnist_int8_tflite, tmp_path, capsys):
    assert main(["push", str(tmp_path / "nope.tflite")]) == 2
    assert capsys.readouterr().err == f"edgequant: error: {tmp_path / 'nope.tflite'}: no such .tflite file\n"
    assert main(["push", str(fmnist_int8_tflite), "--run", "--threads", "0"]) == 2
    assert capsys.readouterr().err == "edgequant: error: --threads: must be at least 1, got 0\n"
    assert main(["push", str(fmnist_int8_tflite), "--mean", "0.5,x"]) == 2
    assert "--mean: expected comma-separated numbers, got '0.5,x'" in capsys.readouterr().err
    assert main(["push", str(fmnist_int8_tflite), "--run", "--delegate", "tpu"]) == 2
    assert capsys.readouterr().err == "edgequant: error: --delegate: 'tpu' is not one of cpu, gpu, nnapi\n"


def test_nothing_but_plain_tokens_reaches_the_device_shell():
    adb = Adb("/nonexistent/adb", "serial")
    for arg in ("a;reboot", "$(id)", "a b", "x`y`", "'q'"):
        with pytest.raises(ValueError, match="refusing to pass"):
            adb.shell("ls", arg)


# --- the whole push with a stand-in phone ---------------------------------------------------------
# No phone is attached here, so the happy path runs against a stand-in `adb`: it keeps the device's
# files in a folder, answers the shell commands push uses, and answers `am start --ez autorun true`
# as the app does (same result.json format), computing predictions with the host LiteRT interpreter.
# It exercises push's own logic (argument lists, SHA-256 checks, polling, run ids, result handling).

FAKE_ADB = r'''#!{python}
import hashlib, json, os, shlex, sys
from pathlib import Path

ROOT = Path(os.environ["FAKE_DEVICE_ROOT"])
LOG = ROOT.parent / "adb-calls.jsonl"
args = sys.argv[1:]
with open(LOG, "a") as f:
    f.write(json.dumps(args) + "\n")
if args == ["devices"]:
    print("List of devices attached\nFAKE01\tdevice\n")
    sys.exit(0)
assert args[:2] == ["-s", "FAKE01"], args
cmd, rest = args[2], args[3:]
local = lambda remote: ROOT / remote.lstrip("/")
if cmd == "push":
    src, dst = Path(rest[0]), local(rest[1])
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    if os.environ.get("FAKE_CORRUPT") and dst.name == "model.tflite":
        data = data[:-1] + bytes([data[-1] ^ 1])
    dst.write_bytes(data)
    print(f"{src}: 1 file pushed.")
    sys.exit(0)
if cmd == "pull":
    Path(rest[1]).write_bytes(local(rest[0]).read_bytes())
    sys.exit(0)
assert cmd == "shell", args
words = shlex.split(" ".join(rest))  # what the device's shell would see
prog = words[0]
if prog == "getprop":
    print({"ro.product.model": "Stand-in", "ro.build.version.release": "14", "ro.product.cpu.abi": "arm64-v8a"}[words[1]])
elif prog == "pm":
    print("package:/data/app/dev.edgequant.demo/base.apk")
elif prog == "ls":
    sys.exit(0 if local(words[1]).exists() else 1)
elif prog == "rm":
    local(words[-1]).unlink(missing_ok=True)
elif prog == "sha256sum":
    print(hashlib.sha256(local(words[1]).read_bytes()).hexdigest() + "  " + words[1])
elif prog == "am":
    extras = dict(zip(words[1::1], words[2::1]))
    folder = local("/sdcard/Android/data/dev.edgequant.demo/files/edgequant")
    folder.mkdir(parents=True, exist_ok=True)
    if "autorun" not in words:
        sys.exit(0)
    from edgequant.android import app_logic
    from edgequant.android.app_manifest import AppPreprocess
    from edgequant.android.samples import read_samples
    from edgequant.model.runtime import load_interpreter
    m = json.loads((folder / "app_manifest.json").read_text())
    pre = AppPreprocess.from_manifest(m["preprocess"])
    raw = read_samples(m["samples"], folder)
    interp = load_interpreter(folder / "model.tflite")
    i0, o0 = interp.get_input_details()[0], interp.get_output_details()[0]
    preds = []
    for i, sample in enumerate(raw):
        interp.set_tensor(i0["index"], app_logic.prepare_input(sample, pre, m["inputs"][0]))
        interp.invoke()
        top = app_logic.top_k(app_logic.dequantize(interp.get_tensor(o0["index"]), m["outputs"][0]), 3)
        preds.append({"sample": i, "expected": m["samples"]["labels"][i], "top": [{"index": j, "label": "", "score": s} for j, s in top]})
    result = {"format": "edgequant-app-result", "version": 1, "status": "ok", "error": None,
              "model": {"sha256": hashlib.sha256((folder / "model.tflite").read_bytes()).hexdigest()},
              "config": {"delegate": extras["delegate"], "threads": int(extras["threads"]), "warmup_runs": int(extras["warmup"])},
              "latency": {"runs": int(extras["runs"]), "mean_ms": 1.0, "median_ms": 1.0, "p90_ms": 1.0},
              "predictions": preds, "run_id": extras["run_id"]}
    (folder / "result.json").write_text(json.dumps(result))
else:
    sys.exit(f"stand-in adb: unexpected shell command {words}")
'''


@pytest.fixture
def stand_in_phone(tmp_path, monkeypatch):
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.replace("{python}", sys.executable, 1))
    adb.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DEVICE_ROOT", str(tmp_path / "device"))
    return tmp_path


def test_push_verifies_runs_and_compares_with_the_host(fmnist_int8_tflite, stand_in_phone, tmp_path, capsys):
    from itertools import islice

    from edgequant.data.idx import iter_idx

    d = "/usr/share/datasets/fashion-mnist/"
    x = np.stack(list(islice(iter_idx(d + "t10k-images-idx3-ubyte.gz"), 12)))
    y = np.array(list(islice(iter_idx(d + "t10k-labels-idx1-ubyte.gz"), 12)))
    np.savez(tmp_path / "s.npz", x=x, y=y)
    out = tmp_path / "out" / "result.json"
    code = main(["push", str(fmnist_int8_tflite), "--inputs", str(tmp_path / "s.npz"), "--run", "--threads", "4",
                 "--runs", "7", "--timeout", "60", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    device_dir = "/sdcard/Android/data/dev.edgequant.demo/files/edgequant"
    assert [f["remote_path"] for f in report["files"]] == [f"{device_dir}/{n}" for n in ("model.tflite", "samples.bin", "app_manifest.json")]
    assert report["device"] == {"model": "Stand-in", "android": "14", "abi": "arm64-v8a"}
    assert report["host_comparison"]["samples"] == 12 and report["host_comparison"]["top1_agree"] == 12
    saved = json.loads(out.read_text())
    assert saved["latency"]["runs"] == 7 and saved["config"]["threads"] == 4
    calls = [json.loads(line) for line in (stand_in_phone / "adb-calls.jsonl").read_text().splitlines()]
    first, am = [c for c in calls if c[2:4] == ["shell", "am"]]
    assert first[-2:] == ["init_only", "true"]  # the folder did not exist yet: the app creates it
    assert am[:9] == ["-s", "FAKE01", "shell", "am", "start", "-S", "-n", "dev.edgequant.demo/.MainActivity", "--ez"]
    assert am[am.index("run_id") + 1] == saved["run_id"]
    assert all(isinstance(c, list) and all(isinstance(a, str) for a in c) for c in calls)


def test_a_corrupted_push_is_caught_by_sha256(fmnist_int8_tflite, stand_in_phone, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_CORRUPT", "1")
    assert main(["push", str(fmnist_int8_tflite)]) == 3
    err = capsys.readouterr().err.splitlines()[-1]  # progress lines come first on stderr
    assert err.startswith("edgequant: error: /sdcard/Android/data/dev.edgequant.demo/files/edgequant/model.tflite on FAKE01: sha256 ")
    import hashlib

    local = hashlib.sha256(open(fmnist_int8_tflite, "rb").read()).hexdigest()[:12]
    assert err.endswith(f"differs from the local {local}… after adb push")


def test_a_file_named_like_an_option_reaches_adb_as_a_path(fmnist_int8_tflite, stand_in_phone, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(fmnist_int8_tflite, work / "-x.tflite")
    monkeypatch.chdir(work)
    assert main(["push", "./-x.tflite"]) == 0, capsys.readouterr().err  # Path("./-x.tflite") prints as "-x.tflite"
    calls = [json.loads(line) for line in (stand_in_phone / "adb-calls.jsonl").read_text().splitlines()]
    pushed = [c[3] for c in calls if c[2:3] == ["push"]]
    assert pushed[0] == str(work / "-x.tflite")
    assert all(Path(p).is_absolute() for p in pushed)
