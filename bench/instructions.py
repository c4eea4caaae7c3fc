#!/usr/bin/env python3
"""Instructions Envoy executes per request for one bench setup, under valgrind's callgrind.

Counts, not time: other processes on the machine do not change them, so a busy machine can
still compare two builds (CPU time there varies by ±10 µs per request between rounds).
Envoy (one worker) serves `warm` requests, callgrind's counters are zeroed, then `n`
sequential keep-alive requests of the bench's Genesys call are counted and dumped.
Usage (after `make bench` built everything; needs `valgrind`):
  python3 bench/instructions.py SETUP [N] [path/to/libbcsp_guard_envoy.so]
Any setup works, the V8 ones (3, 4, 8, 13, 14) at about a minute per 1,000 requests.
BENCH_INSTR_WARMUP (200) sets the warm-up; give V8 setups a few thousand, so the count does
not include V8 compiling the module's hot functions again at a higher tier.
"""

import glob
import http.client
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def main():
    setup = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    if len(sys.argv) > 3:
        run.SETUPS[setup]["dynmod"] = os.path.abspath(sys.argv[3])
    out = os.path.join(run.OUT, f"callgrind-{setup}")
    os.makedirs(out, exist_ok=True)
    os.makedirs(run.LOGS, exist_ok=True)
    for f in glob.glob(os.path.join(out, "callgrind.out*")):
        os.remove(f)
    wrapper = os.path.join(out, "envoy-under-callgrind.sh")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={out}/"
                f"callgrind.out.%p {run.ENVOY} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    run.ENVOY = wrapper
    ready = run.wait_http
    run.wait_http = lambda *a, **k: ready(*a, **{**k, "timeout": 300})  # noqa: E731
    try:
        ports = {"upstream": run.free_port(), "metadata": run.free_port()}
        run.start("upstream", [run.UPSTREAM_BIN, "--listen", f"127.0.0.1:{ports['upstream']}"],
                  run.LOAD_CPU, os.path.join(run.LOGS, "upstream-callgrind.log"))
        run.start("emulator", [run.EMULATOR_BIN, "--listen", f"127.0.0.1:{ports['metadata']}",
                               "--lifetime", "3600"], run.LOAD_CPU,
                  os.path.join(run.LOGS, "emulator-callgrind.log"))
        ready(ports["upstream"], "/_echo")
        ready(ports["metadata"], "/healthz")
        e = run.Envoy(setup, 1, ports, f"callgrind-{setup}", policy=run.policy_json("192.0.2.2/32"))
        # Slowed down by valgrind, the first token may take a while.
        for attempt in range(60):
            try:
                run.check_setup(setup, e.port)
                break
            except SystemExit:
                if attempt == 59:
                    raise
                time.sleep(1)

        def requests(k):
            c = http.client.HTTPConnection("127.0.0.1", e.port, timeout=60)
            for _ in range(k):
                c.request("GET", run.PATH, headers=dict(run.CLIENT_HEADERS))
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    raise SystemExit(f"instructions: setup {setup} answered {r.status}")
            c.close()

        requests(int(os.environ.get("BENCH_INSTR_WARMUP", "200")))
        subprocess.run(["callgrind_control", "-z", str(e.proc.pid)], check=True,
                       capture_output=True)
        requests(n)
        subprocess.run(["callgrind_control", "-d", str(e.proc.pid)], check=True,
                       capture_output=True)
        time.sleep(1)
        e.stop()
    finally:
        run.stop_all()
    dumps = glob.glob(os.path.join(out, "callgrind.out.*.1"))
    if not dumps:
        raise SystemExit("instructions: callgrind wrote no dump")
    m = re.search(r"^summary:\s+(\d+)", open(dumps[0]).read(), re.M)
    if not m:
        raise SystemExit(f"instructions: no summary in {dumps[0]}")
    print(f"setup {setup}: {int(m.group(1)) / n:,.0f} instructions per request "
          f"({n} requests; callgrind_annotate --inclusive=yes {dumps[0]})")


if __name__ == "__main__":
    main()
