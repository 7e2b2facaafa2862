"""Device profiles: what a simulated edge device is, read from YAML files.

A profile names the real core (its type and part number), the qemu CPU that
emulates its instruction set, the faked /proc/cpuinfo the emulated process
sees, the clock, cores and memory, and the cost parameters that turn counted
instructions into an estimated latency (see latency_model.py).

The shipped profiles live in `edgequant/devices/profiles/*.yaml`. A user adds a
device with a YAML file of the same shape and passes its path wherever a
profile name is accepted.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgequant.devices.core_timings import CORES
from edgequant.errors import InputError

PROFILE_DIR = Path(__file__).parent / "profiles"

# Linux hwcap names of the instruction-set features each qemu 7.2 CPU model
# exposes (target/arm/cpu64.c ID registers). A faked cpuinfo may claim no more.
QEMU_CPU_FEATURES: dict[str, frozenset[str]] = {
    "cortex-a35": frozenset("fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid".split()),
    "cortex-a53": frozenset("fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid".split()),
    "cortex-a57": frozenset("fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid".split()),
    "cortex-a72": frozenset("fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid".split()),
    "cortex-a76": frozenset(
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs".split()
    ),
    "neoverse-n1": frozenset(
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs".split()
    ),
}

# MIDR (implementer, part) pairs for which the cpuinfo library (used by XNNPACK)
# assumes dot product and fp16 arithmetic whatever the kernel reports
# (cpuinfo src/arm/linux/aarch64-isa.c). Naming such a core under a CPU model
# without asimddp makes XNNPACK run instructions qemu rejects (SIGILL).
_PARTS_IMPLYING_DOTPROD = {
    (0x41, 0xD05), (0x41, 0xD06), (0x41, 0xD0B), (0x41, 0xD0C), (0x41, 0xD0D), (0x41, 0xD0E),
    (0x48, 0xD40), (0x51, 0x802), (0x51, 0x803), (0x51, 0x804), (0x51, 0x805),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CostModel(_Strict):
    """Where the device's estimates come from. The cost parameters themselves are shared by every
    device (latency_model.CostParams in cost_params.json); a device contributes only its facts."""

    source: str = Field(description="which calibration rows the device has, or that it has none")
    calibration_rows: int = Field(0, ge=0, description="published rows of this device in the calibration set")
    lodo_error_pct: float | None = Field(
        None, ge=0, description="median |estimate - published| / published of this device's rows when the device "
                                "is left out of the fit, in percent"
    )
    interval_widening: float = Field(
        1.0, ge=1, description="how much wider than the calibrated interval this device's estimates are "
                               "(> 1 for a profile written by `edgequant devices new`)"
    )


class CoreCluster(_Strict):
    """Further cores a device's threads spill onto once its big cores are busy."""

    cores: int = Field(ge=1)
    core: str = Field(description="core type, priced with its own published timings")
    clock_ghz: float = Field(gt=0)


