"""hold_malloc_arenas: the service's threads share two glibc malloc arenas instead of one each."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from orchestrator.server import MALLOC_ARENAS, hold_malloc_arenas

# Threads that allocate at once, then glibc's own account of its arenas (malloc_info writes one <heap> per arena).
ARENAS_USED = textwrap.dedent("""
    import ctypes, os, sys, tempfile, threading
    from orchestrator.server import hold_malloc_arenas
    if sys.argv[1] == "held":
        assert hold_malloc_arenas()
    start = threading.Barrier(8)
    def allocate():
        start.wait()
        for _ in range(2000):
            bytearray(64 * 1024)
    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for thread in threads: thread.start()
    for thread in threads: thread.join()
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    with tempfile.NamedTemporaryFile() as out:
        stream = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, ctypes.c_void_p(stream))
        libc.fclose(ctypes.c_void_p(stream))
        print(open(out.name).read().count("<heap nr="))
""")


def arenas_used(mode: str) -> int:
    environment = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", ARENAS_USED, mode], capture_output=True, text=True, check=True,
                          env=environment, cwd=os.getcwd())
    return int(done.stdout.strip())


def test_threads_allocating_at_once_share_the_held_arenas():
    assert arenas_used("held") <= MALLOC_ARENAS
    assert arenas_used("default") > MALLOC_ARENAS  # the same threads without the hold: one arena each, or near


def test_an_operators_malloc_arena_max_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not hold_malloc_arenas()
