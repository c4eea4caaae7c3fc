#!/usr/bin/env python3
"""Print Genesys Cloud's bot-connector egress ranges as a JSON array for `allow_cidrs`.

    deploy/genesys-ipranges.py --api https://api.mypurecloud.com          # your org's region
    GENESYS_TOKEN=... deploy/genesys-ipranges.py --api https://api.mypurecloud.ie
    deploy/genesys-ipranges.py --file ipranges.json --format lines       # a saved reply
    deploy/genesys-ipranges.py --api ... --format cloud-armor            # one rule per line

Reads GET {api}/api/v2/ipranges ({"entities":[{"cidr","service","region"[,"direction"]}]}),
keeps the entries of --service (default bot-connector, the service that calls a BCSP),
and prints them sorted and de-duplicated. `--format cloud-armor` prints them comma-joined, at
most 10 per line (Cloud Armor's limit for one rule's --src-ip-ranges): one line per rule, every
range on exactly one line. The ranges change over time: re-run it and redeploy
when Genesys announces changes. If your region's API answers 401 without a token, set
GENESYS_TOKEN to an OAuth client-credentials token of your org (no particular permission).
Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import urllib.request

# Cloud Armor accepts at most this many ranges in one rule's srcIpRanges.
CLOUD_ARMOR_RANGES_PER_RULE = 10


def fetch(api: str, timeout: float) -> dict:
    req = urllib.request.Request(api.rstrip("/") + "/api/v2/ipranges")
    req.add_header("Accept", "application/json")
    token = os.environ.get("GENESYS_TOKEN", "").strip()
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.load(resp)


def select(reply: dict, service: str, direction: str | None) -> list[str]:
    entities = reply.get("entities")
    if not isinstance(entities, list):
        raise ValueError('the reply has no "entities" list')
    nets = set()
    for e in entities:
        if not isinstance(e, dict) or e.get("service") != service:
            continue
        if direction is not None and e.get("direction") != direction:
            continue
        cidr = e.get("cidr")
        if not isinstance(cidr, str):
            raise ValueError(f"entry without a cidr string: {e!r}")
        # strict: an entry with host bits set (10.0.0.1/8) is an error here, as it is for
        # bcsp-guard, rather than silently widened to its network.
        nets.add(ipaddress.ip_network(cidr.strip(), strict=True))
    ordered = sorted(nets, key=lambda n: (n.version, n.network_address, n.prefixlen))
    return [str(n) for n in ordered]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--api", help="your region's API base, e.g. https://api.mypurecloud.com")
    src.add_argument("--file", help="read a saved /api/v2/ipranges reply instead")
    p.add_argument("--service", default="bot-connector")
    p.add_argument("--direction", help="keep only entries with this direction, if Genesys sends one")
    p.add_argument("--format", choices=["json", "lines", "cloud-armor"], default="json")
    p.add_argument("--timeout", type=float, default=20.0)
    a = p.parse_args()
    try:
        if a.file:
            with open(a.file, encoding="utf-8") as f:
                reply = json.load(f)
        else:
            reply = fetch(a.api, a.timeout)
        cidrs = select(reply, a.service, a.direction)
    except Exception as e:  # one line for the operator, not a traceback
        print(f"genesys-ipranges: {e}", file=sys.stderr)
        return 1
    if not cidrs:
        print(f"genesys-ipranges: no entries for service {a.service!r}", file=sys.stderr)
        return 1
    if a.format == "json":
        print(json.dumps(cidrs))
    elif a.format == "lines":
        print("\n".join(cidrs))
    else:
        n = CLOUD_ARMOR_RANGES_PER_RULE
        print("\n".join(",".join(cidrs[i : i + n]) for i in range(0, len(cidrs), n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
