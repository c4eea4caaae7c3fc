#!/usr/bin/env python3
"""`make bench`: bcsp-guard (Wasm and dynamic module) against no filter, the native Envoy chain
and the Wasm floor.

Runs real Envoy (one worker, pinned to CPU 0) in five setups, interleaved A B C D E A B C D E ...,
with wrk, the upstream and the metadata emulator pinned to CPU 1; then Envoy memory per worker,
metadata fetches per token refresh with 4 workers, the policy core under criterion and the
.wasm size. Writes bench/RESULTS.md (keeping its human notes block) and target/bench/results.json.

Expects the binaries `make bench` builds; knobs (environment):
  BENCH_ROUNDS (6)  BENCH_SECONDS (4, per load point)  BENCH_WARMUP (2)
  BENCH_LOW_C (4)  BENCH_HIGH_C (64)
  BENCH_TOKEN_SECONDS (45)  BENCH_TOKEN_LIFETIME (20)  BENCH_TOKEN_MARGIN (10)  BENCH_TOKEN_SKEW (5)
  BENCH_NATIVE_TOKEN_LIFETIME (70)
  BENCH_EXTRA_WASM=path[:label]  adds setup X: the same bcsp-guard config with another .wasm
                                 (for before/after comparisons in the same interleaved run)
  BENCH_EXTRA_DYNMOD=path[:label]  adds setup Y: setup 5 with another libbcsp_guard_envoy.so
  BENCH_ACCESS_LOG=1  adds setups 6 and 7: setups 4 and 5 plus the shipped JSON access log with
                 the audit fields (6/4 and 7/5: what printing the audit trail costs)
  BENCH_AUDIT_OFF=1  adds setups 8 and 9: setups 4 and 5 with `"audit_fields": false` (8/4 and
                 9/5: what exporting the audit record costs when nothing prints it)
  BENCH_MODULE_FLOOR=1  adds the floors that do bcsp-guard's mandatory Envoy calls and nothing
                 else: setups 10, 11, 12, the dynamic-module floor (bench/floor-module) doing
                 nothing; reading the headers, removing the credential, setting token and key id,
                 clearing the route cache; and that plus the 6 access-log fields; setups 13 and
                 14, the Wasm floor (bench/floor-filter) with the same edits, without and with
                 the access-log properties. 5/12 and 4/14: each build against its own floor
  BENCH_INSTRUCTIONS=1  after the timed rounds, count the instructions Envoy executes per
                 request in every setup under callgrind (bench/instructions.py; needs valgrind,
                 which `make bench` then installs; about a minute per setup): counts do not move
                 with the machine's speed, so the report judges the targets by them too.
                 `bench/run.py --instructions` adds them to the last run's results.json
  BENCH_SETUPS=1,2,3,4,5  which of the main setups to run (default all; 1 is always kept)
  BENCH_RETRIES (3)  BENCH_RETRY_BUDGET (10)  BENCH_FOREIGN_MAX (8): repeat a run disturbed
                 by other processes (foreign CPU time on either CPU above BENCH_FOREIGN_MAX %)
  BENCH_QUIET_BUDGET (120): seconds the whole run may spend waiting for a quiet machine
  BENCH_SKIP=tokens,memory,criterion  skip parts (smoke runs)
  BENCH_PROBE=1  also measure single proxy-wasm host calls on V8 (bench/probe-filter, ~1 min)
  BENCH_SCALING=1  add the scaling table: bcsp-guard and native RBAC with 20 / 2,000 / 10,000
                 CIDRs and 1 / 16 / 64 keys (each its own header), interleaved with the setups
                 above, saturation only (~1 min per round)
  BENCH_RESULTS (bench/RESULTS.md)
"""

import datetime
import hashlib
import http.client
import ipaddress
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
OUT = os.path.join(ROOT, "target", "bench")
LOGS = os.path.join(OUT, "logs")

def _pinned_envoy_version():
    """ENVOY_VERSION from the Makefile: the one place that names the release."""
    with open(os.path.join(ROOT, "Makefile")) as f:
        for line in f:
            key, sep, value = line.partition(":=")
            if sep and key.strip() == "ENVOY_VERSION":
                return value.strip()
    raise SystemExit("the Makefile names no ENVOY_VERSION")


ENVOY = os.environ.get("BENCH_ENVOY") or os.path.join(
    ROOT, ".venv/envoy-%s/envoy/_bin/envoy" % _pinned_envoy_version())
BCSP_WASM = os.path.join(ROOT, "target/wasm32-wasip1/release/bcsp_guard.wasm")
BCSP_DYNMOD = os.path.join(ROOT, "target/release/libbcsp_guard_envoy.so")
FLOOR_WASM = os.path.join(OUT, "wasm32-wasip1/release/bench_floor_filter.wasm")
FLOOR_DYNMOD = os.path.join(OUT, "release/libbench_floor_module.so")
PROBE_WASM = os.path.join(OUT, "wasm32-wasip1/release/bench_probe_filter.wasm")
UPSTREAM_BIN = os.path.join(OUT, "release/bench-upstream")
EMULATOR_BIN = os.path.join(ROOT, "target/release/metadata-emulator")
POLICY_FILE = os.path.join(BENCH, "configs/bcsp-guard-policy.json")

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "4"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
LOW_C = int(os.environ.get("BENCH_LOW_C", "4"))
HIGH_C = int(os.environ.get("BENCH_HIGH_C", "64"))
TOKEN_SECONDS = int(os.environ.get("BENCH_TOKEN_SECONDS", "45"))
# Both setups refresh every 10 s: bcsp-guard with a 20 s token and a 10 s margin; gcp_authn
# treats a token as expired 60 s before its `exp` (with a lifetime under 60 s it never caches
# and fetches on every request), so its emulator mints 70 s tokens.
TOKEN_LIFETIME = int(os.environ.get("BENCH_TOKEN_LIFETIME", "20"))
TOKEN_MARGIN = int(os.environ.get("BENCH_TOKEN_MARGIN", "10"))
TOKEN_SKEW = int(os.environ.get("BENCH_TOKEN_SKEW", "5"))
NATIVE_TOKEN_LIFETIME = int(os.environ.get("BENCH_NATIVE_TOKEN_LIFETIME", "70"))
SKIP = set(filter(None, os.environ.get("BENCH_SKIP", "").split(",")))
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(BENCH, "RESULTS.md"))
EXTRA = os.environ.get("BENCH_EXTRA_WASM", "")
EXTRA_DYNMOD = os.environ.get("BENCH_EXTRA_DYNMOD", "")
ACCESS_LOG = os.environ.get("BENCH_ACCESS_LOG", "") not in ("", "0")
AUDIT_OFF = os.environ.get("BENCH_AUDIT_OFF", "") not in ("", "0")
MODULE_FLOOR = os.environ.get("BENCH_MODULE_FLOOR", "") not in ("", "0")
# A run is repeated (up to RETRIES times) when other processes took more than FOREIGN_MAX % of
# Envoy's CPU during it, or Envoy got less than 90 % of its CPU at saturation.
# At most RETRY_BUDGET repeats in all, so a busy machine cannot stretch the run unboundedly.
RETRIES = int(os.environ.get("BENCH_RETRIES", "3"))
RETRY_BUDGET = int(os.environ.get("BENCH_RETRY_BUDGET", "10"))
FOREIGN_MAX = float(os.environ.get("BENCH_FOREIGN_MAX", "8"))
PROBE = os.environ.get("BENCH_PROBE", "") not in ("", "0")
INSTRUCTIONS = os.environ.get("BENCH_INSTRUCTIONS", "") not in ("", "0")
SCALING = os.environ.get("BENCH_SCALING", "") not in ("", "0")
PROBE_N = 100
# Targets from the issue that added the dynamic module (same interleaved run, saturation).
WASM_FLOOR_TARGET = 0.90  # Wasm build / Wasm floor
DYNMOD_NATIVE_TARGET = 1.05  # dynamic module / native chain (and less Envoy CPU per request)
PROBE_OPS = ["none", "get_header", "get_map", "set_header", "set_token", "remove_absent",
             "time", "metric", "property", "sha256", "alloc14", "first_change",
             "none@300", "first_change@300"]
# Ops that only mean something once per request (their cost is not per call).
PROBE_ONCE = {"first_change"}
# `op@N`: the same op with N regex routes ahead of the catch-all route.

ENVOY_CPU = "0"  # Envoy alone on CPU 0
LOAD_CPU = "1"  # wrk, upstream, metadata emulator on CPU 1

