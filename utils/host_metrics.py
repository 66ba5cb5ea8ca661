"""What the machine is doing, read from /proc and sysfs (no extra packages).

Everything the Jetson exposes and an ordinary Linux box may not (GPU load,
GPU temperature, the JetPack release) reads as None where it is missing, so
the same code runs on the Jetson, on ECS and on a laptop. `root` lets the
tests hand in a fake tree.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

# The Orin's GPU: `load` in tenths of a percent where the driver exposes it,
# else the devfreq clock ratio the earlier device script reported.
GPU_LOAD_FILES = (
    "sys/devices/platform/bus@0/17000000.gpu/load",
    "sys/devices/platform/17000000.gpu/load",
    "sys/devices/gpu.0/load",
)
GPU_DEVFREQ = "sys/class/devfreq/17000000.gpu"


@dataclass(frozen=True)
class CpuSample:
    busy: int
    total: int


@dataclass(frozen=True)
class HostMetrics:
    hostname: str
    cpu_cores: int
    cpu_utilization: float | None
    memory_total_mb: int | None
    memory_used_mb: int | None
    gpu_utilization: float | None
    temperature_c: float | None
    jetpack_version: str | None
    gpu_model: str | None

    def row(self) -> dict[str, object]:
        return dict(self.__dict__)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _number(path: Path) -> float | None:
    text = _read(path)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def cpu_sample(root: Path = Path("/")) -> CpuSample | None:
    """The whole machine's CPU counters (first line of /proc/stat)."""
    text = _read(root / "proc/stat")
    if not text or not text.startswith("cpu "):
        return None
    try:
        counts = [int(v) for v in text.splitlines()[0].split()[1:9]]
    except ValueError:
        return None
    idle = counts[3] + (counts[4] if len(counts) > 4 else 0)  # idle + iowait
    return CpuSample(sum(counts) - idle, sum(counts))


def cpu_percent(before: CpuSample | None, after: CpuSample | None) -> float | None:
    if before is None or after is None or after.total <= before.total:
        return None
    return round(100.0 * (after.busy - before.busy) / (after.total - before.total), 1)


def _memory_mb(root: Path) -> tuple[int | None, int | None]:
    fields: dict[str, int] = {}
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0])  # kB
    total, available = fields.get("MemTotal"), fields.get("MemAvailable")
    if total is None:
        return None, None
    used = total - available if available is not None else None
    return total // 1024, (used // 1024 if used is not None else None)


def _gpu_load(root: Path) -> float | None:
    for name in GPU_LOAD_FILES:
        value = _number(root / name)
        if value is not None:
            return round(min(100.0, value / 10.0), 1)
    current = _number(root / GPU_DEVFREQ / "cur_freq")
    most = _number(root / GPU_DEVFREQ / "max_freq")
    if current is not None and most:
        return round(min(100.0, 100.0 * current / most), 1)
    return None


def _gpu_temperature(root: Path) -> float | None:
    """The thermal zone whose type names the GPU (`gpu-thermal` on the Orin)."""
    zones = sorted((root / "sys/class/thermal").glob("thermal_zone*"))
    for zone in zones:
        if "gpu" in (_read(zone / "type") or "").lower():
            millidegrees = _number(zone / "temp")
            return round(millidegrees / 1000.0, 1) if millidegrees is not None else None
    return None


def _jetpack(root: Path) -> str | None:
    """L4T's release line: `# R36 (release), REVISION: 4.3, …` → `R36.4.3`."""
    text = _read(root / "etc/nv_tegra_release")
    if not text:
        return None
    head = text.lstrip("# ").split()
    revision = text.split("REVISION:")[1].split(",")[0].strip() if "REVISION:" in text else ""
    return f"{head[0]}.{revision}" if head and revision else (head[0] if head else None)


def read_host(root: Path = Path("/"), cpu: float | None = None) -> HostMetrics:
    total, used = _memory_mb(root)
    model = (_read(root / "proc/device-tree/model") or "").rstrip("\x00") or None
    return HostMetrics(
        hostname=socket.gethostname(),
        cpu_cores=os.cpu_count() or 1,
        cpu_utilization=cpu,
        memory_total_mb=total,
        memory_used_mb=used,
        gpu_utilization=_gpu_load(root),
        temperature_c=_gpu_temperature(root),
        jetpack_version=_jetpack(root),
        gpu_model=model if model and "jetson" in model.lower() else None,
    )