class DeviceProfile(_Strict):
    """One simulated edge device (or `host`: measured natively, no emulation)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    device: str = Field(description="the real device, e.g. 'Raspberry Pi 4 Model B'")
    soc: str = ""
    core: str = Field(description="core type the latency is estimated for, e.g. Cortex-A72")
    kind: Literal["emulated", "host"] = "emulated"
    qemu_cpu: str | None = Field(None, description="QEMU_CPU that emulates the core's instruction set")
    cpu_implementer: int = Field(0x41, description="MIDR implementer written to the faked /proc/cpuinfo")
    cpu_part: int | None = Field(None, description="MIDR part number of the real core (0xd08 = Cortex-A72)")
    cpu_variant: int = 0
    cpu_revision: int = 0
    cpuinfo_features: list[str] = Field(default_factory=list, description="Features line of the faked cpuinfo")
    clock_ghz: float | None = Field(None, gt=0, description="clock of the core a single thread runs on")
    multi_thread_clock_ghz: float | None = Field(
        None, gt=0, description="clock when all `cores` run (slower cores of a prime+gold cluster); default clock_ghz"
    )
    cores: int | None = Field(None, ge=1, description="cores of the type `core` (the big cluster on a phone)")
    other_cores: list[CoreCluster] = Field(
        default_factory=list, description="slower clusters threads use beyond `cores`, fastest first")
    memory_mb: int | None = Field(None, gt=0, description="RAM of the device")
    memory_available_mb: int | None = Field(None, gt=0, description="RAM an app can count on; default half of RAM")
    memory_bandwidth_gbs: float | None = Field(None, gt=0, description="sustained DRAM bandwidth (STREAM-like)")
    os_bits: Literal[32, 64] = 64
    cost: CostModel | None = None
    notes: str = ""

    @field_validator("qemu_cpu")
    @classmethod
    def _known_cpu(cls, v: str | None) -> str | None:
        if v is not None and v not in QEMU_CPU_FEATURES:
            raise ValueError(f"'{v}' is not one of {', '.join(QEMU_CPU_FEATURES)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        if self.kind == "host":
            return self
        missing = [f for f in ("qemu_cpu", "cpu_part", "clock_ghz", "cores", "memory_mb", "memory_bandwidth_gbs")
                   if getattr(self, f) is None]
        if missing:
            raise ValueError(f"an emulated profile needs {', '.join(missing)}")
        if self.cost is None:
            raise ValueError("an emulated profile needs a cost: block (source, calibration_rows)")
        for core in [self.core] + [c.core for c in self.other_cores]:
            if core not in CORES:
                raise ValueError(f"core '{core}' has no published instruction timings; known: {', '.join(CORES)}")
        available = QEMU_CPU_FEATURES[self.qemu_cpu]
        extra = [f for f in self.cpuinfo_features if f not in available]
        if extra:
            raise ValueError(
                f"cpuinfo_features claims {', '.join(extra)}, which qemu's {self.qemu_cpu} lacks "
                "(the guest would execute instructions qemu rejects: SIGILL)"
            )
        if (self.cpu_implementer, self.cpu_part) in _PARTS_IMPLYING_DOTPROD and "asimddp" not in available:
            raise ValueError(
                f"cpu_part {self.cpu_part:#x} makes XNNPACK assume dot product, "
                f"which qemu's {self.qemu_cpu} lacks: emulate cortex-a76 or neoverse-n1"
            )
        return self

    @property
    def emulated(self) -> bool:
        return self.kind == "emulated"

    @property
    def threaded_clock_ghz(self) -> float:
        return self.multi_thread_clock_ghz or self.clock_ghz

    @property
    def available_memory_mb(self) -> int | None:
        if self.memory_available_mb or self.memory_mb is None:
            return self.memory_available_mb
        return self.memory_mb // 2

    @property
    def calibration_error_pct(self) -> float | None:
        """Median error of this device's estimates when its own rows were left out of the fit."""
        return self.cost.lodo_error_pct if self.cost else None

    @property
    def max_threads(self) -> int:
        return (self.cores or 0) + sum(c.cores for c in self.other_cores)

    def clusters(self) -> list[CoreCluster]:
        """Every core threads may run on, fastest first: the first big core, the other big cores, the rest."""
        first = [CoreCluster(cores=1, core=self.core, clock_ghz=self.clock_ghz)]
        if self.cores > 1:
            first.append(CoreCluster(cores=self.cores - 1, core=self.core, clock_ghz=self.threaded_clock_ghz))
        return first + list(self.other_cores)

    def cpuinfo_text(self, processors: int | None = None) -> str:
        """The aarch64 /proc/cpuinfo the emulated process reads (one block per core)."""
        n = processors or self.cores
        block = (
            "processor\t: {i}\n"
            "BogoMIPS\t: 50.00\n"
            f"Features\t: {' '.join(self.cpuinfo_features)}\n"
            f"CPU implementer\t: {self.cpu_implementer:#04x}\n"
            "CPU architecture: 8\n"
            f"CPU variant\t: {self.cpu_variant:#x}\n"
            f"CPU part\t: {self.cpu_part:#05x}\n"
            f"CPU revision\t: {self.cpu_revision}\n\n"
        )
        return "".join(block.format(i=i) for i in range(n))

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)


