"""The `adb` command: argument lists only, bounded time, one-line errors.

`adb shell` joins its arguments with spaces and hands them to the device's shell, so every
argument sent through `shell` must be a plain token (checked here); only fixed paths and
validated option values go there, never free text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgequant.errors import InputError, ToolMissingError

_SHELL_TOKEN = re.compile(r"^[A-Za-z0-9_./:=+@%,-]+$")
_STATE_HINTS = {
    "unauthorized": "accept the 'Allow USB debugging?' prompt on the device",
    "offline": "reconnect it, or run `adb reconnect`",
    "no permissions": "this user may not open the USB device (udev rules), see `adb devices -l`",
    "authorizing": "wait for the authorization to finish",
}


@dataclass(frozen=True)
class Device:
    serial: str
    state: str  # "device" when usable


def find_adb() -> str:
    path = shutil.which("adb")
    if path is None:
        raise ToolMissingError(
            "adb not found on PATH: install Android platform-tools (Debian/Ubuntu: apt-get install adb)"
        )
    return path


class Adb:
    """One device, reached through the `adb` executable."""

    def __init__(self, executable: str, serial: str):
        self.executable = executable
        self.serial = serial

    # --- finding the device ----------------------------------------------------------------

    @staticmethod
    def devices(executable: str) -> list[Device]:
        out = _run([executable, "devices"], timeout=60, what="adb devices").stdout
        found = []
        for line in out.splitlines():
            line = line.strip()
            if not line or line.startswith("*") or line.startswith("List of devices"):
                continue  # "* daemon started successfully" and the header
            serial, _, state = line.partition("\t")
            found.append(Device(serial.strip(), state.strip()))
        return found

    @classmethod
    def connect(cls, serial: str | None = None) -> "Adb":
        """The device to use: `serial`, or the only one connected. Raises ToolMissingError when there is none."""
        executable = find_adb()
        devices = cls.devices(executable)
        if serial is not None:
            match = [d for d in devices if d.serial == serial]
            if not match:
                listed = ", ".join(d.serial for d in devices) or "none"
                raise ToolMissingError(f"device {serial!r} is not connected (adb devices lists: {listed})")
            device = match[0]
        else:
            if not devices:
                raise ToolMissingError(
                    "no Android device connected (`adb devices` lists none): connect one with USB debugging on, or start an emulator"
                )
            if len(devices) > 1:
                raise InputError(
                    f"{len(devices)} devices connected ({', '.join(d.serial for d in devices)}): choose one with --serial"
                )
            device = devices[0]
        if device.state != "device":
            hint = _STATE_HINTS.get(device.state, "check `adb devices -l`")
            raise ToolMissingError(f"device {device.serial} is {device.state}: {hint}")
        return cls(executable, device.serial)

    # --- commands --------------------------------------------------------------------------

    def _adb(self, *args: str, timeout: float, what: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run([self.executable, "-s", self.serial, *args], timeout=timeout, what=what, check=check)

    def shell(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        for arg in args:
            if not _SHELL_TOKEN.match(arg):
                raise ValueError(f"refusing to pass {arg!r} through adb shell")  # a bug here, not user input
        return self._adb("shell", *args, timeout=timeout, what=f"adb shell {args[0]}", check=check)

    # Local paths go to adb absolute: a relative one such as `-x.tflite` would be read as an option.
    def push(self, local: Path, remote: str, *, timeout: float = 600) -> None:
        self._adb("push", str(Path(local).absolute()), remote, timeout=timeout, what=f"adb push {local.name}")

    def pull(self, remote: str, local: Path, *, timeout: float = 120) -> None:
        self._adb("pull", remote, str(Path(local).absolute()), timeout=timeout, what=f"adb pull {remote}")

    def exists(self, remote: str) -> bool:
        return self.shell("ls", remote, check=False).returncode == 0

    def sha256(self, remote: str) -> str:
        proc = self.shell("sha256sum", remote, check=False)
        digest = proc.stdout.split()[0].lower() if proc.stdout.split() else ""
        if proc.returncode != 0 or not re.fullmatch(r"[0-9a-f]{64}", digest):
            detail = _first_line(proc.stderr or proc.stdout) or f"exit {proc.returncode}"
            raise ToolMissingError(f"device {self.serial}: cannot checksum {remote} with sha256sum ({detail})")
        return digest

    def getprop(self, name: str) -> str:
        return self.shell("getprop", name, check=False).stdout.strip()


def _first_line(text: str) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def _run(argv: list[str], *, timeout: float, what: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ToolMissingError(f"{what} did not finish in {timeout:.0f} s: is the device responding?") from None
    except OSError as exc:
        raise ToolMissingError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if check and proc.returncode != 0:
        detail = _first_line(proc.stderr) or _first_line(proc.stdout) or f"exit code {proc.returncode}"
        # Failures here are the device's or the connection's (gone, full, permission): exit code 2.
        raise ToolMissingError(f"{what} failed: {detail}")
    return proc
