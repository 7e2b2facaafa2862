"""Fault injection: real builds, interrupted and killed at many points, never leave a mixed output directory.

Each case runs `python -m edgequant build` as its own process, on real Fashion-MNIST data (float32 and
int8 from a few calibration samples; no evaluation, benchmark or devices, so a build takes seconds),
into an output directory that already holds an earlier build. Faults come three ways:
- EDGEQUANT_FAULT_POINT (edgequant/process/fault_points.py) stops the build at a named point: SIGINT, a SIGINT
  swallowed as TensorFlow's cleanup code swallows it, SIGTERM, SIGKILL, an OSError;
- real signals from outside, at delays spread over a whole build;
- the environment: a full disk (tmpfs), two builds into the same directory.
After every case the directory holds one consistent build (every SHA-256 in manifest.json matches its
file, report and manifest name the same recipe), byte-identical to the earlier one unless the new
build completed (exit 0). Run with -s to see each case's outcome.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edgequant.recipe.loader import load_recipe, recipe_hash
from tests.conftest import FMNIST_MODEL, REPO

pytestmark = pytest.mark.slow

OLD_SAMPLES, NEW_SAMPLES, THIRD_SAMPLES = 8, 12, 16  # different calibration: different int8 bytes and recipe hash
PARALLEL = 2  # cases run two at a time


def write_recipe(folder: Path, samples: int, devices: str = "") -> Path:
    path = folder / f"fmnist_{samples}{'_' + devices if devices else ''}.yaml"
    path.write_text(f"""\
model: {{path: {FMNIST_MODEL}}}
calibration:
  source: {{type: fashion-mnist, split: train}}
  preprocess: {{scale: 0.00392156862745098}}
  samples: {samples}
benchmark: {{enabled: false}}
devices: [{devices}]
variants:
  - {{name: float32, mode: float32}}
  - {{name: int8, mode: int8, analyse_layers: false}}
