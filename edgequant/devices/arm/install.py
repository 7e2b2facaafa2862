"""Set up (once) and find the emulated arm64 environment edgequant runs models in.

Everything lives under the cache directory (`$EDGEQUANT_CACHE_DIR`, else
`$XDG_CACHE_HOME/edgequant`, else `~/.cache/edgequant`) in `arm64/`:

    root/                   Debian bookworm arm64 (debootstrap first stage + python3)
    root/opt/edgequant/     aarch64 wheels of ai-edge-litert, numpy and their needs
    plugin/libinsncount-<hash>.so  the instruction-counting qemu plugin (insncount.c, built with gcc),
                            named by its source's hash so checkouts with different sources share the cache
    views/<key>/            the root seen by one device profile: symlinks into root/,
                            plus its own proc/cpuinfo and sys/devices/system/cpu
    state.json              what was built, with versions

Each step is skipped when its result is present and current, so `ensure_arm_environment()`
is cheap after the first call and rebuilds only what is missing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from edgequant.errors import BuildError, ToolMissingError
from edgequant.process.cache import cache_dir

DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PLUGIN_SOURCE = Path(__file__).with_name("insncount.c")
GUEST_RUNNER = Path(__file__).with_name("guest_runner.py")
APT_PACKAGES = ("qemu-user", "debootstrap", "gcc", "binutils")
_ROOT_LAYOUT_VERSION = 1  # bump when the root's layout changes, to force a rebuild



@dataclass(frozen=True)
class SetupStep:
    name: str
    action: str  # "built", "present"
    seconds: float
    detail: str = ""


@dataclass
class ArmEnvironment:
    """A ready emulated arm64 environment."""

    home: Path
    qemu: Path
    python: str  # e.g. "python3.11"
    litert_version: str
    numpy_version: str
    steps: list[SetupStep] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.home / "root"

    @property
    def site_packages(self) -> Path:
        return self.root / "opt" / "edgequant" / "site-packages"

    @property
    def plugin(self) -> Path:
        return plugin_path(self.home)

    def view(self, cpuinfo: str, processors: int) -> Path:
        """The root as a profile sees it: shared files, its own /proc/cpuinfo and CPU count.

        qemu's -L resolves a guest path to ROOT/path when that exists, so a view
        is a directory of symlinks to the root's top-level entries, with real
        proc/ and sys/ directories holding only the faked files.
        """
        key = hashlib.sha256(f"{cpuinfo}\n{processors}".encode()).hexdigest()[:16]
        view = self.home / "views" / key
        if (view / ".complete").is_file():
            return view
        tmp = Path(tempfile.mkdtemp(dir=self.home / "views", prefix=f".{key}."))
        for entry in self.root.iterdir():
            if entry.name not in ("proc", "sys"):
                (tmp / entry.name).symlink_to(entry)
        (tmp / "proc").mkdir()
        (tmp / "proc" / "cpuinfo").write_text(cpuinfo)
        cpu = tmp / "sys" / "devices" / "system" / "cpu"
        cpu.mkdir(parents=True)
        span = "0" if processors == 1 else f"0-{processors - 1}"
        for name in ("possible", "present", "online"):
            (cpu / name).write_text(span + "\n")
        (tmp / ".complete").write_text("")
        try:
            os.replace(tmp, view)
        except OSError:  # another process made the same view first
            shutil.rmtree(tmp, ignore_errors=True)
        return view

    def to_dict(self) -> dict:
        return {
            "home": str(self.home), "qemu": str(self.qemu), "python": self.python,
            "litert_version": self.litert_version, "numpy_version": self.numpy_version,
            "steps": [asdict(s) for s in self.steps],
        }


def _which(tool: str, package: str) -> Path:
    found = shutil.which(tool)
    if not found:
        raise ToolMissingError(
            f"'{tool}' not found: install it with `apt-get install {package}` "
            f"(edgequant's ARM emulation needs: {' '.join(APT_PACKAGES)})"
        )
    return Path(found)


def _run(cmd: list[str], what: str, timeout: float = 1200, env: dict | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: timed out after {timeout:.0f} s ({cmd[0]})") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BuildError(f"{what} failed (exit {proc.returncode}): {tail[0]}")
    return proc.stdout


def _host_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@contextmanager
def _locked(home: Path):
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _timed(steps: list[SetupStep], name: str, present: bool, build: Callable[[], str], progress) -> None:
    if present:
        steps.append(SetupStep(name, "present", 0.0))
        return
    if progress:
        progress(f"{name}: building…")
    start = time.monotonic()
    detail = build() or ""
    steps.append(SetupStep(name, "built", round(time.monotonic() - start, 1), detail))


def ensure_arm_environment(*, force: bool = False, progress: Callable[[str], None] | None = None) -> ArmEnvironment:
    """The emulated arm64 environment, built on first use (about 1-2 minutes, network needed)."""
    qemu = _which("qemu-aarch64", "qemu-user")
    home = cache_dir() / "arm64"
    with _locked(home):
        state_file = home / "state.json"
        state = json.loads(state_file.read_text()) if state_file.is_file() and not force else {}
        steps: list[SetupStep] = []
        root = home / "root"

        root_ok = state.get("root_layout") == _ROOT_LAYOUT_VERSION and any(root.glob("usr/bin/python3.*"))
        _timed(steps, "arm64 root (debootstrap bookworm + python3)", root_ok,
               lambda: _build_root(home, root), progress)
        python = _guest_python(root)

        litert = _host_version("ai-edge-litert")
        numpy = _host_version("numpy")
        if litert is None:
            raise ToolMissingError("ai-edge-litert is not installed on the host: `pip install ai-edge-litert`")
        wanted = {"litert": litert, "numpy": numpy, "python": python}
        site = root / "opt" / "edgequant" / "site-packages"
        wheels_ok = root_ok and state.get("wheels") == wanted and (site / "ai_edge_litert").is_dir()
        _timed(steps, f"aarch64 wheels (ai-edge-litert {litert}, numpy {numpy})", wheels_ok,
               lambda: _install_wheels(home, site, python, litert, numpy), progress)

        plugin = plugin_path(home)
        _timed(steps, f"qemu plugin {plugin.name} (gcc)", plugin.is_file(), lambda: _build_plugin(plugin), progress)

        if not (root_ok and wheels_ok):  # a fresh root gets fresh views
            shutil.rmtree(home / "views", ignore_errors=True)
        (home / "views").mkdir(exist_ok=True)

        env = ArmEnvironment(home, qemu, python, litert, numpy or "?", steps)
        new_state = {"root_layout": _ROOT_LAYOUT_VERSION, "wheels": wanted}
        if {k: state.get(k) for k in new_state} != new_state:
            _timed(steps, "smoke test (LiteRT imports under qemu)", False, lambda: _smoke_test(env), progress)
            _write_json(state_file, new_state)
        return env


def plugin_path(home: Path) -> Path:
    source_hash = hashlib.sha256(PLUGIN_SOURCE.read_bytes()).hexdigest()[:12]
    return home / "plugin" / f"libinsncount-{source_hash}.so"


def _guest_python(root: Path) -> str:
    found = sorted(p.name for p in root.glob("usr/bin/python3.*") if p.name[len("python3."):].isdigit())
    if not found:
        raise BuildError(f"{root}: no usr/bin/python3.X in the arm64 root")
    return found[-1]


def _build_root(home: Path, root: Path) -> str:
    debootstrap = _which("debootstrap", "debootstrap")
    for tool, pkg in (("dpkg-deb", "dpkg"), ("tar", "tar")):
        _which(tool, pkg)
    if os.geteuid() != 0:
        raise ToolMissingError("debootstrap must run as root to build the arm64 root: run `edgequant devices setup` as root once")
    mirror = os.environ.get("EDGEQUANT_DEBIAN_MIRROR", DEFAULT_MIRROR)
    tmp = home / "root.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    _run([str(debootstrap), "--arch=arm64", "--foreign", "--variant=minbase", "--include=python3",
          DEBIAN_SUITE, str(tmp), mirror], "debootstrap")
    # The first stage unpacks only the essential packages; python3 and its
    # libraries are downloaded but left in the archive cache. The second stage
    # would configure them inside a chroot, which needs no more than unpacking
    # here: nothing runs maintainer scripts in edgequant's use.
    debs = sorted((tmp / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    for deb in debs:
        data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "--keep-directory-symlink", "-C", str(tmp), "-f", "-"], input=data,
                       capture_output=True, check=True)
    for deb in debs:
        deb.unlink()  # 100 MB of .debs nobody needs once unpacked
    # The first stage links proc to the host's /proc; views hold their own.
    for name in ("proc", "sys"):
        p = tmp / name
        if p.is_symlink() or p.is_file():
            p.unlink()
        p.mkdir(exist_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return f"{len(debs)} packages, {_guest_python(root)}"


def _install_wheels(home: Path, site: Path, python: str, litert: str, numpy: str | None) -> str:
    version = python.removeprefix("python")
    wheels = home / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    reqs = [f"ai-edge-litert=={litert}", f"numpy=={numpy}" if numpy else "numpy"]
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--platform", "manylinux_2_27_aarch64",
           "--python-version", version, "--implementation", "cp", "--abi", f"cp{version.replace('.', '')}",
           "--dest", str(wheels), "--quiet", *reqs]
    try:
        _run(cmd, "pip download of the aarch64 wheels", timeout=900)
    except BuildError:
        if not numpy:
            raise
        # the host's numpy may have no aarch64 wheel for the guest's python: take the newest that has one
        _run(cmd[:-1] + ["numpy"], "pip download of the aarch64 wheels", timeout=900)
    tmp = site.with_name("site-packages.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = []
    for whl in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(whl) as z:
            z.extractall(tmp)
        names.append(whl.name.split("-")[0] + " " + whl.name.split("-")[1])
    shutil.rmtree(site, ignore_errors=True)
    os.replace(tmp, site)
    shutil.rmtree(wheels, ignore_errors=True)
    return ", ".join(names)


def _build_plugin(plugin: Path) -> str:
    gcc = _which("gcc", "gcc")
    plugin.parent.mkdir(parents=True, exist_ok=True)
    tmp = plugin.with_name(plugin.name + ".tmp")
    _run([str(gcc), "-shared", "-fPIC", "-O2", "-Wall", "-o", str(tmp), str(PLUGIN_SOURCE), "-lpthread"],
         "building the qemu plugin")
    os.replace(tmp, plugin)
    return str(plugin)


def _smoke_test(env: ArmEnvironment) -> str:
    from edgequant.devices.arm.guest import guest_command

    view = env.view("processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\n", 1)
    with tempfile.TemporaryDirectory() as tmp:
        counts = Path(tmp) / "counts.txt"
        cmd, run_env = guest_command(env, view, "cortex-a72", ["-c", "import numpy, ai_edge_litert.interpreter"],
                                     counts_file=counts)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=run_env)
        except subprocess.TimeoutExpired:
            raise BuildError("smoke test: python under qemu-aarch64 did not finish in 300 s") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            hint = " (is qemu-aarch64 the dynamic build from Debian's qemu-user? qemu-user-static cannot load plugins)"
            raise BuildError(f"smoke test under qemu-aarch64 failed: {last}{hint if 'plugin' in last.lower() else ''}")
        total = counts.read_text().split()[1] if counts.is_file() else "?"
    return f"{total} guest instructions to import numpy and LiteRT"


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)
