"""A TCP forwarder on 127.0.0.1, for tests of a server that becomes reachable only after a while."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """Listens on ``port`` of 127.0.0.1 and forwards each connection to ``target`` (host, port)."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", port))
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Refuse new connections and cut the open ones, as a server going down would."""
        with self._lock:
            sockets = [self._listener, *self._sockets]
        # shutdown() first: a close() alone wakes neither the accept() nor a recv() blocked on the socket,
        # and the connection stays up while they hold it.
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for sock in sockets:
            sock.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:  # the other side or stop() closed it
        pass
