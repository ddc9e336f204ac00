"""First contact: ``scmix fit`` on a fresh installation (an empty numba cache), then a
first Poisson fit after it, each in a fresh process, as a newcomer runs them.

    python benchmarks/first_run.py [--repeats 3]

Prints the wall time of each, and of the same commands once the kernels are cached (the
difference is compilation). Targets (issue 17): at most 15 s and 8 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCMIX = Path(sys.executable).with_name("scmix")


def run(args: list[str], cache: str, folder: str) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    start = time.perf_counter()
    subprocess.run([str(SCMIX), *args], cwd=folder, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    repeats = parser.parse_args().repeats
    nb = ["fit", "-o", "demo.h5ad", "-q"]
    poisson = ["fit", "-o", "demo_poisson.h5ad", "-q", "--family", "poisson"]
    header = ("run", "first scmix fit", "then poisson", "cached fit", "cached poisson")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (4, 16, 13, 11, 15), strict=True)))
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as folder:
            first = run(nb, cache, folder)
            first_poisson = run(poisson, cache, folder)
            cached = run(nb, cache, folder)
            cached_poisson = run(poisson, cache, folder)
        print(
            f"{repeat + 1:>4} {first:>14.1f} s {first_poisson:>11.1f} s "
            f"{cached:>9.1f} s {cached_poisson:>13.1f} s"
        )


if __name__ == "__main__":
    main()
