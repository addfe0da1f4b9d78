"""The GPU's kernels and copies in a torch.profiler trace, by total time, as a Markdown table."""

from typing import Any


def print_kernel_table(prof: Any, per: float, unit: str, rows: int) -> float:
    """Print the ``rows`` costliest kernels and copies of ``prof`` (GPU time in all, and a ``unit``:
    ``per`` units in the trace); return their whole GPU time a unit (us)."""
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA" or e.self_device_time_total > 0]
    events.sort(key=lambda e: e.self_device_time_total, reverse=True)
    total = sum(e.self_device_time_total for e in events)
    print(f"| kernel or copy | calls a {unit} | GPU us a {unit} | share |")
    print("|---|---|---|---|")
    for event in events[:rows]:
        name = event.key if len(event.key) <= 70 else event.key[:67] + "..."
        time_us = event.self_device_time_total
        print(f"| {name} | {event.count / per:.1f} | {time_us / per:.2f} | {time_us / total:.1%} |")
    return total / per
