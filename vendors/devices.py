"""Devices as a command names them: host indices, or placeholders for indices known only on the node."""

from typing import List, Sequence, Union


class DevicePlaceholder:
    """A device index not known yet (Slurm allocates it on the node): it renders as ``token``, which the
    launcher replaces with the index where it is known."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __str__(self) -> str:
        return self.token

    def __repr__(self) -> str:
        return f"DevicePlaceholder({self.token!r})"


#: a device in a command: a host index, or a placeholder for one
DeviceRef = Union[int, DevicePlaceholder]


def device_indices(devices: Sequence[DeviceRef]) -> List[DeviceRef]:
    """``devices`` as a checked list: non-negative integers (or placeholders), no repeats (ValueError
    otherwise)."""
    out: List[DeviceRef] = []
    for device in devices:
        if isinstance(device, DevicePlaceholder):
            out.append(device)
            continue
        if not isinstance(device, int) or isinstance(device, bool) or device < 0:
            raise ValueError(f"device index must be a non-negative integer, got {device!r}")
        out.append(device)
    if len({str(d) for d in out}) != len(out):
        raise ValueError("device indices repeat: {}".format(",".join(str(d) for d in out)))
    return out
