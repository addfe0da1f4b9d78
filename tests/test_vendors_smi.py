"""SMI argv and parsers, on captured outputs (NVIDIA H200, /proc/cpuinfo) and documented formats."""

from pathlib import Path

import pytest

import vendors
from vendors.smi import DeviceInfo, MonitorSample, parse_number

SMI = Path(__file__).resolve().parent / "data" / "smi"


def _text(name: str) -> str:
    return (SMI / name).read_text()


def _samples(vendor, name: str):
    return [s for line in _text(name).splitlines() for s in vendor.parse_monitor_line(line)]


@pytest.mark.parametrize(
    "text, value",
    [
        ("143771", 143771.0), ("143771 MiB", 143771.0), (" 79.81 W", 79.81), ("0 %", 0.0), ("1e3", 1000.0),
        ("[N/A]", None), ("N/A", None), ("[Not Supported]", None), ("", None), ("-", None), (None, None),
        ("Default", None),
    ],
)  # fmt: skip
def test_parse_number_tolerates_units_and_missing_values(text, value):
    assert parse_number(text) == value


# -- NVIDIA ---------------------------------------------------------------------------------
NVIDIA = vendors.get("nvidia")
H200 = DeviceInfo(
    index=0,
    model="NVIDIA H200",
    memory_total_mib=143771.0,
    driver="580.159.04",
    extra={
        "pci.bus_id": "00000000:00:06.0",
        "serial": "1653824018226",
        "uuid": "GPU-7135d076-5e32-23f5-2914-041483e06a98",
        "compute_cap": "9.0",
    },
)


def test_nvidia_argv_are_the_ones_the_captures_were_taken_with():
    assert NVIDIA.inventory_argv() == [
        "nvidia-smi",
        "--query-gpu=index,name,memory.total,driver_version,pci.bus_id,serial,uuid,compute_cap",
        "--format=csv,noheader,nounits",
    ]
    assert NVIDIA.monitor_argv([0], 0.5) == [
        "nvidia-smi",
        "--query-gpu=index,timestamp,utilization.gpu,memory.total,memory.used,power.draw",
        "--format=csv,noheader,nounits",
        "-i", "0",
        "-lms", "500",
    ]  # fmt: skip
    assert NVIDIA.monitor_argv([0, 3], 2)[-4:] == ["-i", "0,3", "-lms", "2000"]
    assert NVIDIA.process_memory_argv([1]) == [
        "nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits", "-i", "1",
    ]  # fmt: skip


def test_nvidia_inventory_on_captured_h200_output():
    assert NVIDIA.parse_inventory(_text("nvidia-h200-query-gpu-inventory.csv")) == [H200]
    second = NVIDIA.parse_inventory(_text("nvidia-h200-inventory-rn50bench-fields.csv"))
    assert [(d.model, d.memory_total_mib, d.driver, d.extra["compute_cap"]) for d in second] == [
        ("NVIDIA H200", 143771.0, "580.159.04", "9.0")
    ]


def test_nvidia_inventory_with_header_and_units():
    """``--format=csv`` (header, ``143771 MiB``) and only the four leading fields."""
    devices = NVIDIA.parse_inventory(_text("nvidia-h200-query-gpu-inventory-header.csv"))
    assert devices == [DeviceInfo(0, "NVIDIA H200", 143771.0, "580.159.04")]


def test_nvidia_inventory_tolerates_missing_fields_and_blank_lines():
    text = "\n0, NVIDIA H200, [N/A], [N/A], [N/A], [Not Supported], GPU-x, 9.0\n\n1, NVIDIA H200\n"
    assert NVIDIA.parse_inventory(text) == [
        DeviceInfo(0, "NVIDIA H200", None, None, {"uuid": "GPU-x", "compute_cap": "9.0"})
    ]


def test_nvidia_monitor_on_captured_h200_loop():
    for name in ("nvidia-h200-monitor-lms.csv", "nvidia-h200-monitor-rn50bench-fields.csv"):
        samples = _samples(NVIDIA, name)
        assert len(samples) in (5, 6)
        assert {(s.device, s.memory_used_mib, s.utilization_pct) for s in samples} == {(0, 0.0, 0.0)}
        assert all(70.0 < s.power_w < 130.0 for s in samples)
    assert _samples(NVIDIA, "nvidia-h200-monitor-lms.csv")[0] == MonitorSample(0, 0.0, 0.0, 79.81)
    assert _samples(NVIDIA, "nvidia-h200-monitor-busy.csv") == [MonitorSample(0, 1551.0, 3.0, 90.54)]


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "index, timestamp, utilization.gpu [%], memory.total [MiB], memory.used [MiB], power.draw [W]",
        "No devices were found",
        "0, 2026/11/28 21:09:02.841, 0",  # cut short
    ],
)
def test_nvidia_monitor_ignores_headers_blanks_and_noise(line):
    assert NVIDIA.parse_monitor_line(line) == []