# The secret of key genesys-2026q4 (bench-only; its SHA-256 is in the policy file).
SECRET = "E4aOTJqw/r/R+dMx+MD90UT7P9cHXu03KQpeMXOKYLc="
KEY_ID = "genesys-2026q4"
PATH = "/bots/bench-bot"
# What a Genesys call carries (wrk adds host): 11 headers from the client; Envoy adds
# x-forwarded-proto, x-request-id, x-envoy-external-address and appends to x-forwarded-for.
CLIENT_HEADERS = [
    ("user-agent", "Genesys-Cloud-Bot-Connector/2.0"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate"),
    ("content-type", "application/json"),
    ("x-bcsp-key", SECRET),
    ("x-forwarded-for", "34.200.73.250"),
    ("x-genesys-conversation-id", "0f9a1c2e-5b7d-4e21-9c3a-8d6f0b1e2a47"),
    ("x-genesys-bot-session-id", "a83c1d52-7e4f-4b9a-b0c6-2f5e8d9a1b34"),
    ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("cache-control", "no-cache"),
]

# Every Envoy setup. `kind` says what check_setup expects of it: "none" and "floor" pass the
# credential through; "native" (RBAC, 403) and "guard" (bcsp-guard, 401 and x-bcsp-key-id) strip
# it and inject a token. A "guard" setup gets the policy; `artifact` "dynmod" loads
# libbcsp_guard_envoy.so instead of the .wasm; `wasm` overrides the module; `values` adds
# template values (e.g. HCM_EXTRA, one more connection-manager field in setups 4 and 5);
# `tokens` puts it in the token-fetch part. Another setup is one entry here (and its id in
# MAIN_SETUPS and RATIOS, or appended in main() behind a knob), e.g.
#   SETUPS["6"] = {**SETUPS["4"], "name": "bcsp-guard, Wasm, access log",
#                  "values": {"HCM_EXTRA": "access_log: [...]"}, "tokens": False}
SETUPS = {
    "1": {"name": "no filter", "config": "envoy-1-nofilter.yaml", "kind": "none"},
    "2": {"name": "native chain (RBAC + gcp_authn + header removal)",
          "config": "envoy-2-native.yaml", "kind": "native", "tokens": True},
    "3": {"name": "Wasm floor (read one header)", "config": "envoy-3-floor.yaml", "kind": "floor"},
    "4": {"name": "bcsp-guard, Wasm (full policy)", "config": "envoy-4-bcsp-guard.yaml",
          "kind": "guard", "tokens": True},
    "5": {"name": "bcsp-guard, dynamic module (full policy)", "config": "envoy-5-dynmod.yaml",
          "kind": "guard", "artifact": "dynmod", "tokens": True},
    "P": {"name": "host-call probe", "config": "envoy-probe.yaml", "kind": "floor"},
}
# Setups 4 and 5 without the access-log export (BENCH_AUDIT_OFF; bench/instructions.py 9).
for _k, _base in (("8", "4"), ("9", "5")):
    SETUPS[_k] = {**SETUPS[_base], "name": SETUPS[_base]["name"] + ", audit_fields off",
                  "policy_extra": {"audit_fields": False}, "tokens": False}
# The dynamic-module floor (BENCH_MODULE_FLOOR; bench/instructions.py 10, 11, 12): the mode
# is its filter_config.
for _k, _mode, _kind, _what in (
        ("10", "pass", "floor", "continue"),
        ("11", "edits", "mandatory", "header read, 3 header edits, route cache cleared"),
        ("12", "audit", "mandatory", "setup 11 + the 6 access-log fields")):
    SETUPS[_k] = {"name": f"dynamic-module floor ({_what})", "config": "envoy-5-dynmod.yaml",
                  "kind": _kind, "artifact": "dynmod", "dynmod": FLOOR_DYNMOD,
                  "values": {"DYNMOD_NAME": "bench_floor_module",
                             "BCSP_GUARD_POLICY": json.dumps(_mode)}}
# The Wasm floor doing the same mandatory work (BENCH_MODULE_FLOOR too): 4/14 as 5/12.
for _k, _mode, _what in (("13", "edits", "header map read, 3 header edits"),
                         ("14", "audit", "setup 13 + the 6 access-log properties")):
    SETUPS[_k] = {"name": f"Wasm floor ({_what})", "config": "envoy-3-floor.yaml",
                  "kind": "mandatory", "values": {"FLOOR_MODE": _mode}}
# What bench/instructions.py can count: the setups defined here, not those main() adds.
COUNTABLE = set(SETUPS) - {"P"}
MAIN_SETUPS = ["1", "2", "3", "4", "5"]
# Shown as ratios against each other (numerator, denominator), when both ran.
RATIOS = [("5", "12"), ("9", "11"), ("4", "14"), ("8", "13"), ("13", "3"), ("14", "3"),
          ("10", "1"), ("11", "1"), ("12", "2"), ("6", "4"), ("7", "5"), ("8", "4"), ("9", "5"),
          ("8", "3"), ("9", "2"),
          ("4", "1"), ("4", "2"), ("4", "3"), ("5", "1"), ("5", "2"), ("5", "3"), ("5", "4"),
          ("2", "1"), ("3", "1")]

# The audit fields of the shipped access log (envoy.yaml; docs/OPERATIONS.md), per build.
AUDIT_FIELDS = ["key_id", "verdict", "reason", "client", "client_source", "route", "audience",
                "lockout"]


def access_log_setup(base, artifact):
    """Setup `base` plus a JSON access log to stdout with the request and audit fields."""
    op = (lambda f: f"%FILTER_STATE(wasm.bcsp_guard.{f}:PLAIN)%") if artifact == "wasm" else \
        (lambda f: f"%DYNAMIC_METADATA(bcsp_guard:{f})%")
    fmt = {"time": "%START_TIME%", "request_id": "%REQ(X-REQUEST-ID)%", "method": "%REQ(:METHOD)%",
           "path": "%REQ(:PATH):100%", "status": "%RESPONSE_CODE%", "duration_ms": "%DURATION%",
           **{f: op(f) for f in AUDIT_FIELDS}}
    log_yaml = json.dumps([{"name": "envoy.access_loggers.stdout", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "log_format": {"json_format": fmt}}}])
    return {**SETUPS[base], "name": SETUPS[base]["name"] + " + JSON access log",
            "values": {"HCM_EXTRA": f"access_log: {log_yaml}"}, "tokens": False}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Processes: only the ones started here are ever stopped, by their own handle.

class Proc:
    def __init__(self, name, argv, cpu, logfile, env=None):
        self.name = name
        self.log = open(logfile, "w")
        self.p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=self.log,
                                  stderr=subprocess.STDOUT, cwd=ROOT,
                                  env={**os.environ, **env} if env else None)
        self.pid = self.p.pid  # taskset execs the program: same pid

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()


STARTED = []


def start(name, argv, cpu, logfile, env=None):
    p = Proc(name, argv, cpu, logfile, env)
    STARTED.append(p)
    return p


def stop(p):
    p.stop()
    if p in STARTED:
        STARTED.remove(p)


def stop_all():
    for p in list(STARTED):
        stop(p)


def wait_http(port, path, ok=lambda status, body: status == 200, timeout=20.0, what=""):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            status, _, body = get(port, path, {})
            if ok(status, body):
                return
            last = status
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise SystemExit(f"bench: {what or path} on port {port} not ready after {timeout}s ({last})")


