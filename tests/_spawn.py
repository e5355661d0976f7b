"""Shared by the tests whose workers run a gloo process group under ``mp.spawn`` (DDP, FSDP2)."""

import os
import sys


def exit_after_success() -> None:
    """Leave a spawned worker whose work succeeded (and is written) with exit code 0.

    torch 2.13's gloo sometimes aborts in its C++ teardown at interpreter exit ("terminate called
    without an active exception", SIGABRT) after everything is done; ``os._exit`` skips that
    teardown so ``mp.spawn`` sees success. Call it only after the work, outside any ``finally``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
