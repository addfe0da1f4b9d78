"""Vendors whose SMI speaks nvidia-smi's query dialect: one mechanism for their argv and parsers."""

from typing import Dict, List, Optional, Sequence, Tuple

from .devices import device_indices
from .smi import (
    MISSING,
    DeviceInfo,
    DeviceProcess,
    MonitorSample,
    csv_records,
    interval_text,
    parse_int,
    parse_number,
    repeat_argv,
    throttle_names,
)
from .vendor import Vendor


class QueryCsvVendor(Vendor):
    """Vendors whose SMI speaks nvidia-smi's ``--query-gpu=... --format=csv`` dialect."""

    #: fields of the inventory query; index, name, memory.total, driver_version come first
    inventory_fields: Tuple[str, ...] = ("index", "name", "memory.total", "driver_version")
    #: fields of the monitor query
    monitor_fields: Tuple[str, ...] = ("index", "utilization.gpu", "memory.used", "power.draw")
    #: optional fields asked for after ``monitor_fields``: sets tried richest first (``richer_sample_argvs``),
    #: each read in ``_OPTIONAL``'s order (the SM clock in MHz, the clock-throttle mask); () for none
    monitor_optional: Tuple[Tuple[str, ...], ...] = ()
    #: fields of the per-process query (None: the SMI cannot list processes, or it is unverified)
    process_fields: Optional[Tuple[str, ...]] = None
    #: whether the SMI lists compute processes like nvidia-smi's ``--query-compute-apps``
    lists_processes = False
    #: the query fields of the active clock-throttle reasons (a hex mask), tried in turn; () where none
    throttle_fields: Tuple[str, ...] = ()
    #: whether the SMI has nvidia-smi's ``-lms`` loop flag (else the query is repeated by sh)
    loop_ms_flag = False
    _FORMAT = "--format=csv,noheader,nounits"
    #: what the parser reads the optional fields of a monitor line as, in order (whatever the set's names)
    _OPTIONAL = ("sm_clock", "throttle_mask")

    def inventory_argv(self) -> Optional[List[str]]:
        return [self._tool(), "--query-gpu=" + ",".join(self.inventory_fields), self._FORMAT]

    def parse_inventory(self, text: str) -> List[DeviceInfo]:
        out = []
        for rec in csv_records(text, self.inventory_fields, required=4):
            driver = rec.get("driver_version", "")
            extra = {
                k: v
                for k, v in rec.items()
                if k not in self.inventory_fields[:4] and v.lower() not in MISSING
            }
            out.append(
                DeviceInfo(
                    index=int(rec["index"]),
                    model=rec["name"],
                    memory_total_mib=parse_number(rec.get("memory.total")),
                    driver=None if driver.lower() in MISSING else driver,
                    extra=extra,
                )
            )
        return out

    def monitor_argv(self, devices: Sequence[int], interval_s: float) -> Optional[List[str]]:
        return self.repeat_sample_argv(self._query_gpu(devices, self.monitor_fields), interval_s)

    def richer_sample_argvs(self, devices: Sequence[int]) -> List[List[str]]:
        return [self._query_gpu(devices, self.monitor_fields + extra) for extra in self.monitor_optional]

    def repeat_sample_argv(self, argv: Sequence[str], interval_s: float) -> List[str]:
        if self.loop_ms_flag:
            interval_text(interval_s)  # validates
            return list(argv) + ["-lms", str(max(1, round(interval_s * 1000)))]
        return repeat_argv(argv, interval_s)

    def parse_monitor_line(self, line: str) -> List[MonitorSample]:
        """Samples of any of the monitor's queries: ``monitor_fields``, then the optional ones if asked."""
        out = []
        fields = self.monitor_fields + (self._OPTIONAL if self.monitor_optional else ())
        for rec in csv_records(line, fields, required=len(self.monitor_fields)):
            mask = rec.get("throttle_mask")
            names = throttle_names(mask) if mask is not None else None
            out.append(
                MonitorSample(
                    device=int(rec["index"]),
                    memory_used_mib=parse_number(rec.get("memory.used")),
                    utilization_pct=parse_number(rec.get("utilization.gpu")),
                    power_w=parse_number(rec.get("power.draw")),
                    sm_clock_mhz=parse_number(rec.get("sm_clock")),
                    throttle=tuple(names) if names is not None else None,
                )
            )
        return out

    def sample_argv(self, devices: Sequence[int]) -> Optional[List[str]]:
        return self._query_gpu(devices, self.monitor_fields)

    #: the per-process query of the isolation check: pid, name (which may hold commas), memory
    _APPS = "--query-compute-apps=pid,process_name,used_memory"

    def processes_argv(self, devices: Sequence[int]) -> Optional[List[str]]:
        return [self._tool(), self._APPS, self._FORMAT] + self._ids(devices) if self.lists_processes else None

    def parse_processes(self, text: str) -> List[DeviceProcess]:
        out = []
        for line in text.splitlines():
            cells = [cell.strip() for cell in line.split(",")]
            pid = parse_int(cells[0])
            if pid is None or len(cells) < 3:
                continue
            out.append(DeviceProcess(pid, ",".join(cells[1:-1]), parse_number(cells[-1])))
        return out

    def throttle_argvs(self, devices: Sequence[int]) -> List[List[str]]:
        return [self._query_gpu(devices, ("index", name)) for name in self.throttle_fields]

    def parse_throttle(self, text: str) -> Dict[int, List[str]]:
        out = {}
        for rec in csv_records(text, ("index", "reasons")):
            names = throttle_names(rec["reasons"])
            if names is not None:
                out[int(rec["index"])] = names
        return out

    def process_memory_argv(self, devices: Sequence[int]) -> Optional[List[str]]:
        if not self.process_fields:
            return None
        argv = [self._tool(), "--query-compute-apps=" + ",".join(self.process_fields), self._FORMAT]
        return argv + self._ids(devices)

    def parse_process_memory(self, text: str) -> Dict[int, float]:
        out: Dict[int, float] = {}
        for rec in csv_records(text, self.process_fields or ()):
            used = parse_number(rec.get("used_memory"))
            if used is not None:
                pid = int(rec["pid"])
                out[pid] = out.get(pid, 0.0) + used
        return out

    def _query_gpu(self, devices: Sequence[int], fields: Sequence[str]) -> List[str]:
        return [self._tool(), "--query-gpu=" + ",".join(fields), self._FORMAT] + self._ids(devices)

    @staticmethod
    def _ids(devices: Sequence[int]) -> List[str]:
        indices = device_indices(devices)
        return ["-i", ",".join(str(d) for d in indices)] if indices else []