def get(port, path, headers, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        body = r.read().decode("utf-8", "replace")
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Envoy configs

def render(template, values):
    text = open(os.path.join(BENCH, "configs", template)).read()

    def sub(m):
        if m.group(1) not in values:
            raise SystemExit(f"bench: {template}: no value for ${{{m.group(1)}}}")
        return str(values[m.group(1)])

    out = []
    for line in text.splitlines(keepends=True):
        out.append(line if line.lstrip().startswith("#") else
                   re.sub(r"\$\{([A-Z0-9_]+)\}", sub, line))
    return "".join(out)


def policy_json(client_cidr, token_timing=None):
    policy = json.load(open(POLICY_FILE))
    cidrs = policy["allow_cidrs"]
    assert cidrs[-1] == "127.0.0.0/8" and len(cidrs) == 20, "policy file: 20 CIDRs, loopback last"
    cidrs[-1] = client_cidr
    if token_timing:
        policy["upstream_token"].update(token_timing)
    return policy


class Envoy:
    """One Envoy process for one setup."""

    def __init__(self, setup, concurrency, ports, tag, policy=None, probe="none:0",
                 extra_routes=0, extra_values=None):
        self.setup = setup
        spec = SETUPS[setup]
        self.admin = free_port()
        self.port = free_port()
        if spec.get("kind") != "guard":
            policy = None
        elif policy and spec.get("policy_extra"):
            policy = {**policy, **spec["policy_extra"]}
        values = {
            "ADMIN_PORT": self.admin,
            "LISTEN_PORT": self.port,
            "UPSTREAM_PORT": ports["upstream"],
            "METADATA_PORT": ports["metadata"],
            "FLOOR_WASM": FLOOR_WASM,
            "PROBE_WASM": PROBE_WASM,
            "PROBE": probe,
            "EXTRA_ROUTES": "".join(
                f'              - match: {{ safe_regex: {{ regex: "^/r{i}/[a-z]+$" }} }}\n'
                f"                route: {{ cluster: bcsp }}\n" for i in range(extra_routes)),
            "BCSP_GUARD_WASM": spec.get("wasm") or BCSP_WASM,
            "BCSP_GUARD_POLICY": json.dumps(json.dumps(policy)) if policy else '""',
            "HOP_PORT": free_port(),
            # One more connection-manager field for a variant setup (a one-line YAML flow
            # mapping such as `access_log: [...]`); empty for the plain setups.
            "HCM_EXTRA": "",
            "DYNMOD_NAME": "bcsp_guard_envoy",
            "FLOOR_MODE": "read",
            **spec.get("values", {}),
            **(extra_values or {}),
        }
        # Envoy finds lib<name>.so for dynamic_module_config.name in this directory.
        env = ({"ENVOY_DYNAMIC_MODULES_SEARCH_PATH":
                os.path.dirname(spec.get("dynmod") or BCSP_DYNMOD)}
               if spec.get("artifact") == "dynmod" else None)
        cfg = os.path.join(OUT, f"envoy-{tag}.yaml")
        with open(cfg, "w") as f:
            f.write(render(SETUPS[setup]["config"], values))
        self.proc = start(f"envoy-{tag}", [
            ENVOY, "-c", cfg, "--concurrency", str(concurrency), "--disable-hot-restart",
            "-l", "warning", "--log-path", os.path.join(LOGS, f"envoy-{tag}.log"),
        ], ENVOY_CPU, os.path.join(LOGS, f"envoy-{tag}.out"), env)
        try:
            wait_http(self.admin, "/ready", what=f"envoy {tag} admin")
        except SystemExit:
            self.proc.stop()
            print(open(os.path.join(LOGS, f"envoy-{tag}.log")).read()[-3000:], file=sys.stderr)
            raise

    def cpu_seconds(self):
        return proc_cpu_seconds(self.proc.pid)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        stop(self.proc)


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_busy(cpu):
    """(busy, total) jiffies of one CPU."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                return sum(v) - idle, sum(v)
    return 0, 1


# ---------------------------------------------------------------------------------------------
# Load

def wrk(port, conns, seconds, headers=CLIENT_HEADERS, path=PATH):
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
            "--timeout", "5s"]
    for n, v in headers:
        argv += ["-H", f"{n}: {v}"]
    argv.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    return parse_wrk(out)


UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def parse_wrk(out):
    r = {"raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"bench: cannot parse wrk output:\n{out}")
    r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    r["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        r[f"p{pct}_us"] = float(m.group(1)) * UNITS[m.group(2)] if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return r


def children_cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measured_wrk(envoy, conns, seconds, headers=CLIENT_HEADERS):
    """wrk plus Envoy's CPU time and CPU 1's load over the same interval."""
    load_pids = [p.pid for p in STARTED if not p.name.startswith("envoy")]
    other_envoys = [p.pid for p in STARTED if p.name.startswith("envoy") and p is not envoy.proc]
    l0 = sum(proc_cpu_seconds(pid) for pid in load_pids) + children_cpu_seconds()
    o0 = sum(proc_cpu_seconds(pid) for pid in other_envoys)
    c0 = envoy.cpu_seconds()
    b0, t0 = cpu_busy(LOAD_CPU)
    e0, et0 = cpu_busy(ENVOY_CPU)
    w0 = time.time()
    r = wrk(envoy.port, conns, seconds, headers=headers)
    wall = time.time() - w0
    c1 = envoy.cpu_seconds()
    b1, t1 = cpu_busy(LOAD_CPU)
    e1, et1 = cpu_busy(ENVOY_CPU)
    r["envoy_cpu_pct"] = 100.0 * (c1 - c0) / wall
    r["envoy_cpu_us_per_req"] = 1e6 * (c1 - c0) / r["requests"] if r["requests"] else None
    r["load_cpu_busy_pct"] = 100.0 * (b1 - b0) / max(1, t1 - t0)
    # CPU 0 time not spent in Envoy: other processes on the machine (and some kernel network
    # work). High values mean the run was disturbed.
    cpu0_pct = 100.0 * (e1 - e0) / max(1, et1 - et0)
    idle_envoys_pct = 100.0 * (sum(proc_cpu_seconds(pid) for pid in other_envoys) - o0) / wall
    r["foreign_cpu0_pct"] = max(0.0, cpu0_pct - r["envoy_cpu_pct"] - idle_envoys_pct)
    l1 = sum(proc_cpu_seconds(pid) for pid in load_pids) + children_cpu_seconds()
    r["foreign_cpu1_pct"] = max(0.0, r["load_cpu_busy_pct"] - 100.0 * (l1 - l0) / wall)
    del r["raw"]
    return r



# ---------------------------------------------------------------------------------------------
# Scaling table (BENCH_SCALING=1): the same filter with a larger policy, against itself with the
# smallest one. Each family has its own 20-CIDR / 1-key setup so only the size differs.

SCALE_POINTS = [(20, 1), (2_000, 1), (10_000, 1), (20, 16), (20, 64)]
SCALE_FAMILIES = {
    "G": "bcsp-guard",
    "R": "native RBAC, principals (remote_ip list, header exact match)",
    "M": "native RBAC, matcher tree (ip_range_matcher trie, then header inputs)",
}
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"


def scale_id(fam, n, k):
    return f"{fam}-{n}x{k}"


def scale_header(i):
    return f"x-bcsp-key-{i:02d}"


def scale_secret(i):
    """Bench-only secrets, 44 characters like a generated one."""
    import base64
    return base64.b64encode(hashlib.sha256(f"bench-scale-{i}".encode()).digest()).decode()


def scale_cidrs(n, last):
    """n CIDRs that stay n after merging: the 19 real-looking ones of the policy file, then
    non-adjacent /28s (every other one) and, every 8th, an IPv6 /48; `last` is the client's."""
    real = json.load(open(POLICY_FILE))["allow_cidrs"][:19]
    out = real[: n - 1]
    i = 0
    while len(out) < n - 1:
        if i % 8 == 7:
            out.append(f"2001:db8:{i * 2:x}::/48")
        else:
            out.append(f"{ipaddress.IPv4Address(int(ipaddress.IPv4Address('100.64.0.0')) + i * 32)}/28")
        i += 1
    return out + [last]


def scale_policy(n, k, client_cidr):
    p = json.load(open(POLICY_FILE))
    p["keys"] = [{"id": f"scale-{i:02d}", "header": scale_header(i),
                  "sha256": hashlib.sha256(scale_secret(i).encode()).hexdigest()}
                 for i in range(1, k + 1)]
    p["allow_cidrs"] = scale_cidrs(n, client_cidr)
    return p


def rbac_action(a):
    return {"action": {"name": a.lower(), "typed_config": {
        "@type": "type.googleapis.com/envoy.config.rbac.v3.Action", "name": a.lower(), "action": a}}}


def rbac_config(fam, n, k):
    """RBAC matches the TCP peer (use_remote_address: true), so 127.0.0.0/8 comes last."""
    cidrs = []
    for c in scale_cidrs(n, "127.0.0.0/8"):
        net = ipaddress.ip_network(c)
        cidrs.append({"address_prefix": str(net.network_address), "prefix_len": net.prefixlen})
    if fam == "R":
        keys = [{"header": {"name": scale_header(i), "string_match": {"exact": scale_secret(i)}}}
                for i in range(1, k + 1)]
        ips = [{"remote_ip": c} for c in cidrs]
        return {"@type": RBAC_TYPE, "rules": {"action": "ALLOW", "policies": {"genesys": {
            "permissions": [{"any": True}],
            "principals": [{"and_ids": {"ids": [{"or_ids": {"ids": keys}},
                                                {"or_ids": {"ids": ips}}]}}]}}}}
    keys = {"matcher_list": {"matchers": [
        {"predicate": {"single_predicate": {
            "input": {"name": "key", "typed_config": {
                "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                "header_name": scale_header(i)}},
            "value_match": {"exact": scale_secret(i)}}},
         "on_match": rbac_action("ALLOW")} for i in range(1, k + 1)]},
        "on_no_match": rbac_action("DENY")}
    return {"@type": RBAC_TYPE, "matcher": {
        "matcher_tree": {
            "input": {"name": "ip", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.SourceIPInput"}},
            "custom_match": {"name": "envoy.matching.custom_matchers.ip_range_matcher", "typed_config": {
                "@type": "type.googleapis.com/xds.type.matcher.v3.IPMatcher",
                "range_matchers": [{"ranges": cidrs, "on_match": {"matcher": keys}}]}}},
        "on_no_match": rbac_action("DENY")}}


def scale_headers(k):
    """The client's request, presenting the last key in its own header."""
    return [(scale_header(k), scale_secret(k)) if n == "x-bcsp-key" else (n, v)
            for n, v in CLIENT_HEADERS]


def scaling_setups(client_cidr):
    out = []
    # Sizes outer, families inner: a family's setups spread over the round like the others'.
    for n, k in SCALE_POINTS:
        for fam in SCALE_FAMILIES:
            sid = scale_id(fam, n, k)
            sc = {"id": sid, "family": fam, "cidrs": n, "keys": k, "headers": scale_headers(k)}
            if fam == "G":
                SETUPS[sid] = {"name": f"{SCALE_FAMILIES[fam]} {n}/{k}",
                               "config": "envoy-4-bcsp-guard.yaml", "kind": "guard"}
                sc["policy"] = scale_policy(n, k, client_cidr)
            else:
                SETUPS[sid] = {"name": f"{SCALE_FAMILIES[fam]} {n}/{k}",
                               "config": "envoy-2-native-scaling.yaml", "kind": "native"}
                sc["values"] = {
                    "RBAC_CONFIG": json.dumps(rbac_config(fam, n, k)),
                    "REMOVE_HEADERS": json.dumps([scale_header(i) for i in range(1, k + 1)])}
            out.append(sc)
    return out


def start_scaling(sc, ports):
    return Envoy(sc["id"], 1, ports, "s" + sc["id"], policy=sc.get("policy"),
                 extra_values=sc.get("values"))


def check_scaling(sc, port):
    hdrs = dict(sc["headers"])
    name = scale_header(sc["keys"])
    status, _, body = get(port, "/_echo", hdrs)
    lines = echo_lines(body)
    problems = []
    if status != 200:
        problems.append(f"valid request answered {status}: {body[:200]}")
    if any(line.startswith(name + ":") for line in lines):
        problems.append("credential header reached the upstream")
    if not any(line.startswith("authorization: bearer ey") for line in lines):
        problems.append("no identity token upstream")
    deny = 401 if sc["family"] == "G" else 403
    cases = [("no key", {h: v for h, v in hdrs.items() if h != name}),
             ("wrong key", {**hdrs, name: "wrong"})]
    if sc["keys"] > 1:
        cases.append(("another key's secret in this header", {**hdrs, name: scale_secret(1)}))
    for what, h in cases:
        s, _, _ = get(port, "/_echo", h)
        if s != deny:
            problems.append(f"{what}: expected {deny}, got {s}")
    if problems:
        raise SystemExit(f"bench: scaling setup {sc['id']} misbehaves: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# Checks: each setup really does what it claims (before any number is taken from it)

def echo_lines(body):
    return [line.strip().lower() for line in body.splitlines()]


def check_setup(setup, port):
    hdrs = dict(CLIENT_HEADERS)
    status, _, body = get(port, "/_echo", hdrs)
    lines = echo_lines(body)
    has = lambda prefix: any(line.startswith(prefix) for line in lines)  # noqa: E731
    problems = []
    kind = SETUPS[setup]["kind"]
    if status != 200:
        problems.append(f"valid request answered {status}: {body[:200]}")
    if kind in ("none", "floor") and not has("x-bcsp-key:"):
        problems.append("credential header missing upstream")
    if kind == "mandatory" and (has("x-bcsp-key:") or not has("authorization: bearer ey")
                                or not has(f"x-bcsp-key-id: {KEY_ID}")):
        problems.append("the floor's header edits did not reach the upstream")
    if kind in ("native", "guard"):
        if has("x-bcsp-key:"):
            problems.append("credential header reached the upstream")
        if not has("authorization: bearer ey"):
            problems.append("no identity token upstream")
        deny = 403 if kind == "native" else 401
        for name, h in (("no key", {k: v for k, v in hdrs.items() if k != "x-bcsp-key"}),
                        ("wrong key", {**hdrs, "x-bcsp-key": "wrong"})):
            s, _, b = get(port, "/_echo", h)
            if s != deny:
                problems.append(f"{name}: expected {deny}, got {s}")
    if kind == "guard" and not has(f"x-bcsp-key-id: {KEY_ID}"):
        problems.append("x-bcsp-key-id not set")
    if problems:
        raise SystemExit(f"bench: setup {setup} misbehaves: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# Phases

def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": sh("nproc"),
        "cpu_model": model,
        "kernel": sh("uname -r"),
        "envoy": sh(f"{ENVOY} --version").split("version:")[-1].strip(),
        "wrk": sh("wrk -v 2>&1 | head -1"),
        "rustc": sh("rustc --version"),
        "wasm_opt": sh("wasm-opt --version 2>/dev/null"),
        "mem": sh("free -g | awk '/Mem:/{print $2\" GiB\"}'"),
    }


def probe_client_address(ports):
    """The address Envoy appends to X-Forwarded-For for wrk's connections from 127.0.0.1 (with
    use_remote_address true, Envoy appends its own local address for a 127.0.0.1 peer)."""
    e = Envoy("1", 1, ports, "probe")
    try:
        _, _, body = get(e.port, "/_echo", {"x-forwarded-for": "34.200.73.250"})
    finally:
        e.stop()
    for line in body.splitlines():
        if line.lower().startswith("x-forwarded-for:"):
            last = line.split(":", 1)[1].split(",")[-1].strip()
            ip = ipaddress.ip_address(last)
            if ip in ipaddress.ip_network("127.0.0.0/8"):
                return last, "127.0.0.0/8"
            return last, f"{ip}/{ip.max_prefixlen}"
    raise SystemExit(f"bench: probe saw no x-forwarded-for upstream:\n{body}")


def upstream_capacity(ports):
    """wrk straight at the upstream, both on CPU 1 as during the runs."""
    r = wrk(ports["upstream"], HIGH_C, 4, headers=CLIENT_HEADERS)
    return {"rps": r["rps"], "p99_us": r["p99_us"]}


QUIET_BUDGET = [float(os.environ.get("BENCH_QUIET_BUDGET", "120"))]


def wait_quiet(max_wait=20.0):
    """Before a run: wait (briefly, within a budget for the whole benchmark) until neither CPU
    is busy with other processes, so a run does not start in the middle of someone's build."""
    waited = 0.0
    while True:
        a0, t0 = cpu_busy(ENVOY_CPU)
        b0, u0 = cpu_busy(LOAD_CPU)
        time.sleep(0.5)
        a1, t1 = cpu_busy(ENVOY_CPU)
        b1, u1 = cpu_busy(LOAD_CPU)
        busy = max(100.0 * (a1 - a0) / max(1, t1 - t0), 100.0 * (b1 - b0) / max(1, u1 - u0))
        waited += 0.5
        if busy < 10 or waited >= max_wait or QUIET_BUDGET[0] <= 0:
            return
        QUIET_BUDGET[0] -= 0.5


def clean_low(r):
    """Moderate load measures latency end to end: neither CPU may be busy with other work."""
    return r["foreign_cpu0_pct"] <= FOREIGN_MAX and r["foreign_cpu1_pct"] <= FOREIGN_MAX


def clean_high(r):
    """Saturation measures Envoy's capacity: Envoy must have had its CPU to itself, and used it."""
    return r["envoy_cpu_pct"] >= 90 and r["foreign_cpu0_pct"] <= FOREIGN_MAX


def disturbed(low, high):
    return not (clean_low(low) and clean_high(high))


def throughput(setups, ports, policy, scaling=()):
    """All setups' Envoys run side by side (idle ones cost nothing measurable); the load moves
    from one to the next: A B C D A B C D ... Short slices and many rounds, so a burst of
    someone else's work spoils a slice, not a setup; a spoiled slice is measured again.
    Scaling setups follow the main ones in each round, at saturation only."""
    runs = {s: [] for s in setups}
    scale_runs = {sc["id"]: [] for sc in scaling}
    order = []
    budget = RETRY_BUDGET
    envoys = {}
    try:
        for s in setups:
            envoys[s] = Envoy(s, 1, ports, s, policy=policy)
            check_setup(s, envoys[s].port)
        for sc in scaling:
            envoys[sc["id"]] = start_scaling(sc, ports)
            check_scaling(sc, envoys[sc["id"]].port)
        for s in setups:
            wrk(envoys[s].port, 8, WARMUP)
        for sc in scaling:
            wrk(envoys[sc["id"]].port, 8, WARMUP, headers=sc["headers"])
        for rnd in range(1, ROUNDS + 1):
            for s in setups:
                e = envoys[s]
                for attempt in range(1, RETRIES + 2):
                    wait_quiet(max_wait=5.0)
                    low = measured_wrk(e, LOW_C, SECONDS)
                    high = measured_wrk(e, HIGH_C, SECONDS)
                    if not disturbed(low, high) or attempt > RETRIES or budget <= 0:
                        break
                    budget -= 1
                    log(f"round {rnd} setup {s}: disturbed (envoy {high['envoy_cpu_pct']:.0f}% "
                        f"cpu, foreign cpu{ENVOY_CPU} {low['foreign_cpu0_pct']:.0f}%/"
                        f"{high['foreign_cpu0_pct']:.0f}%, cpu{LOAD_CPU} "
                        f"{low['foreign_cpu1_pct']:.0f}%/{high['foreign_cpu1_pct']:.0f}%), again")
                for r in (low, high):
                    if r["non2xx"] or r["socket_errors"]:
                        raise SystemExit(f"bench: setup {s} round {rnd}: {r['non2xx']} non-2xx, "
                                         f"{r['socket_errors']} socket errors")
                runs[s].append({"round": rnd, "low": low, "high": high, "attempts": attempt,
                                "disturbed": disturbed(low, high)})
                order.append(f"{s}-r{rnd}")
                log(f"round {rnd} setup {s}: c={LOW_C} {low['rps']:.0f} rps p99 "
                    f"{low['p99_us']:.0f}us; c={HIGH_C} {high['rps']:.0f} rps (envoy "
                    f"{high['envoy_cpu_pct']:.0f}% cpu, {high['envoy_cpu_us_per_req']:.1f} us/req; "
                    f"foreign cpu{ENVOY_CPU} {low['foreign_cpu0_pct']:.0f}%/"
                    f"{high['foreign_cpu0_pct']:.0f}%, cpu{LOAD_CPU} "
                    f"{low['foreign_cpu1_pct']:.0f}%/{high['foreign_cpu1_pct']:.0f}%)")
            for sc in scaling:
                e = envoys[sc["id"]]
                for attempt in range(1, RETRIES + 2):
                    wait_quiet(max_wait=5.0)
                    high = measured_wrk(e, HIGH_C, SECONDS, headers=sc["headers"])
                    if clean_high(high) or attempt > RETRIES or budget <= 0:
                        break
                    budget -= 1
                if high["non2xx"] or high["socket_errors"]:
                    raise SystemExit(f"bench: scaling {sc['id']} round {rnd}: {high['non2xx']} "
                                     f"non-2xx, {high['socket_errors']} socket errors")
                scale_runs[sc["id"]].append({"round": rnd, "high": high, "attempts": attempt})
                order.append(f"{sc['id']}-r{rnd}")
                log(f"round {rnd} scaling {sc['id']}: c={HIGH_C} {high['rps']:.0f} rps (envoy "
                    f"{high['envoy_cpu_pct']:.0f}% cpu, {high['envoy_cpu_us_per_req']:.1f} us/req, "
                    f"foreign cpu{ENVOY_CPU} {high['foreign_cpu0_pct']:.0f}%)")
    finally:
        for e in envoys.values():
            e.stop()
    return runs, order, scale_runs


def summarize_scaling(scale_runs):
    out = {}
    for sid, rs in scale_runs.items():
        clean = [r for r in rs if clean_high(r["high"])]
        out[sid] = {"clean_high": len(clean), "rounds": len(rs)}
        for k in ("rps", "envoy_cpu_us_per_req", "envoy_cpu_pct"):
            out[sid][k] = med([r["high"][k] for r in (clean or rs)])
    # Against the family's 20 / 1 setup of the same round: the machine drifts between rounds.
    for sid, rs in scale_runs.items():
        fam = sid.split("-", 1)[0]
        base = scale_runs.get(scale_id(fam, 20, 1), [])
        out[sid]["paired_ratio"] = med([ratio(a["high"]["rps"], b["high"]["rps"])
                                        for a, b in zip(rs, base)])
    return out


def memory(setups, ports, policy):
    out = {}
    for s in setups:
        rss = {}
        for conc in (1, 4):
            e = Envoy(s, conc, ports, f"{s}-mem{conc}", policy=policy)
            try:
                check_setup(s, e.port)
                wrk(e.port, 32, 2)  # every worker serves traffic
                time.sleep(0.5)
                rss[conc] = e.rss_kib()
            finally:
                e.stop()
        out[s] = {"rss1_kib": rss[1], "rss4_kib": rss[4],
                  "per_worker_kib": (rss[4] - rss[1]) / 3.0}
        log(f"memory setup {s}: rss c1 {rss[1]} KiB, c4 {rss[4]} KiB, "
            f"per worker {(rss[4] - rss[1]) / 3.0:.0f} KiB")
    return out


def token_fetches(setups, ports_base, client_cidr):
    """4 workers, short token lifetime, steady load: metadata fetches per refresh window."""
    out = {}
    for s in [s for s in setups if SETUPS[s].get("tokens")]:
        mport = free_port()
        emu = start("emulator-tokens", [EMULATOR_BIN, "--listen", f"127.0.0.1:{mport}",
                                        "--lifetime",
                                        str(NATIVE_TOKEN_LIFETIME if SETUPS[s]["kind"] == "native"
                                            else TOKEN_LIFETIME)],
                    LOAD_CPU, os.path.join(LOGS, f"emulator-tokens-{s}.log"))
        fetch_times = []
        stop_poll = threading.Event()
        try:
            wait_http(mport, "/healthz", what="metadata emulator")
            t_start = time.time()

            def poll():
                last = 0
                while not stop_poll.is_set():
                    try:
                        _, _, body = get(mport, "/_emulator/stats", {}, timeout=2)
                        total = json.loads(body)["total"]
                        if total > last:
                            fetch_times.extend([time.time() - t_start] * (total - last))
                            last = total
                    except (OSError, ValueError, KeyError):
                        pass
                    time.sleep(0.05)

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            ports = dict(ports_base, metadata=mport)
            policy = policy_json(client_cidr, {"refresh_margin_s": TOKEN_MARGIN,
                                               "expiry_skew_s": TOKEN_SKEW})
            e = Envoy(s, 4, ports, f"{s}-tokens", policy=policy)
            try:
                check_setup(s, e.port)
                r = wrk(e.port, 32, TOKEN_SECONDS)
            finally:
                e.stop()
            time.sleep(0.3)
        finally:
            stop_poll.set()
            stop(emu)
        windows = []
        for t in fetch_times:
            if windows and t - windows[-1][-1] < 3.0:
                windows[-1].append(t)
            else:
                windows.append([t])
        counts = [len(w) for w in windows]
        refresh = counts[1:]
        out[s] = {
            "total": len(fetch_times),
            "windows": counts,
            "window_starts_s": [round(w[0], 1) for w in windows],
            "cold_start": counts[0] if counts else 0,
            "per_refresh_mean": statistics.mean(refresh) if refresh else None,
            "per_refresh_max": max(refresh) if refresh else None,
            "rps": r["rps"], "non2xx": r["non2xx"], "socket_errors": r["socket_errors"],
        }
        log(f"tokens setup {s}: fetch windows {counts} at {out[s]['window_starts_s']} s")
    return out


def probe_n(op):
    op = op.split("@")[0]
    return 0 if op == "none" else 1 if op in PROBE_ONCE else PROBE_N


PROBE_ROUNDS = 3


def probe(ports):
    """Cost of one proxy-wasm operation on V8: (Envoy CPU µs/request with the op repeated N
    times − without) / N, at saturation, interleaved over PROBE_ROUNDS rounds."""
    per = {op: [] for op in PROBE_OPS}
    for rnd in range(PROBE_ROUNDS):
        for op in PROBE_OPS:
            name, _, routes = op.partition("@")
            e = Envoy("P", 1, ports, f"probe-{name}-{routes or 0}-r{rnd}",
                      probe=f"{name}:{probe_n(op)}", extra_routes=int(routes or 0))
            try:
                check_setup("P", e.port)
                wrk(e.port, 8, 1)
                r = measured_wrk(e, HIGH_C, 4)
            finally:
                e.stop()
            per[op].append(r["envoy_cpu_us_per_req"])
    def cost(op, v):
        name, _, routes = op.partition("@")
        base = med(per["none@" + routes if routes else "none"])
        return (med(v) - base) / probe_n(op) if name != "none" else med(v) - med(per["none"])

    out = {op: {"us_per_req": med(v), "per_op_us": cost(op, v)} for op, v in per.items()}
    log("probe: " + ", ".join(f"{op} {v['per_op_us']:.2f} us" for op, v in out.items()))
    return out


def criterion():
    argv = ["taskset", "-c", ENVOY_CPU, "cargo", "bench", "--bench", "policy", "--",
            "--warm-up-time", "1", "--measurement-time", "2"]
    log_path = os.path.join(LOGS, "criterion.log")
    with open(log_path, "w") as f:
        subprocess.run(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=True)
    # Only the benchmarks this run measured: target/criterion keeps retired ones too.
    groups = ("decide", "parts", "cidr_lookup", "key_check", "routes")
    ran = set(re.findall(r"^((?:%s)/\S+)" % "|".join(groups), open(log_path).read(), re.M))
    out = {}
    base = os.path.join(ROOT, "target", "criterion")
    for group in groups:
        gdir = os.path.join(base, group)
        if not os.path.isdir(gdir):
            continue
        for name in sorted(os.listdir(gdir)):
            est = os.path.join(gdir, name, "new", "estimates.json")
            if os.path.exists(est) and f"{group}/{name}" in ran:
                d = json.load(open(est))
                out[f"{group}/{name}"] = {"median_ns": d["median"]["point_estimate"],
                                          "mean_ns": d["mean"]["point_estimate"]}
    return out


def sizes(extra_wasm):
    out = {"bcsp_guard": os.path.getsize(BCSP_WASM), "floor": os.path.getsize(FLOOR_WASM)}
    if os.path.exists(BCSP_DYNMOD):
        out["dynmod"] = os.path.getsize(BCSP_DYNMOD)
    if shutil.which("wasm-opt"):
        for k, path in (("bcsp_guard", BCSP_WASM), ("floor", FLOOR_WASM)):
            dst = os.path.join(OUT, os.path.basename(path).replace(".wasm", ".Oz.wasm"))
            subprocess.run(["wasm-opt", "-Oz", "--enable-bulk-memory", "--enable-sign-ext",
                            "--enable-mutable-globals", "--enable-nontrapping-float-to-int",
                            path, "-o", dst], check=True, capture_output=True)
            out[f"{k}_oz"] = os.path.getsize(dst)
    if extra_wasm:
        out["extra"] = os.path.getsize(extra_wasm)
    return out


# ---------------------------------------------------------------------------------------------
# Report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs):
    """Per load point, medians over the clean runs of each setup (over all when none was)."""
    s = {}
    for setup, rs in runs.items():
        s[setup] = {}
        for point, ok in (("low", clean_low), ("high", clean_high)):
            clean = [r for r in rs if ok(r[point])]
            s[setup][f"clean_{point}"] = len(clean)
            s[setup][point] = {k: med([r[point][k] for r in (clean or rs)]) for k in
                               ("rps", "p50_us", "p99_us", "envoy_cpu_pct",
                                "envoy_cpu_us_per_req", "load_cpu_busy_pct", "foreign_cpu1_pct")}
    return s


def wasm_ceiling():
    """The release .wasm size ceiling `make size` enforces (WASM_MAX_BYTES)."""
    with open(os.path.join(ROOT, "Makefile")) as f:
        m = re.search(r"^WASM_MAX_BYTES\s*:=\s*(\d+)", f.read(), re.M)
    return int(m.group(1)) if m else 0


def p99_added(runs, setup):
    """Median over rounds of p99(setup) − p99(no filter) at c=LOW_C, pairing the two runs
    of the same round (both clean): p99 drifts with the machine, a pair shares the drift."""
    diffs = [a["low"]["p99_us"] - b["low"]["p99_us"] for a, b in zip(runs[setup], runs["1"])
             if clean_low(a["low"]) and clean_low(b["low"])
             and a["low"]["p99_us"] is not None and b["low"]["p99_us"] is not None]
    return (med(diffs) if diffs else None), len(diffs)


def fmt(x, nd=0, unit=""):
    if x is None:
        return "—"
    return f"{x:,.{nd}f}{unit}"


def ratio(a, b):
    return a / b if a and b else None


def human_notes(path):
    begin, end = "<!-- BEGIN HUMAN NOTES -->", "<!-- END HUMAN NOTES -->"
    if os.path.exists(path):
        text = open(path).read()
        if begin in text and end in text:
            return text[text.index(begin):text.index(end) + len(end)]
    return f"{begin}\n_(No notes yet.)_\n{end}"


def scaling_table(data):
    """Rows (family, cidrs, keys, rps, ratio to the family's 20/1, µs/req, Δ µs/req, clean)."""
    S = data["scaling"]["summary"]
    rows = []
    for sc in data["scaling"]["setups"]:
        v = S[sc["id"]]
        base = S[scale_id(sc["family"], 20, 1)]
        d = None
        if v["envoy_cpu_us_per_req"] is not None and base["envoy_cpu_us_per_req"] is not None:
            d = v["envoy_cpu_us_per_req"] - base["envoy_cpu_us_per_req"]
        rows.append((sc["family"], sc["cidrs"], sc["keys"], v["rps"], ratio(v["rps"], base["rps"]),
                     v.get("paired_ratio"), v["envoy_cpu_us_per_req"], d,
                     f"{v['clean_high']} of {v['rounds']}"))
    return rows


def report_scaling(data, w):
    S = data["scaling"]["summary"]
    H = HIGH_C
    w("## Scaling with the policy's size (`BENCH_SCALING=1`)\n")
    w(f"Same interleaved run as above: after the main setups, every round measures each scaling "
      f"setup at c={H} (saturation, `wrk -t1 -c{H} -d{SECONDS}s`), medians over clean rounds. "
      "Each family is compared with its own 20-CIDR / 1-key setup, so only the policy's size "
      "differs. CIDRs: the policy file's real-looking ones, then disjoint, non-adjacent /28s and "
      "IPv6 /48s (nothing merges), the client's prefix last; keys: each in its own header "
      "(`x-bcsp-key-NN`), the request presents the last one. Native RBAC matches the TCP peer "
      "(`127.0.0.0/8` last) and strips every key header on the route.\n")
    for fam, name in SCALE_FAMILIES.items():
        w(f"- **{fam}**: {name}")
    w("")
    w("`vs 20 / 1`: ratio of the medians; `paired`: median over rounds of the ratio to the "
      "family's 20 / 1 setup measured in the same round.\n")
    w(f"| family | CIDRs | keys | c={H} rps | vs 20 / 1 | paired | Envoy CPU µs/req | "
      "Δ µs/req vs 20 / 1 | clean |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for fam, n, k, rps, r, pr, us, d, clean in sorted(scaling_table(data), key=lambda t: t[0] != "G"):
        w(f"| {fam} | {n:,} | {k} | {fmt(rps)} | {fmt(r, 3)} | {fmt(pr, 3)} | {fmt(us, 1)} | "
          f"{'—' if d is None else f'{d:+.1f}'} | {clean} |")
    w("")
    w("| same size | bcsp-guard / RBAC principals | bcsp-guard / RBAC matcher | "
      "RBAC matcher / RBAC principals |")
    w("|---|---:|---:|---:|")
    for n, k in SCALE_POINTS:
        g, r, m = (S[scale_id(f, n, k)]["rps"] for f in ("G", "R", "M"))
        w(f"| {n:,} CIDRs, {k} keys | {fmt(ratio(g, r), 3)} | {fmt(ratio(g, m), 3)} | "
          f"{fmt(ratio(m, r), 3)} |")
    w("")
    g = lambda n, k: S[scale_id("G", n, k)]  # noqa: E731
    yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
    w("| target | measured (ratio of medians · paired) | met |")
    w("|---|---|---|")
    for what, (n, k) in (("10,000 CIDRs >= 0.97x of 20 CIDRs", (10_000, 1)),
                         ("64 keys >= 0.97x of 1 key", (20, 64))):
        r = ratio(g(n, k)["rps"], g(20, 1)["rps"])
        pr = g(n, k).get("paired_ratio")
        ok = r is not None and r >= 0.97 and pr is not None and pr >= 0.97
        w(f"| bcsp-guard, {what} | {fmt(r, 3)} · {fmt(pr, 3)} | {yes(ok)} |")
    crit = data.get("criterion", {}).get("cidr_lookup/10000_prefixes_hit_last")
    if crit:
        w(f"| pure lookup at 10,000 CIDRs < 100 ns | {crit['median_ns']:.0f} ns (native, "
          f"criterion) | {yes(crit['median_ns'] < 100)} |")
    w("")


def report(data):
    m, S, setups = data["machine"], data["summary"], data["setups"]
    L, H = LOW_C, HIGH_C
    lines = []
    w = lines.append
    w("# bcsp-guard benchmark results\n")
    w("Generated by `bench/run.py` (via `make bench`); everything below the human notes is "
      "rewritten on every run. bench/README.md describes the setups and targets.\n")
    w(human_notes(RESULTS) + "\n")
    w("## Run\n")
    w(f"- Date: {data['date']}; total wall time {data['wall_s'] / 60:.1f} min")
    w(f"- Command: `{data['command']}`")
    w(f"- Code: commit {data['git']}; `{data['wasm_built_from']}` sha256 "
      f"`{data['wasm_sha256'][:16]}…`"
      + (f", `target/release/libbcsp_guard_envoy.so` sha256 `{data['dynmod_sha256'][:16]}…`"
         if data.get("dynmod_sha256") else "")
      + " (copied once, so every round loads the same build)")
    w(f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem']} RAM, kernel {m['kernel']}")
    w(f"- Envoy {m['envoy']} (`--concurrency 1`, V8), pinned with `taskset -c {ENVOY_CPU}`; "
      f"wrk ({m['wrk']}), the upstream (`bench/upstream`) and the metadata emulator pinned to "
      f"CPU {LOAD_CPU}")
    w(f"- {m['rustc']}; {m['wasm_opt'] or 'wasm-opt not installed'}")
    w(f"- Load average before / after: {data['loadavg_before']} / {data['loadavg_after']}")
    w(f"- Interleaved order, {ROUNDS} rounds: {' '.join(data['order'])}")
    runs_all = [r for k in setups for r in data["runs"][k]]
    w(f"- Slices repeated because other processes disturbed them: "
      f"{sum(r['attempts'] - 1 for r in runs_all)}; kept as clean: "
      f"c={LOW_C} {sum(1 for r in runs_all if clean_low(r['low']))} of {len(runs_all)}, "
      f"c={HIGH_C} {sum(1 for r in runs_all if clean_high(r['high']))} of {len(runs_all)} "
      "(see *Every run*)")
    w(f"- The Envoys (one per setup) run side by side (each `--concurrency 1` on CPU {ENVOY_CPU}; an idle "
      f"one costs nothing measurable) and the load moves from one to the next; each got {WARMUP} s "
      f"of warm-up at c=8, then per round `wrk -t1 -c{L} -d{SECONDS}s` (moderate) and "
      f"`wrk -t1 -c{H} -d{SECONDS}s` (saturation), closed loop; numbers are medians over rounds")
    w(f"- Request: `GET {PATH}` with {len(CLIENT_HEADERS) + 1} client headers (incl. host, "
      f"the credential and X-Forwarded-For); upstream answers 200 with a 3-byte body")
    w(f"- Client address as bcsp-guard's X-Forwarded-For rule sees it: `{data['client_addr']}` "
      f"(with `use_remote_address: true` Envoy appends its own address, not the peer, when the peer "
      f"is exactly 127.0.0.1); the 20th CIDR is "
      f"`{data['client_cidr']}` for bcsp-guard and `127.0.0.0/8` for RBAC (which matches the "
      f"TCP peer), so both scan all 20 entries\n")
    w("## Setups\n")
    for k in setups:
        w(f"{k}. {SETUPS[k]['name']} — `bench/configs/{SETUPS[k]['config']}`")
    w("")
    w("## Throughput, latency and Envoy CPU per request (medians over clean rounds)\n")
    w(f"Per load point, medians over the rounds that other processes on the machine did not "
      f"disturb (`clean`: c={L} / c={H}). A c={L} slice is clean when neither CPU had more than "
      f"{FOREIGN_MAX:.0f} % foreign work (it measures latency end to end); a c={H} slice when Envoy "
      f"used at least 90 % of CPU {ENVOY_CPU} and nothing else more than {FOREIGN_MAX:.0f} % of it "
      "(it measures Envoy's capacity). With no clean slice the median is over all, and the "
      "verdicts below say *inconclusive*. Envoy CPU per request = Envoy's CPU time (user + "
      "system, from /proc) over the requests wrk completed in the same slice; at saturation it "
      "is the cost of a request, at moderate load it also holds Envoy's idle wake-ups.\n")
    w(f"| setup | c={L} rps | c={L} p50 | c={L} p99 | c={H} rps | c={H} p50 | c={H} p99 | "
      f"Envoy CPU µs/req c={H} | Envoy CPU µs/req c={L} | Envoy CPU % c={H} | clean |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in setups:
        lo, hi = S[k]["low"], S[k]["high"]
        w(f"| {k}. {SETUPS[k]['name']} | {fmt(lo['rps'])} | {fmt(lo['p50_us'], 0, ' µs')} | "
          f"{fmt(lo['p99_us'], 0, ' µs')} | {fmt(hi['rps'])} | {fmt(hi['p50_us'], 0, ' µs')} | "
          f"{fmt(hi['p99_us'], 0, ' µs')} | **{fmt(hi['envoy_cpu_us_per_req'], 1)}** | "
          f"{fmt(lo['envoy_cpu_us_per_req'], 1)} | "
          f"{fmt(hi['envoy_cpu_pct'])} | {S[k]['clean_low']} / {S[k]['clean_high']} of {ROUNDS} |")
    w("")
    w("### Ratios (throughput, same run)\n")
    w(f"| ratio | c={L} | c={H} (saturation) | CPU µs/req difference (c={H}) |")
    w("|---|---:|---:|---:|")
    pairs = [(a, b) for a, b in RATIOS if a in S and b in S]
    against = {"X": ("4", "3"), "Y": ("5", "2")}
    pairs += [(x, b) for x in setups if x in against for b in against[x] if b in S]
    for num, den in pairs:
        rl = ratio(S[num]["low"]["rps"], S[den]["low"]["rps"])
        rh = ratio(S[num]["high"]["rps"], S[den]["high"]["rps"])
        a, b = S[num]["high"]["envoy_cpu_us_per_req"], S[den]["high"]["envoy_cpu_us_per_req"]
        d = "—" if a is None or b is None else f"{a - b:+.1f} µs"
        w(f"| {num}/{den} | {fmt(rl, 3)} | {fmt(rh, 3)} | {d} |")
    w("")
    w("### Against the targets\n")
    w(f"Throughput targets are judged at c={H} (saturation: Envoy's capacity); c={L} is shown "
      "for reference.\n")
    w("| target | measured | met |")
    w("|---|---|---|")

    def verdict(ok, point, *involved):
        if any(k not in S for k in involved):
            return "not run"
        if any(S[k][f"clean_{point}"] == 0 for k in involved):
            return "inconclusive (no clean run)"
        return "yes" if ok else "**no**"

    def rps_target(num, den, floor, what, note=""):
        if num not in S or den not in S:
            return
        rh = ratio(S[num]["high"]["rps"], S[den]["high"]["rps"])
        rl = ratio(S[num]["low"]["rps"], S[den]["low"]["rps"])
        w(f"| {what} ({num}/{den}) >= {floor:.2f}x{note} | {fmt(rh, 3)} at c={H}, {fmt(rl, 3)} at "
          f"c={L} | {verdict(rh is not None and rh >= floor, 'high', num, den)} |")

    yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
    rps_target("4", "3", WASM_FLOOR_TARGET, "Wasm build / Wasm floor throughput",
               " (before the dynamic module: 0.80–0.86)")
    rps_target("5", "2", DYNMOD_NATIVE_TARGET, "dynamic module / native chain throughput")
    if "5" in S and "2" in S:
        a, b = S["5"]["high"]["envoy_cpu_us_per_req"], S["2"]["high"]["envoy_cpu_us_per_req"]
        shown = "—" if a is None or b is None else f"{a:.1f} vs {b:.1f} µs ({a - b:+.1f} µs)"
        w(f"| dynamic module Envoy CPU per request < native chain's (5 vs 2, c={H}) | {shown} | "
          f"{verdict(a is not None and b is not None and a < b, 'high', '5', '2')} |")
    for k in ("4", "5"):
        if k not in S:
            continue
        added, paired = p99_added(data["runs"], k)
        what = f"p99 added over no filter at c={L} <= 100 µs ({k} vs 1)"
        if added is None or added < 0:
            # A filter cannot make requests faster: a negative difference is tail noise.
            shown = "no clean pair of rounds" if added is None else f"{added:+.0f} µs"
            w(f"| {what} | {shown} | inconclusive (tail noise) |")
        else:
            w(f"| {what} | {added:+.0f} µs (median of {paired} same-round differences) | "
              f"{verdict(added <= 100, 'low', k, '1')} |")
    toks = data.get("tokens", {})
    native = toks.get("2", {}).get("windows")
    for k in ("4", "5"):
        if k in toks:
            tok = toks[k]
            w(f"| metadata fetches per refresh with 4 workers: exactly 1 ({k}. "
              f"{SETUPS[k]['name'].split(' (')[0]}) | per window {tok['windows']} (native chain "
              f"{native}) | {yes(bool(tok['windows']) and all(c == 1 for c in tok['windows']))} |")
    crit = data.get("criterion", {}).get("decide/full_policy_admit")
    if crit:
        w(f"| pure policy core <= 2 µs per request | {crit['median_ns'] / 1000:.2f} µs (native) | {yes(crit['median_ns'] <= 2000)} |")
    sz = data["sizes"]["bcsp_guard"]
    ceiling = wasm_ceiling()
    w(f"| release .wasm <= the Makefile's ceiling ({ceiling // 1024} KiB) | {sz / 1024:.1f} KiB "
      f"({sz} bytes) | {yes(sz <= ceiling)} |")
    w("")
    w("### Is the load side the bottleneck? (it must not be)\n")
    uc = data["upstream_capacity"]
    w(f"- `wrk -c{H}` straight at the upstream, both on CPU {LOAD_CPU} (the same sharing as in "
      f"the runs): {fmt(uc['rps'])} rps, i.e. {uc['rps'] / S['1']['high']['rps']:.1f}x the "
      f"fastest Envoy setup (no filter, {fmt(S['1']['high']['rps'])} rps).")
    own1 = lambda k: S[k]["high"]["load_cpu_busy_pct"] - S[k]["high"].get("foreign_cpu1_pct", 0)  # noqa: E731
    w(f"- At saturation Envoy used {', '.join(fmt(S[k]['high']['envoy_cpu_pct']) + '%' for k in setups)} "
      f"of CPU {ENVOY_CPU} (setups {', '.join(setups)}), while wrk + upstream used "
      f"{', '.join(fmt(own1(k)) + '%' for k in setups)} of CPU {LOAD_CPU}: Envoy's CPU is "
      "the limit.\n")
    w("### Every run\n")
    w(f"Foreign = CPU time on a CPU not spent by this benchmark's processes (other sessions' "
      f"builds and tests share the machine), at c={L} / c={H}. A run with more than "
      f"{FOREIGN_MAX:.0f} % foreign on either CPU, or with Envoy under 90 % of its CPU at c={H}, "
      f"was repeated (up to {RETRIES} times each, {RETRY_BUDGET} in all; `attempts`); the last "
      "attempt is shown.\n")
    w(f"| run | c={L} rps | c={L} p50 µs | c={L} p99 µs | c={H} rps | c={H} p99 µs | Envoy µs/req c={H} | Envoy CPU % c={H} | CPU {LOAD_CPU} busy % c={H} | foreign CPU {ENVOY_CPU} % | foreign CPU {LOAD_CPU} % | attempts | clean c={L} / c={H} |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for rnd in range(1, ROUNDS + 1):
        for k in setups:
            r = data["runs"][k][rnd - 1]
            lo, hi = r["low"], r["high"]
            w(f"| {k}-r{rnd} | {fmt(lo['rps'])} | {fmt(lo['p50_us'])} | {fmt(lo['p99_us'])} | "
              f"{fmt(hi['rps'])} | {fmt(hi['p99_us'])} | {fmt(hi['envoy_cpu_us_per_req'], 1)} | "
              f"{fmt(hi['envoy_cpu_pct'])} | {fmt(hi['load_cpu_busy_pct'])} | "
              f"{fmt(lo['foreign_cpu0_pct'])} / {fmt(hi['foreign_cpu0_pct'])} | "
              f"{fmt(lo['foreign_cpu1_pct'])} / {fmt(hi['foreign_cpu1_pct'])} | {r['attempts']} | "
              f"{'yes' if clean_low(lo) else 'no'} / {'yes' if clean_high(hi) else 'no'} |")
    w("")
    report_instructions(data, w)
    if data.get("scaling"):
        report_scaling(data, w)
    w("## Release .wasm size\n")
    w("| module | release build | after `wasm-opt -Oz` |")
    w("|---|---:|---:|")
    w(f"| bcsp-guard (`target/wasm32-wasip1/release/bcsp_guard.wasm`) | {sz:,} B ({sz / 1024:.1f} KiB) | "
      f"{fmt(data['sizes'].get('bcsp_guard_oz'))} B |")
    w(f"| Wasm floor (`bench/floor-filter`) | {data['sizes']['floor']:,} B | {fmt(data['sizes'].get('floor_oz'))} B |")
    if "extra" in data["sizes"]:
        w(f"| setup X module | {data['sizes']['extra']:,} B | — |")
    if "dynmod" in data["sizes"]:
        d = data["sizes"]["dynmod"]
        w(f"| dynamic module (`target/release/libbcsp_guard_envoy.so`, native, not a Wasm "
          f"limit) | {d:,} B ({d / 1024:.1f} KiB) | — |")
    w("")
    if data.get("criterion"):
        w("## Pure policy core (criterion, native)\n")
        w("`cargo bench --bench policy` (`benches/policy.rs`): `config::compile` of "
          "`bench/configs/bcsp-guard-policy.json` once, then one `decide` per iteration with the "
          "13 headers the filter sees. Built with the release profile (see `Cargo.toml`), "
          f"pinned to CPU {ENVOY_CPU}.\n")
        w("| benchmark | median | mean |")
        w("|---|---:|---:|")
        for k, v in data["criterion"].items():
            w(f"| `{k}` | {v['median_ns']:.0f} ns | {v['mean_ns']:.0f} ns |")
        w("")
    if data.get("probe"):
        w("## What single proxy-wasm calls cost on V8 (`BENCH_PROBE=1`)\n")
        w(f"Measured {data.get('probe_date', data['date'])}. "
          f"`bench/probe-filter`: the Wasm floor plus one operation repeated {PROBE_N} times per "
          f"request; cost of one = (Envoy CPU µs/request − the `none` row) / {PROBE_N}, at "
          f"c={H}, median of {PROBE_ROUNDS} interleaved rounds. Noisy to a few tenths of a µs (the "
          f"once-per-request rows to about ±2 µs). Rows marked *300 routes* put 300 regex routes "
          f"ahead of the catch-all route; their `none` row shows what resolving the route costs "
          f"(against the plain `none`), their change row what one header change costs there.\n")
        w("| operation | Envoy CPU µs/req | one operation |")
        w("|---|---:|---:|")
        what = {"none": "floor only (reads one header)", "get_header": "`get_map_value` one header",
                "get_map": "`get_map_bytes`: all request headers, owned", "set_header": "`set_map_value` short value",
                "set_token": "`set_map_value` ~750-byte token", "remove_absent": "remove a header that is not there",
                "time": "`get_current_time`", "metric": "`increment_metric`",
                "property": "`get_property(source.address)`", "sha256": "SHA-256 of a 44-byte secret (pure Wasm)",
                "alloc14": "build 14 owned (String, String) pairs (pure Wasm)",
                "first_change": "**once per request**: one request-header change",
                "none@300": "floor only, *300 routes* (vs. floor only: the route lookup)",
                "first_change@300": "**once per request**: one request-header change, *300 routes*"}
        for op, v in data["probe"].items():
            w(f"| {what.get(op, op)} | {v['us_per_req']:.1f} | {v['per_op_us']:.2f} µs |")
        w("")
    if data.get("memory"):
        w("## Envoy memory per worker\n")
        w("VmRSS after 2 s of `wrk -c32` traffic; per worker = (RSS with `--concurrency 4` − RSS "
          "with `--concurrency 1`) / 3.\n")
        w("| setup | RSS, 1 worker | RSS, 4 workers | per worker |")
        w("|---|---:|---:|---:|")
        for k, v in data["memory"].items():
            w(f"| {k}. {SETUPS[k]['name']} | {v['rss1_kib'] / 1024:.1f} MiB | "
              f"{v['rss4_kib'] / 1024:.1f} MiB | {v['per_worker_kib'] / 1024:.2f} MiB |")
        w("")
    if data.get("tokens"):
        t = data["tokens"]
        w("## Metadata fetches per token refresh, 4 workers\n")
        w(f"Envoy `--concurrency 4` (pinned to CPU {ENVOY_CPU}), `wrk -c32 -d{TOKEN_SECONDS}s`, "
          "both setups refreshing on the same cadence: bcsp-guard with emulator "
          f"`--lifetime {TOKEN_LIFETIME}`, `refresh_margin_s: {TOKEN_MARGIN}`, "
          f"`expiry_skew_s: {TOKEN_SKEW}`; gcp_authn (cache on) with emulator "
          f"`--lifetime {NATIVE_TOKEN_LIFETIME}`, because it treats a token as expired 60 s "
          "before its `exp` and with shorter-lived tokens fetches on every request. Fetches seen "
          "by the emulator are grouped into windows (a gap of 3 s or more starts a new one); the "
          "first window is the cold start.\n")
        w("| setup | fetches | per window | window starts (s) | cold start | per refresh (mean / max) | rps | non-2xx |")
        w("|---|---:|---|---|---:|---:|---:|---:|")
        for k, v in t.items():
            w(f"| {k}. {SETUPS[k]['name']} | {v['total']} | {v['windows']} | {v['window_starts_s']} | "
              f"{v['cold_start']} | {fmt(v['per_refresh_mean'], 2)} / {fmt(v['per_refresh_max'])} | "
              f"{fmt(v['rps'])} | {v['non2xx']} |")
        w("")
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines))


# ---------------------------------------------------------------------------------------------

KNOBS = ['ROUNDS', 'SECONDS', 'WARMUP', 'LOW_C', 'HIGH_C', 'TOKEN_SECONDS', 'TOKEN_LIFETIME', 'TOKEN_MARGIN', 'TOKEN_SKEW', 'NATIVE_TOKEN_LIFETIME', 'RETRIES', 'RETRY_BUDGET', 'FOREIGN_MAX', 'PROBE_N']


# Each setup's baseline and floor for the instruction table: the floor makes the same
# mandatory Envoy calls (with the audit record when the setup writes one).
INSTR_BASES = {"5": ("2", "12"), "9": ("2", "11"), "10": ("2", None), "11": ("2", None),
               "12": ("2", None), "4": ("3", "14"), "8": ("3", "13"), "13": ("3", None),
               "14": ("3", None)}


def require_valgrind():
    if not shutil.which("valgrind"):
        raise SystemExit("bench: instruction counts need valgrind (`make bench` with "
                         "BENCH_INSTRUCTIONS=1 installs it; or apt-get install valgrind)")


def instruction_counts(setups, dynmod=None):
    """Instructions per request for each setup, from bench/instructions.py (one process per
    setup, so its callgrind Envoy never shares the machine with the timed ones)."""
    require_valgrind()
    counts = {}
    for k in setups:
        if k not in COUNTABLE:
            log(f"instructions: setup {k} skipped (bench/instructions.py does not know it)")
            continue
        argv = [sys.executable, os.path.join(BENCH, "instructions.py"), k, "1000"]
        if dynmod and k in ("5", "9"):
            argv.append(dynmod)
        log(f"instructions: setup {k}")
        out = subprocess.run(argv, capture_output=True, text=True,
                             env={**os.environ, "BENCH_INSTR_WARMUP": "3000"})
        m = re.search(r"setup \S+: ([\d,]+) instructions per request", out.stdout)
        if not m:
            raise SystemExit(f"bench: instructions for setup {k} failed:\n{out.stdout[-2000:]}"
                             f"{out.stderr[-2000:]}")
        counts[k] = int(m.group(1).replace(",", ""))
        log(f"instructions: setup {k}: {counts[k]:,} per request")
    return counts


def report_instructions(data, w):
    counts = data.get("instructions")
    if not counts:
        return
    w("## Instructions per request (callgrind, `BENCH_INSTRUCTIONS=1`)\n")
    w("Counted by `bench/instructions.py` (one worker, 1,000 sequential keep-alive requests after "
      "3,000 of warm-up): what Envoy executes, not how long it takes, so these do not move with "
      "the machine's speed and repeat to about ±1k. *Baseline / setup* is the throughput ratio "
      "the target names, were time to follow instructions; *floor / setup* compares a build "
      "with the floor that makes only its mandatory Envoy calls (setups 11 to 14).\n")
    w("| setup | instructions per request | baseline / setup | floor / setup |")
    w("|---|---:|---:|---:|")
    for k in data["setups"]:
        if k not in counts:
            continue
        base, floor = INSTR_BASES.get(k, (None, None))
        r = lambda d: fmt(counts[d] / counts[k], 3) if d in counts else "—"  # noqa: E731
        w(f"| {k}. {SETUPS[k]['name']} | {counts[k] / 1000:,.1f}k | "
          f"{r(base) + f' ({base})' if base else ''} | {r(floor) + f' ({floor})' if floor else ''} |")
    w("")
    rows = [("5", "2", DYNMOD_NATIVE_TARGET, "dynamic module vs native chain"),
            ("4", "3", WASM_FLOOR_TARGET, "Wasm build vs Wasm floor"),
            ("12", "2", DYNMOD_NATIVE_TARGET, "module floor with the audit record vs native chain"),
            ("11", "2", DYNMOD_NATIVE_TARGET, "module floor without it vs native chain"),
            ("14", "3", WASM_FLOOR_TARGET, "Wasm floor with the audit properties vs Wasm floor"),
            ("13", "3", WASM_FLOOR_TARGET, "Wasm floor without them vs Wasm floor")]
    shown = [(k, b, t, what) for k, b, t, what in rows if k in counts and b in counts]
    if shown:
        w("| target, by instruction count | baseline / setup | met |")
        w("|---|---:|---|")
        for k, b, t, what in shown:
            v = counts[b] / counts[k]
            w(f"| {what} ({b}/{k}) >= {t:.2f}x | {v:.3f} | {'yes' if v >= t else '**no**'} |")
        w("")


def add_instructions():
    """`bench/run.py --instructions`: count the last run's setups and rewrite the report."""
    path = os.path.join(OUT, "results.json")
    data = json.load(open(path))
    globals().update(data.get("knobs", {}))
    for k, spec in data.get("setup_specs", {}).items():
        SETUPS.setdefault(k, spec)
    data["instructions"] = instruction_counts(data["setups"])
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    rerender()


def rerender():
    """`bench/run.py --report`: rewrite RESULTS.md from target/bench/results.json (after
    editing the human notes, or the report code) without measuring again."""
    data = json.load(open(os.path.join(OUT, "results.json")))
    globals().update(data.get("knobs", {}))
    for k, spec in data.get("setup_specs", {}).items():
        SETUPS[k] = spec
    if "setup_specs" not in data and "5" in data["setups"]:
        # Runs from before the dynamic module: setup 5 was BENCH_EXTRA_WASM.
        SETUPS["5"] = {"name": "bcsp-guard, extra module", "config": "envoy-4-bcsp-guard.yaml",
                       "kind": "guard"}
    data["summary"] = summarize(data["runs"])
    if data.get("scaling"):
        data["scaling"]["summary"] = summarize_scaling(data["scaling"]["runs"])
    report(data)
    log(f"rewrote {os.path.relpath(RESULTS, ROOT)} from target/bench/results.json")


def main():
    if "--report" in sys.argv[1:]:
        return rerender()
    if "--instructions" in sys.argv[1:]:
        return add_instructions()
    global BCSP_WASM, BCSP_DYNMOD
    t0 = time.time()
    os.makedirs(LOGS, exist_ok=True)
    chosen = [s for s in os.environ.get("BENCH_SETUPS", ",".join(MAIN_SETUPS)).split(",") if s]
    unknown = [s for s in chosen if s not in MAIN_SETUPS]
    if unknown:
        raise SystemExit(f"bench: BENCH_SETUPS: unknown setups {unknown} (known: {MAIN_SETUPS})")
    setups = ["1"] + [s for s in MAIN_SETUPS if s in chosen and s != "1"]
    dynmod = "5" in setups
    for path, what in ((ENVOY, "Envoy (make envoy)"), (BCSP_WASM, "bcsp_guard.wasm (make wasm)"),
                       *([(BCSP_DYNMOD, "libbcsp_guard_envoy.so (make dynmod)")] if dynmod else []),
                       (FLOOR_WASM, "the floor filter"), (UPSTREAM_BIN, "bench-upstream"),
                       *([(PROBE_WASM, "the probe filter")] if PROBE else []),
                       (EMULATOR_BIN, "metadata-emulator")):
        if not os.path.exists(path):
            raise SystemExit(f"bench: missing {what}: {path}; run `make bench`")
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk not found; `make bench` installs it")
    if INSTRUCTIONS:
        require_valgrind()
    extra_wasm, extra_label = None, None
    if EXTRA:
        extra_wasm, _, extra_label = EXTRA.partition(":")
        extra_wasm = os.path.abspath(extra_wasm)
        SETUPS["X"] = {"name": f"bcsp-guard, {extra_label or os.path.basename(extra_wasm)}",
                       "config": "envoy-4-bcsp-guard.yaml", "kind": "guard", "wasm": extra_wasm}
        setups.append("X")
    if EXTRA_DYNMOD:
        path, _, label = EXTRA_DYNMOD.partition(":")
        SETUPS["Y"] = {**SETUPS["5"], "name": f"bcsp-guard, dynamic module, "
                       f"{label or os.path.basename(path)}", "dynmod": os.path.abspath(path)}
        setups.append("Y")
    if ACCESS_LOG:
        SETUPS["6"] = access_log_setup("4", "wasm")
        SETUPS["7"] = access_log_setup("5", "dynmod")
        setups += [k for k, base in (("6", "4"), ("7", "5")) if base in setups]
    if AUDIT_OFF:
        setups += [k for k, base in (("8", "4"), ("9", "5")) if base in setups]
    if MODULE_FLOOR:
        if not os.path.exists(FLOOR_DYNMOD):
            raise SystemExit(f"bench: missing the dynamic-module floor: {FLOOR_DYNMOD}; "
                             "run `make bench`")
        setups += ["10", "11", "12", "13", "14"]

    # Others may rebuild target/ while this runs: every round loads the same copies.
    frozen = os.path.join(OUT, "bcsp_guard.under-test.wasm")
    shutil.copyfile(BCSP_WASM, frozen)
    built_from = BCSP_WASM
    BCSP_WASM = frozen
    def freeze_dynmod(path, tag):
        # Envoy loads lib<name>.so from a directory: a directory of its own for each copy.
        frozen_dir = os.path.join(OUT, f"dynmod-{tag}")
        os.makedirs(frozen_dir, exist_ok=True)
        dst = os.path.join(frozen_dir, os.path.basename(BCSP_DYNMOD))
        shutil.copyfile(path, dst)
        return dst

    dynmod_sha = None
    if dynmod:
        BCSP_DYNMOD = freeze_dynmod(BCSP_DYNMOD, "under-test")
        dynmod_sha = hashlib.sha256(open(BCSP_DYNMOD, "rb").read()).hexdigest()
    if "Y" in setups:
        SETUPS["Y"]["dynmod"] = freeze_dynmod(SETUPS["Y"]["dynmod"], "extra")
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    dirty = git("status", "--porcelain", "--", "src", "hosts", "Cargo.toml", "Cargo.lock")
    data = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "git": git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else ""),
            "wasm_sha256": hashlib.sha256(open(frozen, "rb").read()).hexdigest(),
            "wasm_built_from": os.path.relpath(built_from, ROOT),
            "dynmod_sha256": dynmod_sha,
            "machine": machine(), "setups": setups,
            "setup_specs": {k: {f: v for f, v in SETUPS[k].items() if f != "values"}
                            for k in setups},
            "loadavg_before": open("/proc/loadavg").read().split()[:3]}
    knobs = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ)
                     if k.startswith("BENCH_") and k != "BENCH_RESULTS")
    data["command"] = (knobs + " " if knobs else "") + "make bench"
    data["knobs"] = {k: globals()[k] for k in KNOBS}
    log(f"machine: {data['machine']}")
    try:
        ports = {"upstream": free_port(), "metadata": free_port()}
        up = start("upstream", [UPSTREAM_BIN, "--listen", f"127.0.0.1:{ports['upstream']}"],
                   LOAD_CPU, os.path.join(LOGS, "upstream.log"))
        emu = start("emulator", [EMULATOR_BIN, "--listen", f"127.0.0.1:{ports['metadata']}",
                                 "--lifetime", "3600"], LOAD_CPU, os.path.join(LOGS, "emulator.log"))
        wait_http(ports["upstream"], "/_echo", what="upstream")
        wait_http(ports["metadata"], "/healthz", what="metadata emulator")
        addr, cidr = probe_client_address(ports)
        data["client_addr"], data["client_cidr"] = addr, cidr
        policy = policy_json(cidr)
        log(f"client address seen by the XFF rule: {addr} -> CIDR {cidr}")
        data["upstream_capacity"] = upstream_capacity(ports)
        log(f"upstream alone: {data['upstream_capacity']['rps']:.0f} rps")
        scaling = scaling_setups(cidr) if SCALING else []
        data["runs"], data["order"], scale_runs = throughput(setups, ports, policy, scaling)
        if scaling:
            data["scaling"] = {"runs": scale_runs, "summary": summarize_scaling(scale_runs),
                               "setups": [{k: sc[k] for k in ("id", "family", "cidrs", "keys")}
                                          for sc in scaling]}
        data["summary"] = summarize(data["runs"])
        if PROBE:
            data["probe"] = probe(ports)
            data["probe_date"] = data["date"]
        else:
            # The probe measures the runtime, not bcsp-guard: keep the last one, with its date.
            try:
                old = json.load(open(os.path.join(OUT, "results.json")))
                if old.get("probe"):
                    data["probe"], data["probe_date"] = old["probe"], old.get("probe_date", old["date"])
            except (OSError, ValueError):
                pass
        if "memory" not in SKIP:
            data["memory"] = memory(setups, ports, policy)
        stop(emu)
        stop(up)
        if "tokens" not in SKIP:
            up = start("upstream", [UPSTREAM_BIN, "--listen", f"127.0.0.1:{ports['upstream']}"],
                       LOAD_CPU, os.path.join(LOGS, "upstream-tokens.log"))
            wait_http(ports["upstream"], "/_echo", what="upstream")
            data["tokens"] = token_fetches(setups, {"upstream": ports["upstream"]}, cidr)
            stop(up)
    finally:
        stop_all()
    if INSTRUCTIONS:
        data["instructions"] = instruction_counts(setups, BCSP_DYNMOD)
    if "criterion" not in SKIP:
        log("criterion: cargo bench --bench policy")
        data["criterion"] = criterion()
    data["sizes"] = sizes(extra_wasm)
    data["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    data["wall_s"] = time.time() - t0
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(data, f, indent=1)
    report(data)
    log(f"wrote {os.path.relpath(RESULTS, ROOT)} and target/bench/results.json "
        f"in {data['wall_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
