"""A job's derived figures: the typed, frozen record that ``collect`` returns and the store keeps.

``figures`` holds one value per row of the metric table (``table.METRICS``), each read through its row;
``spreads`` the spread over the passes of each row that declares them (``per_pass``, ``spread.Spread``);
the other fields are the notes the figures rest on (what ran, the sources, the peak and why it is unknown).
The store keeps the record as one flat JSON object (``as_stored``; the spreads under "spreads"), read back
through ``from_stored`` with the checks of the result itself: each figure typed and within the bounds of its
row, each spread's values within the same bounds (records stored before spreads read with none).
"""

from dataclasses import MISSING, asdict, dataclass, field, fields, make_dataclass
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union, get_type_hints

from orchestrator.metrics import table
from orchestrator.metrics.spread import Spread, of
from runner_in_container import schema
from vendors.vendor import Vendor


@dataclass(frozen=True)
class Derived:
    """The figures of one job (metric key -> value or None) and the notes they rest on: texts and flags, never
    a number (a number is a figure, with its row in the metric table)."""

    figures: Mapping[str, Optional[float]]
    #: metric key -> its spread over the passes, for the rows with ``per_pass`` whose stage ran
    spreads: Mapping[str, Spread]
    tool: str = schema.text()
    precision: str = schema.text()
    #: accuracy figures mean something (verified weights)
    acc_meaningful: bool = schema.flag()
    mem_source: Optional[str] = schema.text()
    device_model: Optional[str] = schema.text()
    #: where the dense peak FLOP/s the MFU rests on comes from, or why there is none
    peak_source: Optional[str] = schema.text()
    mfu_note: Optional[str] = schema.text()
    metric_version: Union[int, str, None] = schema.metric_version(present="optional")
    #: added by the job lifecycle: where the monitor's samples came from, and the MPS daemon's part
    samples_source: Optional[str] = schema.text(present="optional")
    mps: Optional[str] = schema.text(present="optional")

    def figure(self, key: str) -> Optional[float]:
        """The figure of the metric ``key`` (KeyError for a key no row has)."""
        return self.figures[key]

    def as_stored(self) -> Dict[str, Any]:
        """The record as the store keeps it: one flat JSON object."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _RECORDS}
        out.update(self.figures)
        out["spreads"] = {key: asdict(spread) for key, spread in self.spreads.items()}
        return out


#: the record's fields that are no note: the figures (stored flat) and their spreads
_RECORDS = ("figures", "spreads")


def _spread_shape(metric: table.Metric) -> type:
    """A stored spread of ``metric``: its values within the row's bounds, the CV a ratio."""
    rule = {"rule": metric.rule(), "present": schema.PRESENT_ALWAYS}
    count = {"rule": schema.Rule(1, schema.MAX_COUNT)}
    specs: List[Tuple[str, Any, Any]] = [("n", int, field(metadata=count))]
    specs += [(name, float, field(metadata=rule)) for name in ("median", "min", "max")]
    specs.append(("cv", Optional[float], field(metadata={"rule": schema.Rule(0, schema.MAX_RATIO)})))
    return make_dataclass("StoredSpread_" + metric.key, specs, frozen=True)


def _spreads_shape() -> type:
    """The stored spreads: one optional key per row with ``per_pass``."""
    specs = [
        (m.key, Optional[_spread_shape(m)], field(default=None, metadata={"rule": schema.Rule()}))
        for m in table.METRICS
        if m.per_pass
    ]
    return make_dataclass("StoredSpreads", specs, frozen=True)


