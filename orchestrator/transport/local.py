"""Run commands and copy files on the machine the orchestrator runs on."""

import contextlib
import errno
import io
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Callable, List, Optional

from orchestrator.safeio import bounded
from orchestrator.transport.base import (
    FetchRefused,
    Process,
    ProcessTransport,
    Readable,
    TransportError,
    atomic_path,
    private_file,
)


class LocalTransport(ProcessTransport):
    """Execs argv directly (no shell); each command leads its own process group."""

    def __init__(self, host_name: str = "local", kill_grace: float = 5.0) -> None:
        self.host = host_name
        self.kill_grace = kill_grace

    def start(self, argv: List[str]) -> Process:
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return _NotStarted(argv[0], exc)
        return _LocalProcess(popen, self.kill_grace)

    def put(
        self,
        local: "Path | Readable",
        remote: str,
        mode: int = 0o644,
        progress: Optional[Callable[[int], None]] = None,
    ) -> None:
        try:
            with atomic_path(Path(remote), mode) as tmp, tmp.open("wb") as sink:
                if isinstance(local, (str, os.PathLike)):
                    with open(local, "rb") as source:
                        shutil.copyfileobj(source, sink)
                else:
                    shutil.copyfileobj(local, sink)
                sent = sink.tell()
        except OSError as exc:
            raise self._copy_error(getattr(local, "name", local), remote, exc) from exc
        if progress is not None:
            progress(sent)

    def get(self, remote: str, local: Path, max_bytes: int, timeout: Optional[float] = None) -> None:
        """Read through ``bounded.read_regular`` (no link, regular files only, at most ``max_bytes``): a
        local read of a bounded regular file does not wait, so ``timeout`` is never reached."""
        try:
            data = bounded.read_regular(remote, max_bytes)
            with private_file(Path(local)) as handle:
                handle.write(data)
        except bounded.Refused as exc:
            raise FetchRefused(f"{self.host}: {remote} refused: {exc}") from None
        except OSError as exc:
            raise self._copy_error(remote, local, exc) from exc

    def _copy_error(self, source: object, dest: object, exc: OSError) -> TransportError:
        return TransportError(f"{self.host}: cannot copy {source} to {dest}: {exc.strerror or exc}")


class _LocalProcess(Process):
    def __init__(self, popen: "subprocess.Popen[bytes]", grace: float) -> None:
        assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None  # 3 PIPEs
        self._popen = popen
        self._grace = grace
        self._stdin = popen.stdin
        self.stdout = popen.stdout
        self.stderr = popen.stderr

    def feed(self, data: bytes) -> None:
        try:
            self._stdin.write(data)
        except BrokenPipeError:
            pass
        finally:
            with contextlib.suppress(BrokenPipeError):
                self._stdin.close()

    def poll(self) -> Optional[int]:
        return self._popen.poll()

    def kill(self) -> None:
        """TERM the group, wait up to the grace period for the leader, then KILL what is left."""
        group = self._popen.pid  # start_new_session: the leader's pid is the group id
        _signal_group(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(self._grace)
        _signal_group(group, signal.SIGKILL)
        self._popen.wait()


class _NotStarted(Process):
    """A program that could not be exec'd: exits 127 (not found) or 126, like a shell reports it."""

    def __init__(self, program: str, exc: OSError) -> None:
        self._returncode = 127 if exc.errno == errno.ENOENT else 126
        self.stdout = io.BytesIO()
        self.stderr = io.BytesIO((f"{program}: {exc.strerror or exc}\n").encode())

    def feed(self, data: bytes) -> None:
        pass

    def poll(self) -> Optional[int]:
        return self._returncode

    def kill(self) -> None:
        pass


def _signal_group(group: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)
