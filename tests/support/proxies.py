"""TCP proxies between a client and a node: one that freezes (a hung partner), one that drops
connections just before a reply (a flaky network). Real TLS passes through both: the channel
checks the node's certificate against the party name, not the proxy's address."""

from __future__ import annotations

import contextlib
import socket
import threading


class FreezingProxy:
    """A TCP proxy on ``host:0``; once frozen it swallows every byte and closes nothing.

    That is what a partner looks like when its machine hangs or the network drops packets:
    connections stay open, nothing comes back, new connections get no handshake.
    """

    def __init__(self, host: str) -> None:
        self.target: tuple[str, int] | None = None
        self.frozen = threading.Event()
        self._listener = socket.create_server((host, 0))
        self.address = f"{host}:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            if self.frozen.is_set() or self.target is None:
                threading.Thread(target=self._pump, args=(client, None), daemon=True).start()
                continue
            server = socket.create_connection(self.target)
            self._sockets.append(server)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket | None) -> None:
        try:
            while data := src.recv(65536):
                if dst is not None and not self.frozen.is_set():
                    dst.sendall(data)
        except OSError:
            return
        if not self.frozen.is_set():
            for sock in (src, dst):
                if sock is not None:
                    sock.close()

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


class DroppingProxy:
    """A TCP proxy on 127.0.0.1:0 to ``target`` that can drop connections before a reply.

    ``arm(n)``: the next ``n`` times the node has served the watched request (``served()``,
    called by the node's side) and then sends bytes back, both sockets of that connection are
    closed instead of forwarding them. Handshake bytes of a new connection come before the node
    can serve its request, so a reconnection is never what gets dropped.
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.connections = 0
        self.drops = 0
        self._served = 0
        self._drops_left = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, drops: int) -> None:
        with self._lock:
            self._served, self.drops, self._drops_left = 0, 0, drops

    def served(self) -> None:
        with self._lock:
            self._served += 1

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self.connections += 1
                self._sockets += [client, server]
            pair = (client, server)
            threading.Thread(
                target=self._pump, args=(client, server, False, pair), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, True, pair), daemon=True
            ).start()

    def _should_drop(self) -> bool:
        with self._lock:
            # A reply is pending for every request served since the last drop.
            if self._drops_left > 0 and self._served > self.drops:
                self.drops += 1
                self._drops_left -= 1
                return True
            return False

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        to_client: bool,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        try:
            while data := src.recv(65536):
                if to_client and self._should_drop():
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.close()
