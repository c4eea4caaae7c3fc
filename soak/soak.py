#!/usr/bin/env python3
"""bcsp-guard soak: a real Envoy (2 workers) with the filter, steady mixed load, metadata
faults and key rotations by config reload, for a bounded time; asserts and prints a summary.

    python3 soak/soak.py --minutes 5 --envoy ENVOY --wasm WASM --emulator METADATA_EMULATOR

`make soak` builds what it needs and runs this (SOAK_MINUTES=30 for longer). Python 3.11
standard library only. Everything listens on 127.0.0.1 on ports the kernel picks. The upstream
is this script's own recording server, so every request that gets past the filter is checked
one by one (key id, credential stripped, identity token present, right audience, unexpired).
See docs/SOAK.md for the schedule and how to read the summary. Exit status: 0 when every
assertion holds, 1 on any violation, 2 when the stack could not be started.
"""

import argparse
import base64
import hashlib
import http.client
import http.server
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

# ---- the soak's filter settings (docs/SOAK.md explains the choice) ------------------------
AUDIENCE = "https://bcsp-soak.a.run.app"
LIFETIME_S = 20          # emulator token lifetime
REFRESH_MARGIN_S = 10    # refresh at exp - 10 s (= mid-life for a 20 s token)
EXPIRY_SKEW_S = 2        # never sent within 2 s of exp
FETCH_TIMEOUT_MS = 1000
MAX_WAIT_MS = 3000
KEY_HEADER = "x-bcsp-key"
KEY_ID_HEADER = "x-bcsp-key-id"
BASE_PATH = "/botconnector"
LISTENER_NAME = "soak_ingress"
# After a refresh starts, a token stays usable for margin - skew seconds.
HEADROOM_S = REFRESH_MARGIN_S - EXPIRY_SKEW_S

T0 = time.time()


def now():
    return time.time()


def rel(t):
    """Seconds since the soak started, for logs and the summary."""
    return round(t - T0, 3)


