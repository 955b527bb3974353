"""Bench driver (run as the test user): start N detached keepers, print their pids.

Until `prun run -d` starts real containers through the helper, the prun side
of the life.* benchmarks runs the product's keeper over a host process
(tests/fakes/keeper_host.py): store, keeper, control socket and logs are
real, the namespaces and FUSE server are not.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from rootless.containers.store import Container, Store, new_id
from tests.fakes.keeper_spawn import start


def main() -> None:
    n = int(sys.argv[2])
    store = Store()

    def one(i: int) -> int:
        s = Store()
        c = s.add(Container(id=new_id(), name="", image="busybox", image_id="sha256:" + "0" * 64,
                            command=["sleep", "1000"], created=time.time()))
        return start(s, c).keeper_pid
    with ThreadPoolExecutor(8) as pool:
        pids = list(pool.map(one, range(n)))
    del store
    print(" ".join(map(str, pids)))


if __name__ == "__main__":
    main()