def test_nvidia_monitor_tolerates_missing_values():
    line = "1, 2026/11/28 21:09:02.841, [N/A], 143771 MiB, [Not Supported], [N/A]"
    assert NVIDIA.parse_monitor_line(line) == [MonitorSample(1, None, None, None)]


def test_nvidia_richer_monitor_queries_add_the_sm_clock_and_the_throttle_mask_last():
    head = "--query-gpu=index,timestamp,utilization.gpu,memory.total,memory.used,power.draw,clocks.sm,"
    tail = ["--format=csv,noheader,nounits", "-i", "0"]
    assert NVIDIA.richer_sample_argvs([0]) == [
        ["nvidia-smi", head + "clocks_event_reasons.active"] + tail,  # drivers from 535 on
        ["nvidia-smi", head + "clocks_throttle_reasons.active"] + tail,  # older ones
    ]
    richer = NVIDIA.richer_sample_argvs([0])[1]
    assert NVIDIA.repeat_sample_argv(richer, 0.5) == richer + ["-lms", "500"]  # streamed as the basic one
    assert ILUVATAR.richer_sample_argvs([0]) == [] and vendors.get("zixiao").richer_sample_argvs([0]) == []


def test_nvidia_monitor_reads_the_sm_clock_and_throttle_reasons_of_the_richer_query():
    samples = _samples(NVIDIA, "nvidia-h100-monitor-clocks-reconstructed.csv")
    assert samples[0] == MonitorSample(0, 30000.0, 100.0, 689.12, None, 1755.0, ("SwPowerCap",))
    assert [(s.sm_clock_mhz, s.throttle) for s in samples[1:]] == [
        (1740.0, ("SwPowerCap",)), (1980.0, ()), (1980.0, ("GpuIdle",)), (None, None),
    ]  # fmt: skip
    assert samples[-1] == MonitorSample(0, 30000.0, 0.0, None)  # [N/A]: not read, never guessed


def test_the_basic_query_reads_no_clock_and_no_throttle():
    """The captured rows of the basic query: the same parser, the two figures None (not sampled)."""
    samples = _samples(NVIDIA, "nvidia-h200-monitor-rn50bench-fields.csv")
    assert samples and all(s.sm_clock_mhz is None and s.throttle is None for s in samples)
    # a vendor without optional fields does not read cells beyond its own as a clock
    assert ILUVATAR.parse_monitor_line("0, 87, 27996, 151.2, 1755, 0x4") == [
        MonitorSample(0, 27996.0, 87.0, 151.2)
    ]


def test_nvidia_per_process_memory():
    assert NVIDIA.parse_process_memory(_text("nvidia-h200-compute-apps-busy.csv")) == {420: 1002.0}
    assert NVIDIA.parse_process_memory(_text("nvidia-h200-compute-apps-busy-rn50bench.csv")) == {438: 1542.0}
    assert NVIDIA.parse_process_memory(_text("nvidia-h200-compute-apps-idle.csv")) == {}
    assert NVIDIA.parse_process_memory("438, 1542\n438, 100 MiB\n9, [N/A]\n") == {438: 1642.0}


# -- Iluvatar ---------------------------------------------------------------------------------
ILUVATAR = vendors.get("iluvatar")


def test_iluvatar_argv():
    assert ILUVATAR.inventory_argv() == [
        "ixsmi", "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader,nounits",
    ]  # fmt: skip
    argv = ILUVATAR.monitor_argv([2], 1.5)
    assert argv[:5] == ["sh", "-c", argv[2], "rn50bench-monitor", "1.5"]
    assert argv[5:] == [
        "ixsmi", "--query-gpu=index,utilization.gpu,memory.used,power.draw", "--format=csv,noheader,nounits",
        "-i", "2",
    ]  # fmt: skip
    assert ILUVATAR.process_memory_argv([0]) is None


def test_iluvatar_inventory():
    assert ILUVATAR.parse_inventory(_text("iluvatar-ixsmi-inventory.csv")) == [
        DeviceInfo(0, "Iluvatar MR-V100", 32768.0, "3.2.0"),
        DeviceInfo(1, "Iluvatar MR-V50", 16384.0, None),
    ]