def log(msg):
    print(f"[{rel(now()):8.1f}s] {msg}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_claims(token):
    try:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        return json.loads(b64url_decode(parts[1]))
    except Exception:
        return None


# ---- shared evidence ------------------------------------------------------------------------
class Evidence:
    def __init__(self, out_dir):
        self.lock = threading.Lock()
        self.violations = []           # (t, kind, detail)
        self.upstream_file = open(os.path.join(out_dir, "upstream.jsonl"), "w")
        self.client_file = open(os.path.join(out_dir, "client-non200.jsonl"), "w")
        self.upstream_total = 0
        self.upstream_by_key = {}
        self.tokens = {}               # jti -> {"first": t, "exp": exp, "last": t}
        self.min_seconds_left = None
        self.latest_exp = 0
        self.faults = []               # dicts: name, start, end, recovered, detail
        self.reloads = []              # dicts
        self.sent = {"valid": 0, "invalid": 0, "probe": 0}
        self.ok = {"valid": 0, "invalid": 0, "probe": 0}
        self.invalid_status = {}
        self.invalid_kinds = {}
        self.valid_non200 = []         # dicts
        self.latency_max_ms = 0.0

    def violation(self, kind, detail):
        with self.lock:
            self.violations.append((now(), kind, detail))
        log(f"VIOLATION {kind}: {detail}")

    def active_fault(self, t):
        """The scheduled fault or reload whose window (start .. recovery + 2 s) holds t."""
        for f in self.faults + self.reloads:
            end = f.get("recovered") or f.get("drained") or f.get("end") or now()
            if f["start"] - 1 <= t <= end + 2:
                return f["name"]
        return None


# ---- the recording upstream ---------------------------------------------------------------
class KeyBook:
    """Which key ids the filter may stamp on a forwarded request: any key in any config that
    has been written (a request can still be served by a draining filter chain)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ever_configured = set()

    def add(self, ids):
        with self.lock:
            self.ever_configured.update(ids)

    def known(self, kid):
        with self.lock:
            return kid in self.ever_configured


def make_upstream(ev, keybook):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def handle_any(self):
            t = now()
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            soak_id = self.headers.get("x-soak-id") or ""
            sent_kid = self.headers.get("x-soak-key-id") or ""
            kids = self.headers.get_all(KEY_ID_HEADER) or []
            auths = self.headers.get_all("authorization") or []
            rec = {"t": rel(t), "id": soak_id, "key_id": kids, "path": self.path}
            problems = []
            if not soak_id.startswith(("v-", "p-")):
                problems.append(("invalid_forwarded", f"request {soak_id or '<untagged>'} reached the upstream"))
            elif len(kids) != 1 or not keybook.known(kids[0]):
                problems.append(("invalid_forwarded", f"request {soak_id} reached the upstream with key id {kids!r}"))
            elif sent_kid and kids[0] != sent_kid:
                problems.append(("wrong_key_id", f"request {soak_id} sent key {sent_kid}, upstream saw {kids[0]}"))
            if self.headers.get(KEY_HEADER) is not None:
                problems.append(("credential_forwarded", f"request {soak_id} still carried {KEY_HEADER}"))
            if self.headers.get("x-serverless-authorization") is not None:
                problems.append(("stray_header", f"request {soak_id} carried x-serverless-authorization"))
            claims = None
            if len(auths) == 1 and auths[0].startswith("Bearer "):
                claims = jwt_claims(auths[0][len("Bearer "):])
            if not claims or not isinstance(claims.get("exp"), int):
                problems.append(("bad_token", f"request {soak_id} without a decodable identity token: {auths!r:.80}"))
            else:
                left = claims["exp"] - t
                rec.update(exp=claims["exp"], jti=claims.get("jti"), left=round(left, 3))
                if claims.get("aud") != AUDIENCE:
                    problems.append(("bad_token", f"request {soak_id} token aud {claims.get('aud')!r}"))
                if left <= 0:
                    problems.append(("expired_token", f"request {soak_id} token exp {claims['exp']} <= receive time {t:.3f}"))
            with ev.lock:
                ev.upstream_total += 1
                k = kids[0] if kids else "<none>"
                ev.upstream_by_key[k] = ev.upstream_by_key.get(k, 0) + 1
                if claims and "exp" in rec:
                    left = rec["left"]
                    if ev.min_seconds_left is None or left < ev.min_seconds_left:
                        ev.min_seconds_left = left
                    ev.latest_exp = max(ev.latest_exp, claims["exp"])
                    tok = ev.tokens.setdefault(rec.get("jti"), {"first": t, "exp": claims["exp"], "n": 0})
                    tok["last"] = t
                    tok["n"] += 1
                if problems:
                    rec["problems"] = [p[0] for p in problems]
                ev.upstream_file.write(json.dumps(rec) + "\n")
            for kind, detail in problems:
                ev.violation(kind, f"t={rel(t)}s {detail}")
            body = b'{"ok":true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = handle_any
        do_POST = handle_any

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    return Server(("127.0.0.1", 0), Handler)


# ---- config files ---------------------------------------------------------------------------
def filter_config(keys):
    return json.dumps({
        "keys": [{"id": k["id"], "header": KEY_HEADER, "sha256": k["sha256"]} for k in keys],
        "client_ip": {"from": "downstream"},
        "allow_cidrs": ["127.0.0.0/8"],
        "key_id_header": KEY_ID_HEADER,
        "upstream_token": {
            "cluster": "gcp_metadata", "audience": AUDIENCE, "header": "authorization",
            "refresh_margin_s": REFRESH_MARGIN_S, "expiry_skew_s": EXPIRY_SKEW_S,
            "max_wait_ms": MAX_WAIT_MS, "fetch_timeout_ms": FETCH_TIMEOUT_MS,
        },
    })


def listener_resource(port, wasm, keys):
    return {"resources": [{
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": LISTENER_NAME,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "soak_ingress",
                "use_remote_address": True,
                "normalize_path": True,
                "merge_slashes": True,
                "route_config": {"virtual_hosts": [{
                    "name": "bcsp", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "bcsp", "timeout": "30s"}}]}]},
                "http_filters": [
                    {"name": "envoy.filters.http.wasm", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                        "config": {
                            "name": "bcsp_guard", "root_id": "bcsp_guard", "fail_open": False,
                            "vm_config": {"vm_id": "bcsp_guard", "runtime": "envoy.wasm.runtime.v8",
                                          "code": {"local": {"filename": wasm}}},
                            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                              "value": filter_config(keys)}}}},
                    {"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                ]}}]}],
    }]}


def bootstrap(lds_path, lds_dir, upstream_port, metadata_port):
    def cluster(name, port, timeout):
        return {"name": name, "type": "STATIC", "connect_timeout": timeout,
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}
    return {
        "node": {"id": "bcsp-guard-soak", "cluster": "bcsp-guard-soak"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"clusters": [cluster("bcsp", upstream_port, "2s"),
                                          cluster("gcp_metadata", metadata_port, "1s")]},
        "dynamic_resources": {"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {"path": lds_path, "watched_directory": {"path": lds_dir}}}},
    }


def atomic_write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


# ---- keys -----------------------------------------------------------------------------------
def make_key(n):
    secret = base64.b64encode(os.urandom(32)).decode()
    return {"id": f"soak-k{n}", "secret": secret, "sha256": hashlib.sha256(secret.encode()).hexdigest()}


class KeyState:
    """What the load clients send. `epoch` changes on every confirmed reload; clients then open
    a new connection so they are served by the current filter chain."""

    def __init__(self, first):
        self.lock = threading.Lock()
        self.current = first     # valid clients send this
        self.future = None       # a key not configured yet (invalid)
        self.retired = []        # keys removed from the config, removal confirmed and drained
        self.epoch = 0

    def snapshot(self):
        with self.lock:
            return self.current, self.future, list(self.retired[-3:]), self.epoch


# ---- load -----------------------------------------------------------------------------------
MESSAGE = json.dumps({"botId": "soak-bot", "botVersion": "1", "botSessionId": "s-1", "messageId": "m-1",
                      "inputMessage": {"type": "Text", "text": "hello"}, "languageCode": "en-us"})


def client_thread(idx, port, rate, invalid_every, ks, ev, stop):
    conn = None
    my_epoch = -1
    n = 0
    period = 1.0 / rate
    next_t = now() + random.random() * period
    rnd = random.Random(idx)
    while not stop.is_set():
        delay = next_t - now()
        if delay > 0:
            time.sleep(delay)
        next_t += period
        if next_t < now() - 1:      # fell behind (busy machine): do not burst to catch up
            next_t = now() + period
        current, future, retired, epoch = ks.snapshot()
        if epoch != my_epoch or conn is None:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            my_epoch = epoch
        n += 1
        invalid = n % invalid_every == 0
        headers = {"x-soak-id": f"{'i' if invalid else 'v'}-{idx}-{n}", "user-agent": "bcsp-guard-soak"}
        if invalid:
            choices = ["none", "wrong", "case"] + (["future"] if future else []) + (["retired"] if retired else [])
            kind = rnd.choice(choices)
            headers["x-soak-id"] = f"inv-{kind}-{idx}-{n}"
            if kind == "wrong":
                headers[KEY_HEADER] = current["secret"][:-4] + "AAA="
            elif kind == "case":   # right header, secret in another letter case
                headers[KEY_HEADER] = current["secret"].swapcase()
            elif kind == "future":
                headers[KEY_HEADER] = future["secret"]
                headers["x-soak-key-id"] = future["id"]
            elif kind == "retired":
                k = rnd.choice(retired)
                headers[KEY_HEADER] = k["secret"]
                headers["x-soak-key-id"] = k["id"]
        else:
            kind = "valid"
            headers[KEY_HEADER] = current["secret"]
            headers["x-soak-key-id"] = current["id"]
        post = n % 2 == 0
        t_send = now()
        status, err, body = 0, None, b""
        try:
            if post:
                headers["content-type"] = "application/json"
                conn.request("POST", BASE_PATH + "/messages", body=MESSAGE, headers=headers)
            else:
                conn.request("GET", BASE_PATH + "/bots", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            status = resp.status
        except Exception as e:  # transport error: recorded, connection reopened
            err = f"{type(e).__name__}: {e}"
            conn.close()
            conn = None
        t_done = now()
        cat = "invalid" if invalid else "valid"
        with ev.lock:
            ev.sent[cat] += 1
            ev.latency_max_ms = max(ev.latency_max_ms, (t_done - t_send) * 1000)
            if invalid:
                ev.invalid_kinds[kind] = ev.invalid_kinds.get(kind, 0) + 1
                ev.invalid_status[str(status)] = ev.invalid_status.get(str(status), 0) + 1
            if status == 200:
                ev.ok[cat] += 1
        if invalid and status != 401:
            ev.violation("invalid_not_401", f"t={rel(t_send)}s {headers['x-soak-id']} got {status or err}")
        if not invalid and status != 200:
            try:
                code = json.loads(body).get("error")
            except Exception:
                code = body[:80].decode("latin-1")
            rec = {"t": rel(t_send), "id": headers["x-soak-id"], "status": status, "error": err or code,
                   "key": current["id"], "fault": ev.active_fault(t_send)}
            with ev.lock:
                ev.valid_non200.append(rec)
                ev.client_file.write(json.dumps(rec) + "\n")
            log(f"valid request non-200: {rec}")
    if conn is not None:
        conn.close()


# ---- the stack ------------------------------------------------------------------------------
class Stack:
    def __init__(self, args, out_dir):
        self.args = args
        self.out = out_dir
        self.procs = []

    def start_emulator(self):
        port = free_port()
        self.em_log = open(os.path.join(self.out, "metadata-emulator.log"), "w")
        p = subprocess.Popen([self.args.emulator, "--listen", f"127.0.0.1:{port}", "--lifetime", str(LIFETIME_S)],
                             stdout=self.em_log, stderr=self.em_log, stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        self.em = p
        self.em_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(self.em_url + "/healthz")[0] == 200, 15, "metadata emulator")
        return port

    def emulator(self, method, path):
        req = urllib.request.Request(self.em_url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"null") if path.endswith("stats") else r.status

    def start_envoy(self, cfg_path):
        self.admin_path = os.path.join(self.out, "admin.addr")
        self.envoy_log = os.path.join(self.out, "envoy.log")
        out = open(os.path.join(self.out, "envoy.out"), "w")
        # --disable-hot-restart: no shared-memory base id, so no clash with any other Envoy on the
        # machine; the key rotation is a listener reload (filesystem LDS), not a hot restart.
        cmd = [self.args.envoy, "-c", cfg_path, "--concurrency", "2", "--disable-hot-restart",
               "--drain-time-s", "3", "--admin-address-path", self.admin_path,
               "--log-path", self.envoy_log, "-l", "info", "--file-flush-interval-msec", "200"]
        p = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        self.envoy = p
        wait_until(lambda: os.path.exists(self.admin_path) and os.path.getsize(self.admin_path) > 0, 20, "Envoy admin address")
        with open(self.admin_path) as f:
            self.admin = "http://" + f.read().strip()
        wait_until(lambda: http_get(self.admin + "/ready")[0] == 200, 30, "Envoy ready")

    def stats(self):
        code, body = http_get(self.admin + "/stats?format=json", timeout=5)
        out = {}
        if code == 200:
            for s in json.loads(body).get("stats", []):
                if "name" in s and "value" in s:
                    out[s["name"]] = s["value"]
        return out

    def rss_kib(self):
        try:
            with open(f"/proc/{self.envoy.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()


def http_get(url, headers=None, timeout=2):
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception:
        return 0, b""


def wait_until(pred, timeout, what):
    end = now() + timeout
    while now() < end:
        if pred():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout}s")


# ---- the run --------------------------------------------------------------------------------
class Soak:
    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.out)
        shutil.rmtree(self.out, ignore_errors=True)
        os.makedirs(self.out)
        self.ev = Evidence(self.out)
        self.keybook = KeyBook()
        self.stack = Stack(args, self.out)
        self.stop_load = threading.Event()
        self.rss_samples = []
        self.key_n = 0
        self.probes = 0

    # -- helpers --
    def probe(self, key, tries_s=10):
        """A request on a fresh connection with `key`; True once it answers 200."""
        end = now() + tries_s
        while now() < end:
            self.probes += 1
            code, _ = http_get(f"http://127.0.0.1:{self.listener_port}{BASE_PATH}/bots",
                               {KEY_HEADER: key["secret"], "x-soak-id": f"p-{self.probes}", "x-soak-key-id": key["id"]},
                               timeout=5)
            with self.ev.lock:
                self.ev.sent["probe"] += 1
                if code == 200:
                    self.ev.ok["probe"] += 1
            if code == 200:
                return True
            time.sleep(0.2)
        return False

    def fetches(self):
        return self.stack.emulator("GET", "/_emulator/stats")["total"]

    def write_listener(self, keys):
        self.keybook.add(k["id"] for k in keys)
        atomic_write(self.lds_path, json.dumps(listener_resource(self.listener_port, self.wasm, keys), indent=1))

    def reload(self, name, keys):
        """Replace the listener file atomically; wait until Envoy applied it and old chains drained."""
        before = self.stack.stats()
        rec = {"name": name, "start": now(), "keys": [k["id"] for k in keys]}
        self.ev.reloads.append(rec)
        self.write_listener(keys)
        ok_before = before.get("listener_manager.lds.update_success", 0)
        rej_before = before.get("listener_manager.lds.update_rejected", 0)

        def applied():
            s = self.stack.stats()
            if s.get("listener_manager.lds.update_rejected", 0) > rej_before:
                raise RuntimeError(f"{name}: Envoy rejected the listener update (see envoy.log)")
            return (s.get("listener_manager.lds.update_success", 0) > ok_before
                    and s.get("listener_manager.total_listeners_warming", 1) == 0)
        try:
            wait_until(applied, 20, f"{name}: listener update")
        except RuntimeError as e:
            self.ev.violation("reload_failed", str(e))
            rec["end"] = now()
            return False
        rec["applied"] = now()
        ks = self.ks
        with ks.lock:
            ks.epoch += 1
        rec["end"] = now()
        log(f"reload {name}: keys {rec['keys']} applied in {rec['applied'] - rec['start']:.2f}s")
        return True

    def wait_drained(self, timeout=30):
        def drained():
            s = self.stack.stats()
            return (s.get("listener_manager.total_filter_chains_draining", 0) == 0
                    and s.get("listener_manager.total_listeners_draining", 0) == 0)
        wait_until(drained, timeout, "old filter chains drained")

    def next_refresh(self, lead_s):
        """Unix time at which the filter starts refreshing the token the upstream sees now,
        waiting for a token whose refresh is at least lead_s + 0.5 s away."""
        while True:
            with self.ev.lock:
                exp = self.ev.latest_exp
            r = exp - REFRESH_MARGIN_S
            if exp and r - now() > lead_s + 0.5:
                return r
            time.sleep(0.1)

    def sleep_until(self, t):
        while now() < t:
            time.sleep(min(0.05, max(0.0, t - now())))

    def wait_new_token(self, after, timeout=40):
        """Time a token fetched after `after` was first seen by the upstream, or None."""
        end = now() + timeout
        while now() < end:
            with self.ev.lock:
                firsts = [v["first"] for v in self.ev.tokens.values() if v["first"] > after]
            if firsts:
                return min(firsts)
            time.sleep(0.1)
        return None

    def fault(self, name, detail, lead_s, apply, clear_at_s, clear):
        """Apply a metadata fault lead_s before the next refresh, clear it clear_at_s after it."""
        r = self.next_refresh(lead_s)
        self.sleep_until(r - lead_s)
        f0 = self.fetches()
        rec = {"name": name, "detail": detail, "start": now(), "refresh_due": r}
        self.ev.faults.append(rec)
        apply()
        self.sleep_until(r + clear_at_s)
        clear()
        rec["end"] = now()
        rec["recovered"] = self.wait_new_token(r)
        rec["fetches"] = self.fetches() - f0
        took = (rec["recovered"] - r) if rec["recovered"] else None
        rec["refresh_took_s"] = round(took, 2) if took is not None else None
        log(f"fault {name}: {detail}; refresh due at {rel(r)}s, new token first seen "
            f"{'never' if took is None else f'{took:.2f}s after'}; {rec['fetches']} metadata requests")
        if took is None or took > HEADROOM_S:
            self.ev.violation("refresh_late", f"{name}: no new token within the {HEADROOM_S}s headroom (took {took})")

    def burst500(self):
        self.fault("burst-500", "next 3 metadata fetches answer 500", 1.0,
                   lambda: self.stack.emulator("POST", "/_emulator/fail?count=3&status=500"), 0.0,
                   lambda: None)

    def stall(self):
        self.fault("stall", f"every metadata answer delayed 1500 ms (> fetch_timeout_ms {FETCH_TIMEOUT_MS}) "
                   "from refresh-1 s to refresh+2.5 s", 1.0,
                   lambda: self.stack.emulator("POST", "/_emulator/delay?ms=1500"), 2.5,
                   lambda: self.stack.emulator("POST", "/_emulator/delay?ms=0"))

    def outage(self):
        self.fault("outage", "metadata server down (503 to all) from refresh-4 s to refresh+1.4 s "
                   f"(5.4 s, < the {HEADROOM_S + 4} s of token life beyond skew left at its start)", 4.0,
                   lambda: self.stack.emulator("POST", "/_emulator/mode?m=down"), 1.4,
                   lambda: self.stack.emulator("POST", "/_emulator/mode?m=normal"))

    def rotate(self):
        ks = self.ks
        old = ks.current
        self.key_n += 1
        new = make_key(self.key_n)
        with ks.lock:
            ks.future = new
        time.sleep(3)   # let the invalid mix try the not-yet-configured key
        with ks.lock:
            ks.future = None     # from here on the key may be live; no longer "invalid"
        if not self.reload(f"add {new['id']}", [old, new]):
            return
        if not self.probe(new):
            self.ev.violation("reload_not_effective", f"{new['id']} not admitted 10 s after its reload")
        with ks.lock:
            ks.current = new
            ks.epoch += 1
        log(f"clients switched to {new['id']}")
        time.sleep(8)
        if not self.reload(f"remove {old['id']}", [new]):
            return
        self.wait_drained()
        with ks.lock:
            ks.retired.append(old)
        self.ev.reloads[-1]["drained"] = now()
        log(f"{old['id']} retired (old filter chains drained)")

    def sample_rss(self):
        while not self.stop_load.is_set():
            r = self.stack.rss_kib()
            self.rss_samples.append((rel(now()), r))
            if self.stack.envoy.poll() is not None:
                self.ev.violation("envoy_exited", f"Envoy exited with status {self.stack.envoy.returncode}")
                return
            self.stop_load.wait(5)

    def run(self):
        a = self.args
        duration = a.minutes * 60
        # Copy the module: others may rebuild target/ while the soak runs, and every reload re-reads it.
        self.wasm = os.path.join(self.out, "bcsp_guard.wasm")
        shutil.copyfile(a.wasm, self.wasm)
        upstream = make_upstream(self.ev, self.keybook)
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        up_port = upstream.server_address[1]
        md_port = self.stack.start_emulator()
        self.listener_port = free_port()
        lds_dir = os.path.join(self.out, "lds")
        os.makedirs(lds_dir)
        self.lds_path = os.path.join(lds_dir, "listener.json")
        first = make_key(0)
        self.ks = KeyState(first)
        self.write_listener([first])
        cfg = os.path.join(self.out, "envoy.json")
        with open(cfg, "w") as f:
            json.dump(bootstrap(self.lds_path, lds_dir, up_port, md_port), f, indent=1)
        self.stack.start_envoy(cfg)
        envoy_pid = self.stack.envoy.pid
        log(f"Envoy pid {envoy_pid} admin {self.stack.admin} listener 127.0.0.1:{self.listener_port}; "
            f"emulator {self.stack.em_url}; upstream 127.0.0.1:{up_port}; output {self.out}")
        if not self.probe(first, 15):
            raise RuntimeError("no request got through Envoy within 15 s")
        rss_start = self.stack.rss_kib()
        t_load = now()
        threads = [threading.Thread(target=client_thread, args=(i, self.listener_port, a.rate, a.invalid_every,
                                                               self.ks, self.ev, self.stop_load), daemon=True)
                   for i in range(a.threads)]
        for t in threads:
            t.start()
        threading.Thread(target=self.sample_rss, daemon=True).start()
        log(f"load: {a.threads} clients x {a.rate} req/s, every {a.invalid_every}th request invalid; "
            f"run {a.minutes} min; RSS at start {rss_start} KiB")
        end_t = t_load + duration
        warm = min(60.0, duration / 5)
        self.sleep_until(t_load + warm)
        rss_warm = self.stack.rss_kib()
        log(f"warm-up done: RSS {rss_warm} KiB")
        schedule = [self.burst500, self.rotate, self.outage, self.rotate, self.stall]
        i = 0
        cycles = 0
        while now() < end_t - 45 and self.stack.envoy.poll() is None:
            schedule[i % len(schedule)]()
            i += 1
            if i % len(schedule) == 0:
                cycles += 1
            self.sleep_until(min(end_t, now() + a.quiet))
        self.sleep_until(end_t)
        self.stop_load.set()
        for t in threads:
            t.join(timeout=15)
        time.sleep(0.5)
        return self.summarize(envoy_pid, rss_start, rss_warm, t_load, i, duration)

    def summarize(self, envoy_pid, rss_start, rss_warm, t_load, events, duration):
        a = self.args
        ev = self.ev
        alive = self.stack.envoy.poll() is None
        rss_end = self.stack.rss_kib() if alive else None
        stats = self.stack.stats() if alive else {}
        if not alive:
            ev.violation("envoy_exited", f"Envoy not running at the end (status {self.stack.envoy.returncode})")
        crash_lines = []
        for path in (self.stack.envoy_log, os.path.join(self.out, "envoy.out")):
            try:
                with open(path, errors="replace") as f:
                    for line in f:
                        if any(w in line for w in ("Caught ", "Backtrace (use tools", "][critical][", "panicked at")):
                            crash_lines.append(line.strip()[:200])
            except OSError:
                pass
        if crash_lines:
            ev.violation("envoy_crash_log", f"{len(crash_lines)} crash/critical lines in envoy.log, first: {crash_lines[0]}")
        rss_bound_kib = a.rss_bound_mib * 1024
        growth = (rss_end - rss_warm) if (rss_end and rss_warm) else None
        if growth is not None and growth > rss_bound_kib:
            ev.violation("rss_growth", f"Envoy RSS grew {growth} KiB after warm-up (bound {rss_bound_kib} KiB)")
        g = lambda k: stats.get("wasmcustom.bcsp_guard." + k, stats.get("bcsp_guard." + k))
        fetch_ok, fetch_failed = g("token.fetch_ok"), g("token.fetch_failed")
        em_total = self.fetches()
        # One successful fetch per refresh: a 20 s token refreshed 10 s before exp -> every ~10 s.
        run_s = now() - T0
        expected = run_s / (LIFETIME_S - REFRESH_MARGIN_S)
        tokens_seen = len(ev.tokens)
        if fetch_ok is not None and fetch_ok > expected * 1.15 + 3:
            ev.violation("fetch_storm", f"{fetch_ok} successful fetches, expected about {expected:.0f} (one per refresh)")
        if fetch_ok is not None and fetch_ok < expected * 0.85 - 3:
            ev.violation("refresh_missed", f"{fetch_ok} successful fetches, expected about {expected:.0f}")
        in_faults = sum(f.get("fetches") or 0 for f in ev.faults)
        gaps_first = sorted(v["first"] for v in ev.tokens.values())
        close = [round(b - a_, 2) for a_, b in zip(gaps_first, gaps_first[1:]) if b - a_ < 3]
        if close:
            ev.violation("duplicate_fetch", f"new tokens first seen {close} s apart (single-flight broken?)")
        if fetch_ok is not None and tokens_seen > fetch_ok:
            ev.violation("token_accounting", f"{tokens_seen} tokens seen upstream but fetch_ok {fetch_ok}")
        for f in ev.faults:
            if f.get("fetches", 0) > 8:
                ev.violation("fault_hammering", f"{f['name']} at {rel(f['start'])}s: {f['fetches']} metadata requests")
        unexplained = [r for r in ev.valid_non200 if not r["fault"]]
        # Every scheduled fault is designed to cost no request (docs/SOAK.md); any non-200 is a
        # violation, listed with the window it fell in.
        for r in ev.valid_non200:
            ev.violation("valid_non200", json.dumps(r))
        gaps = sorted(v["first"] for v in ev.tokens.values())
        intervals = [b - a_ for a_, b in zip(gaps, gaps[1:])]
        summary = {
            "duration_min": round((now() - t_load) / 60, 2),
            "load": f"{a.threads} clients x {a.rate} req/s, 1 in {a.invalid_every} invalid",
            "valid_sent": ev.sent["valid"], "valid_200": ev.ok["valid"],
            "valid_non200": len(ev.valid_non200), "valid_non200_unexplained": len(unexplained),
            "invalid_sent": ev.sent["invalid"], "invalid_by_kind": ev.invalid_kinds,
            "invalid_status": ev.invalid_status,
            "probes_sent": ev.sent["probe"], "probes_200": ev.ok["probe"],
            "upstream_requests": ev.upstream_total, "upstream_by_key_id": ev.upstream_by_key,
            "invalid_forwarded": sum(1 for v in ev.violations if v[1] == "invalid_forwarded"),
            "upstream_without_valid_token": sum(1 for v in ev.violations if v[1] in ("bad_token", "expired_token")),
            "credential_forwarded": sum(1 for v in ev.violations if v[1] == "credential_forwarded"),
            "min_token_seconds_left_at_upstream": ev.min_seconds_left,
            "max_client_latency_ms": round(ev.latency_max_ms, 1),
            "envoy_pid_start_end": [envoy_pid, self.stack.envoy.pid if alive else None],
            "envoy_alive_at_end": alive, "envoy_crashes": 0 if alive and not crash_lines else 1,
            "envoy_restarts": 0, "envoy_uptime_s": stats.get("server.uptime"),
            "rss_kib": {"start": rss_start, "after_warmup": rss_warm, "end": rss_end,
                        "max": max((r for _, r in self.rss_samples if r), default=None),
                        "growth_after_warmup": growth, "bound": rss_bound_kib},
            "metadata_requests_total": em_total, "fetch_ok": fetch_ok, "fetch_failed": fetch_failed,
            "metadata_requests_in_fault_windows": in_faults,
            "metadata_requests_outside_faults": em_total - in_faults,
            "refreshes_expected": round(expected, 1), "distinct_tokens_seen_upstream": tokens_seen,
            "token_interval_s": {"min": round(min(intervals), 2) if intervals else None,
                                 "max": round(max(intervals), 2) if intervals else None},
            "denied_counters": {k.split("bcsp_guard.", 1)[1]: v for k, v in stats.items()
                                if "bcsp_guard.denied" in k or "bcsp_guard.allowed" in k},
            "lds": {k.split(".")[-1]: stats.get(k) for k in ("listener_manager.lds.update_success",
                                                               "listener_manager.lds.update_rejected",
                                                               "listener_manager.listener_in_place_updated",
                                                               "listener_manager.listener_modified")},
            "faults": [{"name": f["name"], "at_s": rel(f["start"]), "refresh_due_s": rel(f["refresh_due"]),
                        "new_token_after_s": f.get("refresh_took_s"), "metadata_requests": f.get("fetches")}
                       for f in ev.faults],
            "reloads": [{"name": r["name"], "at_s": rel(r["start"]),
                         "applied_after_s": round(r["applied"] - r["start"], 2) if r.get("applied") else None}
                        for r in ev.reloads],
            "key_rotations": sum(1 for r in ev.reloads if r["name"].startswith("remove") and r.get("drained")),
            "violations": [{"t_s": rel(t), "kind": k, "detail": d} for t, k, d in ev.violations],
        }
        with ev.lock:
            ev.upstream_file.flush()
            ev.client_file.flush()
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        with open(os.path.join(self.out, "rss.csv"), "w") as f:
            f.write("t_s,rss_kib\n" + "".join(f"{t},{r}\n" for t, r in self.rss_samples))
        print_summary(summary, self.out)
        return 1 if ev.violations else 0


def print_summary(s, out):
    r = s["rss_kib"]
    mib = lambda k: f"{k / 1024:.1f} MiB" if k is not None else "n/a"
    lines = [
        "",
        "================ bcsp-guard soak summary ================",
        f"duration                 {s['duration_min']} min of load ({s['load']})",
        f"valid requests           sent {s['valid_sent']}, answered 200: {s['valid_200']}, non-200: {s['valid_non200']} "
        f"(unexplained {s['valid_non200_unexplained']})",
        f"invalid requests         sent {s['invalid_sent']} {s['invalid_by_kind']}, answers {s['invalid_status']}",
        f"invalid forwarded        {s['invalid_forwarded']}   (must be 0)",
        f"upstream requests        {s['upstream_requests']} by key id {s['upstream_by_key_id']}",
        f"without valid token      {s['upstream_without_valid_token']}   (must be 0; least token life left at the upstream "
        f"{s['min_token_seconds_left_at_upstream']} s)",
        f"credential forwarded     {s['credential_forwarded']}   (must be 0)",
        f"Envoy                    alive at end: {s['envoy_alive_at_end']}, crashes {s['envoy_crashes']}, restarts "
        f"{s['envoy_restarts']}, pid {s['envoy_pid_start_end']}, uptime {s['envoy_uptime_s']} s",
        f"Envoy RSS                start {mib(r['start'])}, after warm-up {mib(r['after_warmup'])}, end {mib(r['end'])}, "
        f"max {mib(r['max'])}; growth after warm-up {mib(r['growth_after_warmup'])} (bound {mib(r['bound'])})",
        f"metadata                 {s['metadata_requests_total']} requests; fetch_ok {s['fetch_ok']}, fetch_failed "
        f"{s['fetch_failed']} ({s['metadata_requests_in_fault_windows']} requests in fault windows, "
        f"{s['metadata_requests_outside_faults']} outside); refreshes expected ~{s['refreshes_expected']}; tokens seen upstream "
        f"{s['distinct_tokens_seen_upstream']}, interval {s['token_interval_s']['min']}-{s['token_interval_s']['max']} s",
        f"key rotations            {s['key_rotations']} ({len(s['reloads'])} listener reloads, LDS {s['lds']})",
        f"max client latency       {s['max_client_latency_ms']} ms",
        "faults (at / refresh due / new token after / metadata requests):",
    ]
    for f in s["faults"]:
        lines.append(f"  {f['name']:<10} at {f['at_s']:>8}s  due {f['refresh_due_s']:>8}s  new token after "
                     f"{f['new_token_after_s']} s  requests {f['metadata_requests']}")
    lines.append(f"violations               {len(s['violations'])}")
    for v in s["violations"][:30]:
        lines.append(f"  [{v['t_s']}s] {v['kind']}: {v['detail']}")
    lines.append(f"RESULT: {'PASS' if not s['violations'] else 'FAIL'}   (details: {out}/summary.json)")
    print("\n".join(lines), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--envoy", required=True)
    p.add_argument("--wasm", required=True)
    p.add_argument("--emulator", required=True)
    p.add_argument("--out", default="target/soak")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--rate", type=float, default=15.0, help="requests per second per client (<= 50)")
    p.add_argument("--invalid-every", type=int, default=5, help="every Nth request of a client is invalid")
    p.add_argument("--quiet", type=float, default=10.0, help="seconds of undisturbed load between events")
    p.add_argument("--rss-bound-mib", type=float, default=20.0)
    a = p.parse_args()
    if a.minutes < 2:
        p.error("--minutes must be at least 2 (one full fault and rotation schedule)")
    if a.threads * a.rate > 200:
        p.error("keep the load at or under 200 req/s in total")
    soak = Soak(a)
    try:
        rc = soak.run()
    except RuntimeError as e:
        print(f"soak: {e}", file=sys.stderr)
        rc = 2
    finally:
        soak.stop_load.set()
        soak.stack.stop()
    sys.exit(rc)


if __name__ == "__main__":
    main()