""")
    return path


def start(recipe: Path, out: Path, tmp: Path, *args: str, fault: str | None = None) -> subprocess.Popen:
    """`edgequant build` in its own process, with its own TMPDIR (to see what it leaves there)."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("EDGEQUANT_FAULT_POINT", None)
    env.pop("EDGEQUANT_DEBUG", None)
    if fault:
        env["EDGEQUANT_FAULT_POINT"] = fault
    return subprocess.Popen(
        [sys.executable, "-m", "edgequant", "build", str(recipe), "-o", str(out), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=900)
    return proc.returncode, err


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def visible(out: Path) -> dict[str, str]:
    """What a reader of the output directory gets: each file's bytes, through the links."""
    return {p.name: sha256(p.read_bytes()) for p in sorted(out.iterdir()) if not p.name.startswith(".") and p.is_file()}


def consistent(out: Path) -> str:
    """The recipe hash of the one build `out` shows, after checking every file the manifest lists."""
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        data = (out / entry["file"]).read_bytes()
        assert sha256(data) == entry["sha256"] and len(data) == entry["size_bytes"], f"{out}: {entry['file']} mismatches"
        assert entry["provenance"]["recipe"]["sha256"] == manifest["recipe"]["sha256"]
    assert {e["name"] for e in manifest["artifacts"]} == {"float32", "int8"}
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"]["sha256"] == manifest["recipe"]["sha256"], f"{out}: report and manifest of different builds"
    return manifest["recipe"]["sha256"]


def leftovers(out: Path, tmp: Path) -> list[str]:
    """What an interrupted build should have removed: staging, temporary links, old builds, temp folders."""
    state = out / ".edgequant"
    builds = list((state / "builds").iterdir())
    found = [p.name for p in builds if p.name.endswith(".partial")]
    found += [p.name for p in [*out.iterdir(), *state.iterdir()] if p.name.startswith(".edgequant-tmp-")]
    found += [p.name for p in tmp.glob("edgequant-*")]
    if len(builds) > 2:
        found.append(f"{len(builds)} build folders")
    return found


class Old:
    """The earlier build every case starts from, and the hashes telling builds apart."""

    def __init__(self, root: Path):
        self.root = root
        self.recipes = {n: write_recipe(root, n) for n in (OLD_SAMPLES, NEW_SAMPLES, THIRD_SAMPLES)}
        self.hashes = {n: recipe_hash(load_recipe(p)) for n, p in self.recipes.items()}
        self.template = root / "template"
        started = time.monotonic()
        code, err = finish(start(self.recipes[OLD_SAMPLES], self.template, root / "tmp-template"))
        self.seconds = time.monotonic() - started
        assert code == 0, err
        assert consistent(self.template) == self.hashes[OLD_SAMPLES]
        self.view = visible(self.template)

    def copy(self, name: str, into: Path | None = None) -> Path:
        out = (into or self.root / "cases") / name
        shutil.copytree(self.template, out, symlinks=True)
        return out

    def outcome(self, out: Path, code: int, new: int = NEW_SAMPLES) -> str:
        """'old' or 'new' (asserting the directory is one or the other, and that the exit code agrees)."""
        recipe = consistent(out)
        if visible(out) == self.view:
            assert code != 0, "exit 0, but the new build is not in place"
            return "old"
        assert recipe == self.hashes[new], "the directory holds neither the old build nor the new one"
        assert code == 0, f"exit {code}, yet the new build replaced the old one"
        return "new"


@pytest.fixture(scope="module")
def old(tmp_path_factory) -> Old:
    return Old(tmp_path_factory.mktemp("faults"))


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("edgequant: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def report(title: str, rows: list[tuple]) -> None:
    print(f"\n{title}: {len(rows)} cases")
    for row in rows:
        print("  " + "  ".join(str(c) for c in row))


# --- named points ---------------------------------------------------------------------------------

# point:action -> expected exit code. A signal or error before the switch keeps the old build; after
# the switch (`switched`) the build has happened and completes.
NAMED = {
    "exported:swallowed-sigint": 130,
    "converted:swallowed-sigint": 130,
    "staged:swallowed-sigint": 130,
    "linked:swallowed-sigint": 130,
    "converted:sigint": 130,
    "linked:sigint": 130,
    "exported:sigterm": 143,
    "staged:sigterm": 143,
    "switched:sigterm": 0,
    "staged:oserror": 3,
    "linked:oserror": 3,
    "switched:oserror": 0,
}
# Killed in turn in one directory, then a normal build there: what each kill leaves, the next build clears.
KILLS = ("exported", "staged", "linked", "switched")


def _named_case(old: Old, fault: str) -> tuple:
    out, tmp = old.copy(fault.replace(":", "-")), old.root / "tmp" / fault.replace(":", "-")
    code, err = finish(start(old.recipes[NEW_SAMPLES], out, tmp, fault=fault))
    result = old.outcome(out, code)
    assert code == NAMED[fault], f"{fault}: exit {code}, expected {NAMED[fault]}\n{err}"
    assert not leftovers(out, tmp), (fault, leftovers(out, tmp))
    if code:
        one_line_error(err)
    return fault, code, result


def _kill_chain(old: Old) -> list[tuple]:
    out, rows = old.copy("sigkill-chain"), []
    tmp = old.root / "tmp" / "sigkill-chain"  # one TMPDIR for the chain: what a kill leaves there, the next run sweeps
    for point in KILLS:
        code, _ = finish(start(old.recipes[NEW_SAMPLES], out, tmp, fault=f"{point}:sigkill"))
        assert code == -signal.SIGKILL
        result = "new" if point == "switched" else "old"
        if result == "old":
            assert visible(out) == old.view and consistent(out) == old.hashes[OLD_SAMPLES], point
        else:
            assert consistent(out) == old.hashes[NEW_SAMPLES], point
        rows.append((f"{point}:sigkill", code, result, f"left for the next build: {leftovers(out, tmp)}"))
    killed_scratch = sorted(p.name for p in tmp.glob("edgequant-build-*"))
    assert killed_scratch, "a SIGKILLed build cannot remove its own temporary folder"
    code, err = finish(start(old.recipes[THIRD_SAMPLES], out, tmp))
    assert code == 0, err
    assert consistent(out) == old.hashes[THIRD_SAMPLES]
    # everything the killed builds left, in the output directory and in TMPDIR, is gone
    assert not leftovers(out, tmp), (killed_scratch, leftovers(out, tmp))
    rows.append(("normal build after the kills", code, "new", "nothing left over"))
    return rows


def test_faults_at_named_points(old):
    with ThreadPoolExecutor(PARALLEL) as pool:
        chain = pool.submit(_kill_chain, old)
        rows = list(pool.map(lambda fault: _named_case(old, fault), NAMED))
        rows += chain.result()
    report("faults at named points (case, exit, output directory)", rows)


# --- real signals from outside --------------------------------------------------------------------

# Fractions of the earlier build's run time (alone); two builds at a time on a busy machine take longer.
DELAYS = (0.3, 0.6, 0.9, 1.2, 1.6, 2.0)


def _signal_case(old: Old, signum: int, fraction: float) -> tuple:
    name = f"{signal.Signals(signum).name}-{fraction}"
    out, tmp = old.copy(name), old.root / "tmp" / name
    proc = start(old.recipes[NEW_SAMPLES], out, tmp)
    time.sleep(old.seconds * fraction)
    proc.send_signal(signum)
    code, err = finish(proc)
    result = old.outcome(out, code)
    assert code in (0, 128 + signum), f"{name}: exit {code}\n{err}"
    assert not leftovers(out, tmp), (name, leftovers(out, tmp))
    swallowed = err.count("Exception ignored")
    return name, code, result, f"{swallowed} exception(s) swallowed on the way" if swallowed else ""


def test_real_signals_at_delays_over_a_whole_build(old):
    cases = [(signal.SIGINT, f) for f in DELAYS] + [(signal.SIGTERM, f) for f in (0.5, 1.0)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        rows = list(pool.map(lambda case: _signal_case(old, *case), cases))
    report(f"signals at delays (a build took {old.seconds:.1f} s alone)", rows)
    assert any(r[2] == "old" for r in rows)  # some landed before the commit point


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed interrupts are the point
def test_sigint_swallowed_by_tensorflow_cleanup_still_stops_the_build(old, tmp_path):
    """In this process, so that TensorFlow is warm and a build takes seconds: SIGINT at 14 delays over a
    build. Some land in TensorFlow's cleanup (a weakref callback), where Python reports the
    KeyboardInterrupt as "Exception ignored" and carries on; the build must stop all the same."""
    from edgequant.pipeline import build_recipe

    swallowed: list[str] = []
    default_hook = sys.unraisablehook

    def record(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            swallowed.append(getattr(unraisable.object, "__qualname__", repr(unraisable.object)))
        default_hook(unraisable)

    warm = tmp_path / "warm"
    build_recipe(old.recipes[NEW_SAMPLES], output_dir=warm)
    started = time.monotonic()
    build_recipe(old.recipes[NEW_SAMPLES], output_dir=warm)
    seconds = time.monotonic() - started
    rows = []
    sys.unraisablehook = record
    try:
        for i in range(14):
            out = old.copy(f"in-process-{i}", into=tmp_path)
            delay = seconds * (0.05 + 0.07 * i)
            before = len(swallowed)
            timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            code = None
            try:
                build_recipe(old.recipes[NEW_SAMPLES], output_dir=out)
                code = 0
                timer.cancel()
                timer.join()
            except KeyboardInterrupt:
                code = 130 if code is None else code  # one landing after the build returned is not the build's
            rows.append((f"SIGINT at {delay:.2f} s", code, old.outcome(out, code),
                         f"swallowed in {swallowed[before:]}" if len(swallowed) > before else ""))
    finally:
        sys.unraisablehook = default_hook
    report(f"SIGINT in a warm process (a build took {seconds:.1f} s); swallowed and still stopped: "
           f"{sum(1 for r in rows if r[3])}", rows)


# --- the environment --------------------------------------------------------------------------------

def test_full_disk_leaves_the_earlier_build(old, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    size_kib = sum(p.stat().st_size for p in old.template.rglob("*") if p.is_file() and not p.is_symlink()) // 1024
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size_kib * 1.6)}k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}); needs root")
    try:
        out = old.copy("out", into=mount)  # room for the old build, not for a second one beside it
        code, err = finish(start(old.recipes[NEW_SAMPLES], out, tmp_path / "tmp"))
        assert code == 3, err
        line = one_line_error(err)
        assert "No space left on device" in line and "still holds its previous build" in line
        assert old.outcome(out, code) == "old"
        assert not leftovers(out, tmp_path / "tmp")
        report("full disk", [("ENOSPC", code, "old", line)])
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _blocked_on_a_lock(pid: int) -> bool:
    """True when `pid` waits for a file lock (`->` lines of /proc/locks)."""
    return any(line.split()[:2][-1] == "->" and str(pid) in line.split()
               for line in Path("/proc/locks").read_text().splitlines())


def test_concurrent_builds_into_one_directory(old, tmp_path):
    out, release = old.copy("concurrent"), tmp_path / "release"
    first = start(old.recipes[NEW_SAMPLES], out, tmp_path / "t1", fault=f"converted:wait-for={release}")
    deadline = time.monotonic() + 600
    while (out / ".edgequant" / "lock").read_text().strip() != str(first.pid):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    waiting = start(old.recipes[THIRD_SAMPLES], out, tmp_path / "t3", "--wait")
    code, err = finish(start(old.recipes[OLD_SAMPLES], out, tmp_path / "t2"))
    assert code == 2
    assert one_line_error(err) == (f"edgequant: error: {out}: another build (pid {first.pid}) is writing this "
                                   "output directory; wait for it to finish, or pass --wait")
    while not _blocked_on_a_lock(waiting.pid):
        assert waiting.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    assert visible(out) == old.view  # neither has written anything yet
    release.touch()
    first_code, first_err = finish(first)
    assert first_code == 0, first_err
    waiting_code, waiting_err = finish(waiting)
    assert waiting_code == 0, waiting_err
    assert consistent(out) == old.hashes[THIRD_SAMPLES]  # the waiting build ran after the first, whole
    report("two builds into one directory", [
        ("first build", first_code, "committed"), ("second, no --wait", code, "refused at once"),
        ("third, --wait", waiting_code, "waited on the lock, then committed"),
    ])


# --- qemu children ----------------------------------------------------------------------------------

def test_sigterm_or_sigkill_while_qemu_runs_ends_qemu_too(old, tmp_path, monkeypatch):
    from edgequant.process.cache import cache_dir

    if not (cache_dir() / "arm64" / "state.json").is_file():
        pytest.skip("no ARM emulation environment: run `edgequant devices setup`")
    recipe = write_recipe(tmp_path, OLD_SAMPLES, devices="rpi4")
    rows = []
    for signum in (signal.SIGTERM, signal.SIGKILL):
        out, tmp = old.copy(f"qemu-{signum}", into=tmp_path), tmp_path / f"tmp-{signum}"
        cold = tmp_path / f"cache-{signum}"  # emulated results are cached: a cold cache makes qemu run
        cold.mkdir()
        (cold / "arm64").symlink_to(cache_dir() / "arm64")
        monkeypatch.setenv("EDGEQUANT_CACHE_DIR", str(cold))
        proc = start(recipe, out, tmp)
        qemu = _wait_for_qemu(proc)
        proc.send_signal(signum)
        code, err = finish(proc)
        assert old.outcome(out, code) == "old"
        if signum == signal.SIGTERM:
            assert code == 143, err
            assert one_line_error(err) == "edgequant: terminated (SIGTERM)"
            assert not leftovers(out, tmp)
        deadline = time.monotonic() + 10  # after SIGKILL, the kernel ends qemu (setpriv --pdeathsig)
        while any(Path(f"/proc/{pid}").exists() and "qemu" in _cmdline(pid) for pid in qemu):
            assert time.monotonic() < deadline, f"qemu {qemu} outlived the build ({signal.Signals(signum).name})"
            time.sleep(0.1)
        rows.append((signal.Signals(signum).name, code, "old", f"qemu pid(s) {qemu} gone"))
    report("signals with qemu running", rows)


def test_sigterm_stops_any_command_cleanly(fmnist_int8_tflite, tmp_path, monkeypatch):
    """Not only build: `devices estimate` too ends with 143 and one line, its scratch folder removed, its qemu
    gone (before, SIGTERM ended Python on the spot and left the folder for the next run to sweep)."""
    from edgequant.process.cache import cache_dir

    if not (cache_dir() / "arm64" / "state.json").is_file():
        pytest.skip("no ARM emulation environment: run `edgequant devices setup`")
    cold, tmp = tmp_path / "cache", tmp_path / "tmp"  # a cold cache makes qemu run
    cold.mkdir()
    tmp.mkdir()
    (cold / "arm64").symlink_to(cache_dir() / "arm64")
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp), EDGEQUANT_CACHE_DIR=str(cold))
    env.pop("EDGEQUANT_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "edgequant", "devices", "estimate", str(fmnist_int8_tflite),
                             "-d", "rpi4"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    qemu = _wait_for_qemu(proc)
    assert list(tmp.glob("edgequant-arm-*")), "the emulated run works in a scratch folder"
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 143, err
    assert one_line_error(err) == "edgequant: terminated (SIGTERM)"
    assert not list(tmp.glob("edgequant-*"))
    assert not any(Path(f"/proc/{pid}").exists() and "qemu" in _cmdline(pid) for pid in qemu)


def _wait_for_qemu(proc: subprocess.Popen) -> list[int]:
    deadline = time.monotonic() + 600
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "the build ended before qemu ran"
        qemu = [p for p in _children(proc.pid) if "qemu-aarch64" in _cmdline(p)]
        if qemu:
            return qemu
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    """Children of every thread of `pid` (emulated runs start their qemu from worker threads)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return children


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