def _stored_shape() -> type:
    """The stored record's shape as a dataclass ``schema.parse_as`` reads: the notes as declared, and each
    metric as its row says (always a number, or null or absent in older records)."""
    hints = get_type_hints(Derived)
    entries: List[Tuple[str, Any, Any, Mapping[str, Any]]] = [
        (f.name, hints[f.name], f.default, f.metadata) for f in fields(Derived) if f.name not in _RECORDS
    ]
    entries.append(
        ("spreads", Optional[_spreads_shape()], None, {"rule": schema.Rule(), "present": "optional"})
    )
    for metric in table.METRICS:
        present = schema.PRESENT_ALWAYS if metric.always else "optional"
        kind = float if metric.always else Optional[float]
        default = MISSING if metric.always else None
        entries.append((metric.key, kind, default, {"rule": metric.rule(), "present": present}))
    required: List[Tuple[str, Any, Any]] = []
    optional: List[Tuple[str, Any, Any]] = []  # after those without a default
    for name, kind, default, metadata in entries:
        spec = (name, kind, field(default=default, metadata=metadata))
        (required if default is MISSING else optional).append(spec)
    return make_dataclass("StoredDerived", required + optional, frozen=True)


_STORED = _stored_shape()


def from_stored(doc: Any) -> Derived:
    """The record in the decoded stored object ``doc``; ``schema.Invalid`` naming the first key that breaks
    its shape."""
    stored = asdict(schema.parse_as(_STORED, doc))
    figures = MappingProxyType({metric.key: stored.pop(metric.key) for metric in table.METRICS})
    spreads = {key: Spread(**value) for key, value in (stored.pop("spreads") or {}).items() if value}
    return Derived(figures, MappingProxyType(spreads), **stored)


def peak_of(
    vendor: Vendor, model: Optional[str], precision: str, own: Mapping[str, Tuple[float, str]]
) -> Tuple[Optional[Tuple[float, str]], Optional[str]]:
    """(FLOP/s, source) of the device's dense peak at ``precision`` and, where there is none, why: the
    host's own (``own``: ``hosts[].peaks``, precision -> (FLOP/s, source)) in place of ``vendor``'s table for
    the device ``model``, which its source then names."""
    table_peak = vendor.peak_flops(model, precision) if model else None
    if precision in own:
        flops, source = own[precision]
        text = "the host's peaks: %s" % source
        if table_peak is not None:
            text += " (in place of vendor %s's %.4g FLOP/s: %s)" % (vendor.name, table_peak[0], table_peak[1])
        return (flops, text), None
    if table_peak is not None:
        return table_peak, None
    return None, "no peak for %r at %s in vendor %s or the host's peaks" % (model, precision, vendor.name)


def derive(
    result: schema.Result,
    vendor: Vendor,
    device_model: Optional[str],
    host: Optional[Mapping[str, Any]] = None,
    own_peaks: Mapping[str, Tuple[float, str]] = MappingProxyType({}),
) -> Derived:
    """The derived figures of a result with figures, MFU from the host's ``own_peaks`` or ``vendor``'s peak
    table for ``device_model`` (``peak_of``; the host's SMI, the runner's device name when the host knows
    none), the host figures from ``host`` (the host monitor's summary of the infer stage; None: not
    monitored); ``schema.Invalid`` when a figure breaks its row's bounds (an MFU beyond any physical sense
    from figures each within their own)."""
    assert result.environment is not None and result.memory is not None and result.stages.infer is not None
    model = device_model or result.environment.device.name
    precision = result.config.precision
    peak, why_none = peak_of(vendor, model, precision, own_peaks)
    inputs = table.Inputs(result, peak[0] if peak else None, host or {})
    stage_memory = result.memory.stages.infer
    record = Derived(
        figures=MappingProxyType({metric.key: metric.value(inputs) for metric in table.METRICS}),
        spreads=MappingProxyType(
            {m.key: spread for m in table.METRICS if (spread := of(m.pass_values(inputs))) is not None}
        ),
        tool=result.config.toolkit,
        precision=precision,
        acc_meaningful=result.weights.accuracy_meaningful,
        mem_source=stage_memory.mem_used_source if stage_memory is not None else None,
        device_model=model,
        peak_source=peak[1] if peak else None,
        mfu_note=why_none,
        metric_version=result.metric_version,
    )
    return from_stored(record.as_stored())
