"""The ``optimlab`` command line, one of whose runs is held, for the kill tests:

    python held_sweep.py N ARGS...

runs ``optimlab ARGS...``; once this process has completed N runs, the next one prints ``HELD``
and waits inside the run (its trial running, its heartbeats going) until SIGUSR1 lets it go on,
unless the test kills it there. Nothing else differs from ``optimlab ARGS...``: the runs are the
command's own."""

import signal
import sys
import time

from optimlab import cli
from optimlab.lab import protocol

HANG = 1800  # seconds: never let go, the test has failed


def main(hold_after: int, argv: list[str]) -> int:
    execute, done, released = protocol.execute, [0], []
    signal.signal(signal.SIGUSR1, lambda *_: released.append(True))

    def held_once(run: dict):
        if done[0] == hold_after:
            print("HELD", flush=True)
            deadline = time.time() + HANG
            while not released and time.time() < deadline:
                time.sleep(0.05)
        result = execute(run)
        done[0] += 1
        return result

    protocol.execute = held_once
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2:]))