def test_iluvatar_monitor():
    assert _samples(ILUVATAR, "iluvatar-ixsmi-monitor.csv") == [
        MonitorSample(0, 27996.0, 87.0, 151.2),
        MonitorSample(1, 116.0, None, None),
    ]


def test_iluvatar_monitor_parses_the_same_dialect_captured_from_nvidia_smi():
    """The H200 capture of the repeat loop used exactly Iluvatar's monitor fields."""
    samples = _samples(ILUVATAR, "nvidia-h200-repeat-loop.csv")
    assert len(samples) == 4 and {(s.device, s.memory_used_mib, s.utilization_pct) for s in samples} == {
        (0, 0, 0)
    }


# -- Kunlunxin ---------------------------------------------------------------------------------
KUNLUNXIN = vendors.get("kunlunxin")


def test_kunlunxin_argv():
    assert KUNLUNXIN.inventory_argv() == ["xpu_smi", "-m"]
    assert KUNLUNXIN.monitor_argv([0], 2)[-3:] == ["2", "xpu_smi", "-m"]
    assert KUNLUNXIN.process_memory_argv([0]) is None


def test_kunlunxin_inventory():
    devices = KUNLUNXIN.parse_inventory(_text("kunlunxin-xpu_smi-m.txt"))
    assert [(d.index, d.model, d.memory_total_mib) for d in devices] == [
        (0, "P800 OAM", 98304.0), (1, "P800 OAM", 98304.0), (1, "P800 OAM", 98304.0),
    ]  # fmt: skip
    assert devices[0].extra == {
        "pci.bus_id": "00000000:03:00.0",
        "serial": "02K15K624CV00304",
        "firmware": "1.0:2.6:1.39.1.7",
    }


def test_kunlunxin_monitor():
    assert _samples(KUNLUNXIN, "kunlunxin-xpu_smi-m.txt") == [
        MonitorSample(0, 90440.0, 0.0, 86.0),
        MonitorSample(1, 90440.0, 0.0, 86.0),
        MonitorSample(1, 0.0, 0.0, 93.0),
    ]


@pytest.mark.parametrize("line", ["", "XPU-SMI", '00000000:03:00.0 0 0 "unbalanced', "0 0 0 1 2 3"])
def test_kunlunxin_ignores_non_device_lines(line):
    assert KUNLUNXIN.parse_monitor_line(line) == []
    assert KUNLUNXIN.parse_inventory(line) == []


# -- Zixiao ---------------------------------------------------------------------------------
ZIXIAO = vendors.get("zixiao")


def test_zixiao_argv():
    assert ZIXIAO.inventory_argv() == ["zx-smi"]
    assert ZIXIAO.monitor_argv([0], 1)[-7:] == ["1", "zx-smi", "-dmon", "-s", "mp", "-c", "1"]


def test_zixiao_inventory():
    assert ZIXIAO.parse_inventory(_text("zixiao-zx-smi.txt")) == [
        DeviceInfo(0, "C100", 16384.0, "2.4.12", {"firmware": "10.19.3", "pci.bus_id": "00:3d:0.0"}),
        DeviceInfo(1, "C100", 16384.0, "2.4.12", {"firmware": "10.19.3", "pci.bus_id": "00:3e:0.0"}),
    ]


def test_zixiao_monitor_reports_memory_as_a_share():
    assert _samples(ZIXIAO, "zixiao-zx-smi-dmon.txt") == [
        MonitorSample(0, None, 85.0, 97.5, memory_used_pct=42.5),
        MonitorSample(1, None, None, None, memory_used_pct=None),
    ]


# -- CPU ---------------------------------------------------------------------------------------
CPU = vendors.get("cpu")


def test_cpu_inventory_from_proc_cpuinfo():
    assert CPU.inventory_argv() == ["cat", "/proc/cpuinfo"]
    assert CPU.monitor_argv([0], 1) is None and CPU.process_memory_argv([0]) is None
    assert CPU.parse_inventory(_text("cpu-proc-cpuinfo-dev.txt")) == [
        DeviceInfo(0, "Intel(R) Xeon(R) Processor", extra={"logical_cpus": "2"})
    ]


def test_cpu_inventory_counts_packages():
    block = "processor\t: {p}\nmodel name\t: Acme {s}\nphysical id\t: {s}\n"
    text = "\n".join(block.format(p=p, s=p // 2) for p in range(4))
    assert [(d.index, d.model, d.extra["logical_cpus"]) for d in CPU.parse_inventory(text)] == [
        (0, "Acme 0", "2"), (1, "Acme 1", "2"),
    ]  # fmt: skip
    assert CPU.parse_inventory("") == []
