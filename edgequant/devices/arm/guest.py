"""The command line that runs the arm64 guest's python3 under qemu-aarch64: reproducible and tied to its parent.

Used by the device runner for every emulated run, and by the ARM environment's set-up for its smoke test.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from edgequant.errors import InputError

if TYPE_CHECKING:  # for the annotation only: install.py imports this module
    from edgequant.devices.arm.install import ArmEnvironment


@lru_cache(maxsize=1)
def _no_aslr_prefix() -> list[str]:
    """`setarch <arch> -R`: no address randomization, so every run counts the same instructions.

    Empty where setarch is missing or a sandbox forbids changing the personality.
    """
    setarch = shutil.which("setarch")
    if not setarch:
        return []
    prefix = [setarch, platform.machine(), "-R"]
    ok = subprocess.run(prefix + ["true"], capture_output=True).returncode == 0
    return prefix if ok else []


@lru_cache(maxsize=1)
def _die_with_parent_prefix() -> list[str]:
    """`setpriv --pdeathsig KILL`: qemu ends with the process that started it, even one killed by SIGKILL.

    (SIGINT and SIGTERM need no help: `subprocess.run` kills its child when the build is interrupted.)
    Empty where util-linux's setpriv is missing.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def guest_command(env: ArmEnvironment, view: Path, qemu_cpu: str, args: list[str], *,
                  counts_file: Path | None, marks_file: Path | None = None) -> tuple[list[str], dict]:
    """The argument list and environment that run the guest's python3 under qemu-aarch64."""
    cmd = _die_with_parent_prefix() + _no_aslr_prefix() + [str(env.qemu), "-cpu", qemu_cpu, "-seed", "1", "-L", str(view)]
    if counts_file is not None:
        plugin_files = [env.plugin, counts_file] + ([marks_file] if marks_file else [])
        if any("," in str(p) for p in plugin_files):
            raise InputError(f"{counts_file}: qemu plugin paths cannot contain ','")
        cmd += ["-plugin", f"{env.plugin},out={counts_file}" + (f",marks={marks_file}" if marks_file else "")]
    # argv[0] and PYTHONPATH as guest paths (qemu's -L finds them in the view): a host path's length would move
    # the guest's heap, and with it a few instructions per invoke, from one cache folder to another
    guest_python = f"/usr/bin/{env.python}"
    cmd += ["-0", guest_python, str(view / "usr" / "bin" / env.python), "-s", *args]
    run_env = {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root", "PYTHONHASHSEED": "0",
        "PYTHONPATH": "/" + str(env.site_packages.relative_to(env.root)), "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    return cmd, run_env
