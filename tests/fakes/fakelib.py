"""Shared plumbing of the fake `tart` and `limactl` used by hutch's tests.

Each fake records every invocation (its argv, one JSON line) in the file named
by its log variable, and forwards connections from a host Unix socket to a
real hutch-agent's socket, as Tart's control.sock and Lima's socket
forwarding do.
"""

import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time


def record(log_var):
    """Appends this invocation's arguments to the log named by $log_var."""
    path = os.environ.get(log_var)
    if not path:
        return
    line = json.dumps({"argv": sys.argv[1:]}) + "\n"
    with open(path, "a") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.write(line)


def fail(message, code=1):
    print(message, file=sys.stderr)
    sys.exit(code)


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def read_pid(path):
    try:
        with open(path) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def stop_pid(pid, timeout=10.0):
    """SIGTERM, then wait until the process is gone (it may not be our child)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def _pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _serve(conn, target):
    if not target:
        conn.close()  # nothing listens in the "guest": the proxy hangs up
        return
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(target)
    except OSError:
        conn.close()
        upstream.close()
        return
    t = threading.Thread(target=_pipe, args=(conn, upstream), daemon=True)
    t.start()
    _pipe(upstream, conn)
    t.join()
    conn.close()
    upstream.close()


def forward_forever(listen_path, target, cleanup, on_ready=None):
    """Listens on listen_path and splices each connection to target (a Unix
    socket path, or None: connections are accepted and closed). Calls
    on_ready() once listening. Runs until SIGTERM/SIGINT, then calls cleanup()
    and exits 0."""

    def stop(_sig, _frame):
        cleanup()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(listen_path)
    except FileNotFoundError:
        pass
    server.bind(listen_path)
    server.listen(64)
    if on_ready:
        on_ready()
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_serve, args=(conn, target), daemon=True).start()
