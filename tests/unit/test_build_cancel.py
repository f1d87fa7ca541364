"""Unit tier: a build in flight can be hung up, waking the thread that reads its output (real sockets).

The Docker daemon stops a build whose client hangs up; an interrupted session
does that (:func:`harness.images.cancel_builds`) for the builds its threads
run, which a ``KeyboardInterrupt`` in the main thread never reaches.
"""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

from harness import images


def _response(path: str, sock: socket.socket) -> SimpleNamespace:
    """What the requests response hook sees: the request's path and the connection's socket."""
    return SimpleNamespace(request=SimpleNamespace(path_url=path),
                           raw=SimpleNamespace(connection=SimpleNamespace(sock=sock)))


def test_cancel_builds_wakes_a_thread_reading_a_build() -> None:
    """The build's socket is shut down: a thread blocked in recv sees the end of the stream at once."""
    ours, daemon_side = socket.socketpair()
    build = images._InFlight()
    response = _response("/v1.41/build?t=x", ours)
    assert build.response_hook(response) is response
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(ours.recv(10)))
    with images._IN_FLIGHT_LOCK:
        images._IN_FLIGHT.add(build)
    try:
        reader.start()
        time.sleep(0.2)
        assert reader.is_alive(), "blocked reading, as a build thread is"
        assert images.cancel_builds() == 1
        reader.join(5)
        assert not reader.is_alive()
        assert got == [b""]
        assert build.cancelled
        assert daemon_side.recv(10) == b"", "the daemon side sees the hang-up"
    finally:
        with images._IN_FLIGHT_LOCK:
            images._IN_FLIGHT.discard(build)
        ours.close()
        daemon_side.close()


def test_a_build_cancelled_before_its_response_hangs_up_when_it_comes() -> None:
    ours, daemon_side = socket.socketpair()
    build = images._InFlight()
    build.cancel()  # still uploading the context: nothing to shut down yet
    build.response_hook(_response("/v1.41/images/x/json", daemon_side))  # not the build's response: left alone
    assert build.sock is None
    build.response_hook(_response("/v1.41/build", ours))
    try:
        assert daemon_side.recv(10) == b""
    finally:
        ours.close()
        daemon_side.close()
