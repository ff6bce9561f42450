"""A TCP proxy on loopback that can stall: it keeps every connection open but stops moving
bytes, as a broken firewall or a hung network path would. For fault-injection tests."""

import select
import socket
import threading


class StallingProxy:
    def __init__(self, target_port, host="127.0.0.1"):
        self.target = (host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.stalled = threading.Event()
        self.closed = threading.Event()
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                client = self.listener.accept()[0]
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, left, right):
        peers = {left: right, right: left}
        while not self.closed.is_set():
            if self.stalled.is_set():
                self.closed.wait(0.1)  # hold the connections open, move nothing
                continue
            readable = select.select(list(peers), [], [], 0.1)[0]
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    for end in peers:
                        end.close()
                    return
                peers[sock].sendall(data)

    def stall(self):
        self.stalled.set()

    def close(self):
        self.closed.set()
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass
