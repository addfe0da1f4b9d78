"""How the device loader's pipeline threads hand batches on: bounded queues that a stop event interrupts,
and device work run on a stream of the thread's own (nothing on the CPU)."""

import contextlib
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Optional

import torch


def done(value: Any) -> "Future[Any]":
    """A future that already holds ``value``."""
    future: Future = Future()
    future.set_result(value)
    return future


def offer(ready: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless the consumer has stopped; whether it was put."""
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def take(source: queue.Queue, stop: threading.Event) -> Any:
    """The next item of ``source``, or None once the consumer has stopped."""
    while not stop.is_set():
        try:
            return source.get(timeout=0.05)
        except queue.Empty:
            continue
    return None


def on_stream(stream: Optional[torch.cuda.Stream]) -> Any:
    """A context that runs device work on ``stream`` (nothing on the CPU)."""
    return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()


def run_on(stream: Optional[torch.cuda.Stream], work: Callable[[], Any]) -> Any:
    """``work()`` with its device work on ``stream``."""
    with on_stream(stream):
        return work()


def drain(ready: queue.Queue) -> None:
    """Empty ``ready`` without waiting (a stopped thread blocked on putting into it goes on)."""
    while True:
        try:
            ready.get_nowait()
        except queue.Empty:
            return
