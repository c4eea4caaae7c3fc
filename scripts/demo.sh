#!/usr/bin/env bash
# `make demo`: a scripted Genesys-like conversation against the stack `make run` started.
# Prints each exchange (request, status, reply) and what the BCSP says reached it.
# Exits non-zero if an admitted call is not answered 200 or a refused one not 401.
#
# Overrides: BCSP_GUARD_URL (default http://127.0.0.1:10000), BCSP_BASE_PATH
# (/botconnector), BCSP_GUARD_KEY (the demo secret), BCSP_GUARD_AUDIENCE.
set -euo pipefail

URL=${BCSP_GUARD_URL:-http://127.0.0.1:10000}
BASE=${BCSP_BASE_PATH:-/botconnector}
KEY_HEADER=x-bcsp-key
KEY=${BCSP_GUARD_KEY:-demo-secret-change-me}
KEY_ID=demo-genesys
AUDIENCE=${BCSP_GUARD_AUDIENCE:-https://bcsp-demo.a.run.app}
SESSION="demo-session-$(date +%s)-$$"
CONVERSATION="demo-conversation-$$"

command -v curl >/dev/null || {
    echo "demo.sh: curl is needed" >&2
    exit 1
}
PYTHON=$(command -v python3 || true)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [[ -t 1 ]]; then
    BOLD=$'\e[1m' GREEN=$'\e[32m' RED=$'\e[31m' DIM=$'\e[2m' RESET=$'\e[0m'
else
    BOLD='' GREEN='' RED='' DIM='' RESET=''
fi

# The reply, JSON compact where it fits in a line and expanded where not; for admitted
# calls the `caller` object becomes one summary line and is checked. Exit 3 on a failed check.
render() { # FILE admitted|refused WANT_BOT_STATE
    if [[ -z "$PYTHON" ]]; then
        cat "$1"
        echo
        return 0
    fi
    "$PYTHON" - "$1" "$2" "$3" "$KEY_ID" "$AUDIENCE" <<'PY'
import json, sys

path, mode, want_state, key_id, audience = sys.argv[1:6]
raw = open(path, "rb").read().decode("utf-8", "replace")
WIDTH = 96

def fmt(v, indent):
    flat = json.dumps(v, ensure_ascii=False)
    if len(flat) + indent <= WIDTH or not isinstance(v, (dict, list)) or not v:
        return flat
    pad = " " * (indent + 2)
    if isinstance(v, dict):
        items = [f'{pad}{json.dumps(k)}: {fmt(x, indent + 2)}' for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + fmt(x, indent + 2) for x in v]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"

try:
    body = json.loads(raw)
except ValueError:
    print("  " + (raw.strip() or "(empty body)"))
    sys.exit(3 if mode == "admitted" else 0)

problems = []
caller = body.pop("caller", None) if isinstance(body, dict) else None
print("  " + fmt(body, 2))
if mode == "admitted":
    if want_state and body.get("botState") != want_state:
        problems.append(f"botState is {body.get('botState')!r}, expected {want_state!r}")
    if not isinstance(caller, dict):
        problems.append("the reply has no caller report")
    else:
        token = caller.get("token") or {}
        seen = caller.get("credential_headers_seen") or []
        summary = f"key id {caller.get('key_id')!r}"
        if token.get("present"):
            summary += (f", identity token in {token.get('header')} for {token.get('aud')}"
                        f" ({token.get('seconds_left')} s left)")
        else:
            summary += ", no identity token"
        summary += f", credential headers: {', '.join(seen) if seen else 'none'}"
        print(f"  BCSP saw: {summary}")
        if caller.get("key_id") != key_id:
            problems.append(f"the BCSP saw key id {caller.get('key_id')!r}, expected {key_id!r}")
        if not token.get("present"):
            problems.append("the BCSP got no identity token")
        elif token.get("aud") != audience:
            problems.append(f"the token's audience is {token.get('aud')!r}, expected {audience!r}")
        elif (token.get("seconds_left") or 0) <= 0:
            problems.append("the BCSP got an expired token")
        if seen:
            problems.append(f"credential headers reached the BCSP: {', '.join(seen)}")
for p in problems:
    print(f"  PROBLEM: {p}")
sys.exit(3 if problems else 0)
PY
}

FAILURES=0
STEP=0

# One exchange. Usage: exchange TITLE EXPECT_STATUS KEY_MODE(demo|wrong|none) METHOD PATH [BODY [BOT_STATE]]
exchange() {
    local title=$1 expect=$2 key_mode=$3 method=$4 path=$5 body=${6:-} want_state=${7:-}
    local out="$WORK/body" code ok=1
    local args=(-s -o "$out" -w '%{http_code}' --connect-timeout 2 --max-time 35 -X "$method")
    local shown_key
    case $key_mode in
    demo)
        args+=(-H "${KEY_HEADER}: ${KEY}")
        shown_key="${KEY_HEADER}: ${KEY}"
        ;;
    wrong)
        args+=(-H "${KEY_HEADER}: not-the-secret")
        shown_key="${KEY_HEADER}: not-the-secret"
        ;;
    none) shown_key="no ${KEY_HEADER} header" ;;
    esac
    if [[ -n "$body" ]]; then
        args+=(-H 'content-type: application/json' --data-binary "$body")
    fi
    STEP=$((STEP + 1))
    echo
    echo "${BOLD}${STEP}. ${title}${RESET}"
    echo "  > ${method} ${path}   ${DIM}(${shown_key})${RESET}"
    [[ -n "$body" ]] && echo "    ${DIM}${body}${RESET}"
    code=$(curl "${args[@]}" "${URL}${path}" || true)
    if [[ $code == 000 ]]; then
        # Nothing listening is a setup problem, not a refused call.
        echo "  < no answer" >&2
        echo "demo.sh: nothing answers at ${URL}; start the stack with 'make run' in another terminal." >&2
        exit 1
    fi
    if [[ $code == "$expect" ]]; then
        echo "  < ${GREEN}${code}${RESET} (expected ${expect})"
    else
        echo "  < ${RED}${code}${RESET} (expected ${expect})"
        ok=0
    fi
    local mode=admitted
    [[ $expect == 200 ]] || mode=refused
    if [[ -s "$out" ]]; then
        render "$out" "$mode" "$want_state" || ok=0
    fi
    : >"$out"
    ((ok)) || FAILURES=$((FAILURES + 1))
}

