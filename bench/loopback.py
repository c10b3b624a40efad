"""Blocking TLS over loopback sockets: the client side of the socket rows, with
the server (``bench.server``, same library) in its own process."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Tuple

import commssl

from .floor import Floor
from .lib_cpython import default_trust
from .pki import Chain

CHUNK = 64 * 1024
REPO = Path(__file__).resolve().parent.parent


def cpus() -> Optional[Tuple[int, int]]:
    """Two CPUs this process may run on (client, server), or None: with them the
    client and the server of a socket row each keep a CPU of their own, so the two
    sides never queue for one CPU (the bulk rows still swing about 2x from one
    connection to the next on this shared VM: read their ratio over many runs)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    mine = sorted(os.sched_getaffinity(0))
    return (mine[0], mine[1]) if len(mine) >= 2 else None


def pin(pid: int, cpu: Optional[int]) -> None:
    """Keep process ``pid`` (0: this one) on ``cpu`` (None: leave it be)."""
    if cpu is not None:
        os.sched_setaffinity(pid, {cpu})


class Server:
    """A ``bench.server`` process for one library; for ``floor``, the C floor's
    ``floor serve`` (``floor_exe``), which serves the same requests."""

    def __init__(self, lib: str, chain: Chain, floor_exe: Optional[Path] = None,
                 cpu: Optional[int] = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        if lib == "floor":
            if floor_exe is None:
                raise ValueError("the floor server needs floor_exe")
            cmd = [str(floor_exe), "serve", str(chain.directory)]
        else:
            cmd = [sys.executable, "-m", "bench.server", lib, str(chain.directory)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, env=env,
                                      text=True)
        pin(self._proc.pid, cpu)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"the {lib} benchmark server did not start")
        self.port = int(line)

    def close(self, timeout: Optional[float] = 10) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # the server exits when its stdin closes
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)


class CommsslClient:
    """Blocking commssl streams: ``open_tcp_stream`` with a client context."""

    def __init__(self, chain: Chain, port: int) -> None:
        self.port = port
        self.ctx = commssl.make_ssl_ctx(True, "client")
        commssl.ssl_ctx_load_verify_locations(self.ctx, chain.root)
        self.chunk = bytes(CHUNK)

    def _open(self) -> commssl.SocketStream:
        return commssl.open_tcp_stream("127.0.0.1", self.port, ssl_ctx=self.ctx,
                                       tlsext_host_name="localhost", timeout=30)

    def handshake(self) -> None:
        stream = self._open()
        try:
            stream.write(b"h")
            if stream.read(1) != b"k":
                raise RuntimeError("the server did not answer")
        finally:
            stream.close()

    def bulk(self, total: int) -> float:
        """Seconds to send ``total`` bytes (whole chunks) and get the answer."""
        stream = self._open()
        try:
            chunk, write = self.chunk, stream.write
            t0 = time.perf_counter()
            write(b"b" + total.to_bytes(8, "big"))
            for _ in range(total // CHUNK):
                write(chunk)
            if stream.read(1) != b"k":
                raise RuntimeError("the server did not answer")
            return time.perf_counter() - t0
        finally:
            stream.close()

    def close(self) -> None:
        commssl.destroy_ssl_ctx(self.ctx)


class CPythonClient:
    """Blocking ``ssl.SSLSocket``s, configured as the commssl client."""

    def __init__(self, chain: Chain, port: int) -> None:
        self.port = port
        cafile, capath = default_trust()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
        self.ctx.load_verify_locations(cafile=cafile or None, capath=capath or None)
        self.ctx.load_verify_locations(cafile=str(chain.root))
        self.chunk = bytes(CHUNK)

    def _open(self) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        try:
            return self.ctx.wrap_socket(sock, server_hostname="localhost")
        except BaseException:
            sock.close()
            raise

    def handshake(self) -> None:
        with self._open() as tls:
            tls.sendall(b"h")
            if tls.recv(1) != b"k":
                raise RuntimeError("the server did not answer")

    def bulk(self, total: int) -> float:
        with self._open() as tls:
            chunk, sendall = self.chunk, tls.sendall
            t0 = time.perf_counter()
            sendall(b"b" + total.to_bytes(8, "big"))
            for _ in range(total // CHUNK):
                sendall(chunk)
            if tls.recv(1) != b"k":
                raise RuntimeError("the server did not answer")
            return time.perf_counter() - t0

    def close(self) -> None:
        pass


class FloorClient:
    """The C floor's client (bench/floor.c ``sockhs`` / ``sockbulk``): the loop runs
    in C, so a handshake sample is one command for all ``n``."""

    def __init__(self, floor: Floor, port: int) -> None:
        self.floor, self.port = floor, port

    def handshake(self) -> None:
        self.floor.sock_handshakes(self.port, 1)

    def handshakes(self, n: int) -> float:
        """Wall seconds per handshake over ``n``."""
        return self.floor.sock_handshakes(self.port, n)

    def bulk(self, total: int) -> float:
        return self.floor.bulk(self.port, total)

    def close(self) -> None:
        pass