def list_profiles() -> list[DeviceProfile]:
    """Every shipped profile, sorted by name."""
    return [load_profile(p) for p in sorted(PROFILE_DIR.glob("*.yaml"))]


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path | DeviceProfile) -> DeviceProfile:
    """A shipped profile by name (`rpi4`) or a user's profile from a YAML file path."""
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    text = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or os.sep in text
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_file():
            raise InputError(f"{path}: no such device profile file")
        return _load_file(path.resolve())
    path = PROFILE_DIR / f"{text}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(text, profile_names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise InputError(f"unknown device '{text}'{hint}; known: {', '.join(profile_names())}, or a path to a .yaml file")
    return _load_file(path)


@lru_cache(maxsize=64)
def _load_cached(path: Path, mtime_ns: int) -> DeviceProfile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise InputError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a device profile must be a mapping of fields")
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(profile)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            known = _field_names(err["loc"])
            close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
            message = "unknown field" + (f" (did you mean '{close[0]}'?)" if close else "")
        raise InputError(f"{path}: {field}: {message}") from None


def _field_names(loc: tuple) -> list[str]:
    model: type[BaseModel] = DeviceProfile
    for part in loc[:-1]:
        annotation = model.model_fields[str(part)].annotation
        model = next((a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)
                      and issubclass(a, BaseModel)), model)
    return list(model.model_fields)


def _load_file(path: Path) -> DeviceProfile:
    return _load_cached(path, path.stat().st_mtime_ns)


# A profile made from another for a board the calibration set has no row of: its clock, cores
# and memory are the user's facts, not checked against a measurement, so its interval is wider.
DERIVED_INTERVAL_WIDENING = 1.3


def derive_profile(like: str | Path | DeviceProfile, name: str, *, clock_ghz: float | None = None,
                   cores: int | None = None, memory_mb: int | None = None,
                   memory_bandwidth_gbs: float | None = None, device: str | None = None) -> DeviceProfile:
    """A profile for a board with a known core: `like`'s core and instruction set, new facts."""
    base = load_profile(like)
    if not base.emulated:
        raise InputError(f"--like: '{base.name}' is measured natively; name an emulated profile")
    data = base.to_dict()
    data.update(name=name, device=device or f"{name} (like {base.name}: {base.core})", soc="")
    if clock_ghz is not None:
        data["clock_ghz"] = clock_ghz
        data.pop("multi_thread_clock_ghz", None)
    for key, value in (("cores", cores), ("memory_mb", memory_mb), ("memory_bandwidth_gbs", memory_bandwidth_gbs)):
        if value is not None:
            data[key] = value
    if memory_mb is not None:
        data.pop("memory_available_mb", None)
    data["cost"] = {
        "source": f"made with `edgequant devices new --like {base.name}`: no calibration rows of its own; "
                  f"{base.core} timings and the shared fit, interval widened x{DERIVED_INTERVAL_WIDENING}",
        "calibration_rows": 0, "interval_widening": DERIVED_INTERVAL_WIDENING,
    }
    data["notes"] = (base.notes + " " if base.notes else "") + f"Derived from {base.name} ({base.device})."
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(profile)"
        raise InputError(f"{field}: {err['msg'].removeprefix('Value error, ')}") from None


def save_profile(profile: DeviceProfile, path: Path) -> None:
    """Write a profile as YAML, atomically (the fitting script updates shipped profiles this way)."""
    text = yaml.safe_dump(profile.to_dict(), sort_keys=False, allow_unicode=True, width=110)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
