"""The device row's facts: what /proc and sysfs say (a fake tree standing in
for a Jetson and for an ordinary box), and how health turns into a status."""

from __future__ import annotations

from pathlib import Path

from streaming.device_report import PROBLEM_SECONDS, Health, disk_problem
from utils.host_metrics import cpu_percent, cpu_sample, read_host


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


JETSON = {
    "proc/stat": "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n",
    "proc/meminfo": "MemTotal:        7990000 kB\nMemFree:  100 kB\nMemAvailable:    3894000 kB\n",
    "sys/class/thermal/thermal_zone0/type": "cpu-thermal\n",
    "sys/class/thermal/thermal_zone0/temp": "51000\n",
    "sys/class/thermal/thermal_zone1/type": "gpu-thermal\n",
    "sys/class/thermal/thermal_zone1/temp": "48562\n",
    "sys/devices/platform/bus@0/17000000.gpu/load": "374\n",
    "etc/nv_tegra_release": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic\n",
    "proc/device-tree/model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit\x00",
}


def test_a_jetson_tree_gives_every_field(tmp_path: Path) -> None:
    root = _write(tmp_path, JETSON)
    metrics = read_host(root, cpu=12.5)
    assert (metrics.memory_total_mb, metrics.memory_used_mb) == (7802, 4000)
    assert metrics.temperature_c == 48.6 and metrics.gpu_utilization == 37.4
    assert metrics.jetpack_version == "R36.4.3"
    assert metrics.gpu_model.startswith("NVIDIA Jetson Orin Nano")
    assert metrics.cpu_cores >= 1 and metrics.cpu_utilization == 12.5 and metrics.hostname


def test_gpu_load_falls_back_to_the_devfreq_ratio(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "sys/class/devfreq/17000000.gpu/cur_freq": "306000000",
        "sys/class/devfreq/17000000.gpu/max_freq": "612000000",
    })  # fmt: skip
    assert read_host(root).gpu_utilization == 50.0


def test_an_ordinary_box_reads_none_where_the_jetson_parts_are_missing(tmp_path: Path) -> None:
    root = _write(tmp_path, {"sys/class/thermal/thermal_zone0/type": "x86_pkg_temp\n",
                             "sys/class/thermal/thermal_zone0/temp": "40000\n"})  # fmt: skip
    metrics = read_host(root)
    assert metrics.gpu_utilization is None and metrics.temperature_c is None
    assert metrics.jetpack_version is None and metrics.gpu_model is None
    assert metrics.memory_total_mb is None and cpu_sample(root) is None


def test_cpu_percent_is_the_busy_share_between_two_samples(tmp_path: Path) -> None:
    before = cpu_sample(_write(tmp_path / "a", {"proc/stat": "cpu  100 0 100 700 100 0 0 0\n"}))
    after = cpu_sample(_write(tmp_path / "b", {"proc/stat": "cpu  175 0 125 750 150 0 0 0\n"}))
    assert cpu_percent(before, after) == 50.0
    assert cpu_percent(after, before) is None and cpu_percent(None, after) is None
    assert cpu_sample() is not None  # this machine's own


def test_health_names_what_failed_until_it_works_or_is_not_seen_again() -> None:
    now = [1000.0]
    health = Health(clock=lambda: now[0])
    health.outcome("retry", "STORAGE_UNAVAILABLE")
    health.failed("SQS", "connection refused")
    assert health.problems() == {"Wasabi": "STORAGE_UNAVAILABLE", "SQS": "connection refused"}
    health.ok("SQS")
    assert set(health.problems()) == {"Wasabi"}
    now[0] += PROBLEM_SECONDS
    assert health.problems() == {}
    health.outcome("retry", "DATABASE_UNAVAILABLE")
    health.outcome("succeeded", None)
    assert health.problems() == {}


def test_a_work_dir_short_of_space_is_a_problem(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "made" / "yet"  # judged on the disk it will be made on
    assert "MB free" in (disk_problem(missing, 10**18) or "")
    assert disk_problem(tmp_path, -(10**18)) is None