message() { # MESSAGE_ID TEXT
    printf '{"botId":"demo-bot","botVersion":"1","botSessionId":"%s","messageId":"%s","inputMessage":{"type":"Text","text":"%s"},"languageCode":"en-us","botSessionTimeout":300,"genesysConversationId":"%s","parameters":{}}' \
        "$SESSION" "$1" "$2" "$CONVERSATION"
}

echo "${BOLD}A Genesys-like conversation through bcsp-guard at ${URL}${RESET}"
echo "Genesys sends its static credential (${KEY_HEADER}); bcsp-guard checks and strips it,"
echo "sets x-bcsp-key-id and adds a Google identity token before the call reaches the BCSP."

exchange "Genesys lists the bots" 200 demo GET "${BASE}/bots"
exchange "Genesys reads the demo bot" 200 demo GET "${BASE}/bots/demo-bot"
exchange "A customer says hello" 200 demo POST "${BASE}/messages" \
    "$(message m-1 'Hi, I need help with my order')" MoreData
exchange "The customer says goodbye (same botSessionId: the bot completes)" 200 demo POST \
    "${BASE}/messages" "$(message m-2 'Thanks, goodbye!')" Complete
exchange "Someone with a wrong key (refused by bcsp-guard)" 401 wrong POST "${BASE}/messages" \
    "$(message m-3 'let me in')"
exchange "Someone with no key (refused by bcsp-guard)" 401 none GET "${BASE}/bots"

echo
if ((FAILURES)); then
    echo "${RED}${FAILURES} of ${STEP} exchanges did not go as expected.${RESET}"
    exit 1
fi
echo "${GREEN}All ${STEP} exchanges went as expected.${RESET} Per-key counters: curl -s 'http://127.0.0.1:9901/stats?filter=bcsp_guard'"
