"""Issue 32, item 4: ``hosts[].peaks`` (precision -> FLOP/s and a source) gives MFU a denominator where the
vendor's table has none, or takes that table's place, saying so in the peak's source."""

import re
from pathlib import Path

import pytest

import vendors
from orchestrator.config.load import load_cluster
from orchestrator.metrics.derived import peak_of
from orchestrator.model.fields import ConfigError

CLUSTER = """
hosts:
  - name: r200
    address: local
    vendor: kunlunxin
    data: {path: /data/val}
    weights: random
    peaks:
      fp16: {flops: 1.28e14, source: "R200 datasheet, table 2 (dense)"}
cases:
  - toolkit: xtcl
    precision: fp16
"""
OWN = {"fp16": (1.28e14, "R200 datasheet, table 2 (dense)")}


def load(tmp_path: Path, text: str = CLUSTER):
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return load_cluster(path)


def test_the_host_peaks_are_read_from_the_cluster_file(tmp_path):
    peaks = load(tmp_path).hosts[0].peaks
    assert {p: (v.flops, v.source) for p, v in peaks.items()} == OWN


def test_a_host_peak_where_the_vendor_has_none_names_its_source():
    peak, why = peak_of(vendors.get("kunlunxin"), "R200", "fp16", OWN)
    assert why is None and peak == (1.28e14, "the host's peaks: R200 datasheet, table 2 (dense)")
    none, why = peak_of(vendors.get("kunlunxin"), "R200", "fp32", OWN)
    assert none is None and why == "no peak for 'R200' at fp32 in vendor kunlunxin or the host's peaks"


def test_a_host_peak_in_place_of_the_vendor_table_says_so():
    table_flops, table_source = vendors.get("nvidia").peak_flops("NVIDIA H200", "fp16")
    peak, why = peak_of(vendors.get("nvidia"), "NVIDIA H200", "fp16", {"fp16": (7e14, "power-capped, lab")})
    assert why is None and peak is not None and peak[0] == 7e14
    assert peak[1] == "the host's peaks: power-capped, lab (in place of vendor nvidia's %.4g FLOP/s: %s)" % (
        table_flops,
        table_source,
    )
    assert peak_of(vendors.get("nvidia"), "NVIDIA H200", "fp32", {"fp16": (7e14, "x")})[0] == (
        vendors.get("nvidia").peak_flops("NVIDIA H200", "fp32")
    )


@pytest.mark.parametrize(
    "peaks, message",
    [
        ('{fp64: {flops: 1e14, source: "x"}}', r"hosts\[0\]\.peaks\.fp64: unknown key; did you mean fp16\?"),
        ("{fp16: {flops: 1e14}}", r"hosts\[0\]\.peaks\.fp16\.source: required but not given"),
        (
            '{fp16: {flops: -1, source: "x"}}',
            r"hosts\[0\]\.peaks\.fp16\.flops: must be more than 0 \(got -1\)",
        ),
        ('{fp16: {flops: 1e14, source: ""}}', r"hosts\[0\]\.peaks\.fp16\.source: must be at least 1 char"),
    ],
)
def test_a_bad_peak_is_refused_in_one_line_naming_the_field(tmp_path, peaks, message):
    text = CLUSTER.replace(
        '\n      fp16: {flops: 1.28e14, source: "R200 datasheet, table 2 (dense)"}', " " + peaks
    )
    with pytest.raises(
        ConfigError, match=r"^%s:\d+: %s" % (re.escape(str(tmp_path / "hosts.yaml")), message)
    ) as info:
        load(tmp_path, text)
    assert "\n" not in str(info.value)
