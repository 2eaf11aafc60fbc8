#!/usr/bin/env bash
#
# selftest.sh
#	  Start ai-gateway-sim on an ephemeral port and check a representative set
#	  of behaviours with the curl CLI (apt-get install -y curl if missing).
#	  Prints TAP-like "ok N - ..." / "not ok N - ..." lines, then
#	  "N passed, M failed"; exits non-zero if anything failed.
#
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
SIM=${SIM:-$HERE/ai-gateway-sim}
TMP=$(mktemp -d)
PASS=0
FAIL=0
N=0
SIM_PID=

cleanup() {
	if [ -n "$SIM_PID" ]; then
		kill -TERM "$SIM_PID" 2>/dev/null
		wait "$SIM_PID" 2>/dev/null
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

if ! command -v curl >/dev/null; then
	echo "selftest.sh: curl CLI not found (apt-get install -y curl)" >&2
	exit 2
fi
if [ ! -x "$SIM" ]; then
	make -s -C "$HERE" || exit 2
fi

"$SIM" --port 0 --port-file "$TMP/port" --quiet &
SIM_PID=$!
for _ in $(seq 100); do
	[ -s "$TMP/port" ] && break
	sleep 0.05
done
if [ ! -s "$TMP/port" ]; then
	echo "selftest.sh: simulator did not start" >&2
	exit 2
fi
PORT=$(cat "$TMP/port")
BASE=http://127.0.0.1:$PORT

# check DESCRIPTION COMMAND...: run the command, report ok / not ok
check() {
	local desc=$1
	shift
	N=$((N + 1))
	if "$@"; then
		echo "ok $N - $desc"
		PASS=$((PASS + 1))
	else
		echo "not ok $N - $desc"
		FAIL=$((FAIL + 1))
	fi
}

# chat MODEL [PROMPT] [EXTRA_JSON] [PREFIX]: POST a chat completion; sets
# CODE (HTTP status), RC (curl exit), headers in $TMP/h, body in $TMP/b
chat() {
	local model=$1 prompt=${2:-hello world} extra=${3:-} prefix=${4:-}
	local body="{\"model\":\"$model\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"$prompt\"}]$extra}"
	CODE=$(curl -s -m 5 -D "$TMP/h" -o "$TMP/b" -w '%{http_code}' \
		-H 'Content-Type: application/json' -H 'Authorization: Bearer sk-test-123' \
		--data-binary "$body" "$BASE$prefix/v1/chat/completions")
	RC=$?
}

body_has() { grep -qF -- "$1" "$TMP/b"; }
body_has_bytes() { LC_ALL=C grep -qF -- "$1" "$TMP/b"; }
body_lacks() { ! grep -qF -- "$1" "$TMP/b"; }
hdr_has() { tr -d '\r' < "$TMP/h" | grep -qiE -- "$1"; }
hdr_lacks() { ! tr -d '\r' < "$TMP/h" | grep -qiE -- "$1"; }
code_is() { [ "$CODE" = "$1" ]; }
# three_codes MODEL PROMPT: the statuses of three chats in a row
three_codes() {
	local codes=
	for _ in 1 2 3; do
		chat "$1" "$2"
		codes="$codes${codes:+ }$CODE"
	done
	echo "$codes"
}

reset_journal() { curl -s -m 5 -X POST -o /dev/null -w '%{http_code}' "$BASE/journal/reset"; }

check "reset answers 204" [ "$(reset_journal)" = 204 ]
check "health answers ok" [ "$(curl -s -m 5 "$BASE/health")" = ok ]

chat ok "hello world"
check "ok: status 200" code_is 200
check "ok: echo content" body_has '"content":"echo: hello world"'
check "ok: usage counts words" body_has '"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}'
check "ok: x-request-id header" hdr_has '^x-request-id: req-[0-9]+$'
check "ok: JSON content type" hdr_has '^content-type: application/json'

chat gpt-4o-mini
check "unknown model name behaves as ok" body_has '"model":"gpt-4o-mini"'

chat ok "sim:status-503 the rest"
check "prompt directive overrides the model" code_is 503
chat status-500 "sim:ok the rest"
check "prompt directive can make a failing model answer" eval 'code_is 200 && body_has "\"content\":\"echo: sim:ok the rest\""'

CODE=$(curl -s -m 5 -o "$TMP/b" -w '%{http_code}' "$BASE/v1/models")
check "models list" eval 'code_is 200 && body_has "\"object\":\"list\"" && body_has "\"id\":\"ok\""'
CODE=$(curl -s -m 5 -o "$TMP/b" -w '%{http_code}' "$BASE/gw+emptylist/v1/models")
check "models list: emptylist option lists none" eval 'code_is 200 && body_has "\"data\":[]}"'
CODE=$(curl -s -m 5 -o "$TMP/b" -w '%{http_code}' "$BASE/status-401/v1/models")
check "models list: a status-401 prefix refuses it" eval 'code_is 401 && body_has invalid_api_key'

CODE=$(curl -s -m 5 -D "$TMP/h" -o "$TMP/b" -w '%{http_code}' --data-binary '[1,2]' "$BASE/v1/chat/completions")
check "non-object body: 400 invalid_request_error" eval 'code_is 400 && body_has invalid_request_error && hdr_has "^x-request-id: "'
CODE=$(curl -s -m 5 -o "$TMP/b" -w '%{http_code}' --data-binary '{"model":"ok"}' "$BASE/v1/chat/completions")
check "no messages: 400" code_is 400
CODE=$(curl -s -m 5 -o "$TMP/b" -w '%{http_code}' "$BASE/nope")
check "unknown URL: 404 JSON" eval 'code_is 404 && body_has "\"error\""'

chat missing
check "missing: 404 model_not_found" eval 'code_is 404 && body_has "\"code\":\"model_not_found\"" && body_has "\"param\":\"model\""'
chat status-401
check "status-401 echoes the key" eval 'code_is 401 && body_has "Incorrect API key provided: sk-test-123" && body_has invalid_api_key'
chat status-502
check "status-502: Cloudflare HTML" eval 'code_is 502 && hdr_has "^content-type: text/html" && body_has cloudflare'
chat status-524
check "status-524: HTML page" eval 'code_is 524 && body_has "<title>524"'
chat status-429
check "status-429: no Retry-After" eval 'code_is 429 && body_has rate_limit_exceeded && hdr_lacks "^retry-after"'
chat status-418
check "status-418: server_error JSON" eval 'code_is 418 && body_has "\"type\":\"server_error\""'
chat ratelimit-7
check "ratelimit-7: Retry-After: 7" eval 'code_is 429 && hdr_has "^retry-after: 7$"'
chat ratelimitms-250
check "ratelimitms-250: retry-after-ms: 250" eval 'code_is 429 && hdr_has "^retry-after-ms: 250$"'
chat ratelimitdate-60
check "ratelimitdate-60: Retry-After is an HTTP date" eval 'code_is 429 && hdr_has "^retry-after: [A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} GMT$"'
chat quota
check "quota: 429 insufficient_quota" eval 'code_is 429 && body_has "\"type\":\"insufficient_quota\""'
chat context
check "context: 400 context_length_exceeded" eval 'code_is 400 && body_has context_length_exceeded'
chat contentpolicy
check "contentpolicy: 400 content_policy_violation" eval 'code_is 400 && body_has content_policy_violation'
chat noretry
check "noretry: 500 + x-should-retry: false" eval 'code_is 500 && hdr_has "^x-should-retry: false$"'

chat forceretry same
check "forceretry attempt 1: 400 + x-should-retry: true" eval 'code_is 400 && hdr_has "^x-should-retry: true$"'
chat forceretry same
check "forceretry attempt 2: 200" code_is 200

check "flaky-2-503: 503, 503, then 200" [ "$(three_codes flaky-2-503 p1)" = "503 503 200" ]
chat flaky-2-503 p2
check "flaky counts per prompt" code_is 503
chat flaky-1 p1
check "flaky-1 defaults to 500" code_is 500
reset_journal >/dev/null
chat flaky-2-503 p1
check "reset clears flaky counters" code_is 503

chat ok+latency-50 x "" /status-503
check "prefix /status-503 overrides the model" code_is 503
chat ok x "" /gw2
check "prefix /gw2 has no effect" eval 'code_is 200 && body_has "echo: x"'
START=$(date +%s%N)
chat ok+tokens-2 x "" /status-502+latency-300
END=$(date +%s%N)
check "prefix /status-502+latency-300: its behaviour and its options" eval 'code_is 502 && [ $(( (END - START) / 1000000 )) -ge 300 ]'
chat ok x "" /ok+tokens-2
check "prefix /ok+tokens-2: its options over the model's" body_has '"content":"echo: x w1 w2"'

START=$(date +%s%N)
curl -s -m 5 --connect-timeout 0.5 -o /dev/null "http://127.0.0.1:$(curl -s -m 5 "$BASE/unreachable-port")/"
RC=$?
END=$(date +%s%N)
check "unreachable-port: a connect neither succeeds nor fails (curl exit 28 after 0.5 s)" eval '[ $RC = 28 ] && [ $(( (END - START) / 1000000 )) -ge 450 ]'

chat ok "a b c" ',"stream":true,"stream_options":{"include_usage":true}'
check "stream: event-stream headers" eval 'code_is 200 && hdr_has "^content-type: text/event-stream" && hdr_has "^cache-control: no-cache" && hdr_has "^x-request-id: req-"'
check "stream: starts with the SIM PROCESSING comment" eval '[ "$(head -c 16 "$TMP/b")" = ": SIM PROCESSING" ]'
check "stream: role in the first chunk only" eval '[ "$(grep -c "\"role\":\"assistant\"" "$TMP/b")" = 1 ]'
check "stream: pieces concatenate to the content" eval '[ "$(grep -o "\"content\":\"[^\"]*\"" "$TMP/b" | sed "s/^\"content\":\"//; s/\"$//" | tr -d "\n")" = "echo: a b c" ]'
check "stream: finish_reason stop chunk" body_has '"delta":{},"finish_reason":"stop"'
check "stream: usage chunk" body_has '"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}'
check "stream: ends with data: [DONE]" eval '[ "$(tail -c 14 "$TMP/b")" = "$(printf "data: [DONE]\n\n")" ]'
chat ok "a" ',"stream":true'
check "stream: no usage chunk unless asked" body_lacks '"choices":[]'
chat ok+crlf "a" ',"stream":true'
check "stream crlf: CRLF line endings" eval 'head -c 20 "$TMP/b" | od -c | grep -q "\\\\r  \\\\n  \\\\r  \\\\n"'
chat ok+utf8 "a" ',"stream":true'
check "stream utf8: tiny pieces rebuild the UTF-8 text" eval '[ "$(grep -o "\"content\":\"[^\"]*\"" "$TMP/b" | sed "s/^\"content\":\"//; s/\"$//" | tr -d "\n")" = "echo: a héllo wörld 日本語 😀 héllo wörld 日本語 😀 héllo wörld 日本語 😀" ]'

START=$(date +%s%N)
curl -s -m 1 -o /dev/null --data-binary '{"model":"hang","messages":[]}' "$BASE/v1/chat/completions"
RC=$?
END=$(date +%s%N)
check "hang: client timeout (curl exit 28) after ~1 s" eval '[ $RC = 28 ] && [ $(( (END - START) / 1000000 )) -lt 2500 ]'

chat cut
check "cut: curl exit 18 (partial body)" eval '[ $RC = 18 ] && code_is 200'
chat streamcut "a b c d e f g" ',"stream":true'
check "streamcut: three pieces, then dropped without [DONE]" eval '[ $RC = 18 ] && body_has "\"content\":\"b \"" && body_lacks "\"content\":\"c \"" && body_lacks "[DONE]"'
chat streamerror "a b c" ',"stream":true'
check "streamerror: error event, no [DONE]" eval '[ $RC = 0 ] && body_has "\"code\":\"overloaded\"" && body_lacks "[DONE]"'
chat streamerror
check "streamerror without stream: 500" code_is 500

START=$(date +%s%N)
chat streamstall-400 "a b c" ',"stream":true'
END=$(date +%s%N)
check "streamstall-400: complete stream, ~400 ms stall" eval 'body_has "[DONE]" && [ $(( (END - START) / 1000000 )) -ge 400 ]'

# hostile streams and numbers
chat ok+bom "a" ',"stream":true'
check "bom: a UTF-8 BOM straight before the first data line" eval '[ "$(head -c 9 "$TMP/b" | od -An -c | tr -s " ")" = " 357 273 277 d a t a : " ] && body_has "[DONE]"'
chat ok+oneevent "a b c d e f" ',"stream":true'
check "oneevent: all content in one event" eval 'body_has "\"content\":\"echo: a b c d e f\"" && [ "$(grep -c "\"content\"" "$TMP/b")" = 1 ]'
chat ok+multiline "a" ',"stream":true'
check "multiline: each chunk on two data lines" eval 'grep -q "\"choices\":$" "$TMP/b" && grep -q "^data: \[{\"index\":0,\"delta\":{}" "$TMP/b"'
chat bigreply-100000+oneevent+trickle "a" ',"stream":true'
check "trickle: a 100 kB event in pieces arrives whole" eval 'body_has "[DONE]" && [ "$(wc -c < "$TMP/b")" -gt 100000 ]'
CODE=$(curl -s -m 1 -o "$TMP/b" -w '%{http_code}' --data-binary \
	'{"model":"ok+doneopen","stream":true,"messages":[{"role":"user","content":"a"}]}' "$BASE/v1/chat/completions")
RC=$?
check "doneopen: [DONE], then the connection stays open" eval '[ $RC = 28 ] && body_has "data: [DONE]"'
chat ok+usage-negative
check "usage-negative: negative token counts" body_has '"usage":{"prompt_tokens":-4294967295,"completion_tokens":-3,'
chat ok+usage-max "a" ',"stream":true,"stream_options":{"include_usage":true}'
check "usage-max: counts of 2^31-1 in the usage chunk" body_has '"usage":{"prompt_tokens":2147483647,"completion_tokens":2147483647,'
chat ok+usage-overflow
check "usage-overflow: counts beyond int64 and int32" body_has '"prompt_tokens":99999999999999999999,"completion_tokens":2147483648,'
chat ok+hugenumber
check "hugenumber: a number out of every numeric range" body_has '"sim_score":1e-99999999999999999999,'
check "twostep-524-500: 524, 500, then 200" [ "$(three_codes twostep-524-500 p3)" = "524 500 200" ]
START=$(date +%s%N)
chat ok+latency-300
END=$(date +%s%N)
check "latency-300 option delays the answer" eval 'code_is 200 && [ $(( (END - START) / 1000000 )) -ge 300 ]'

chat malformed
check "malformed: 200 with truncated JSON" eval 'code_is 200 && [ "$(cat "$TMP/b")" = "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"trunc" ]'
chat empty
check "empty: choices []" eval 'code_is 200 && body_has "\"choices\":[]"'
chat wrongtype
check "wrongtype: content is 42" body_has '"content":42'
chat nullcontent
check "nullcontent: content is null" body_has '"content":null},"finish_reason":"stop"'
chat bigreply-1000 hi
check "bigreply-1000: content of exactly 1000 bytes" eval '[ "$(sed "s/.*\"content\":\"//; s/\"}.*//" "$TMP/b" | tr -d "\n" | wc -c)" = 1000 ]'
chat ok+tokens-5 hi
check "tokens-5: words w1..w5 counted" eval 'body_has "echo: hi w1 w2 w3 w4 w5" && body_has "\"completion_tokens\":7"'

# hostile answers: the bearer key (sk-test-123) echoed, invalid UTF-8
chat echokey-requestid
check "echokey-requestid: the key as x-request-id" eval 'code_is 200 && hdr_has "^x-request-id: sk-test-123$"'
chat echokey-model
check "echokey-model: the key as the model" body_has '"model":"sk-test-123"'
chat echokey-finish
check "echokey-finish: the key as finish_reason" body_has '"finish_reason":"sk-test-123"'
chat echokey-upper
check "echokey-upper: 401 with the key upper-cased" eval 'code_is 401 && body_has "provided: SK-TEST-123\""'
chat echokey-ctrl
check "echokey-ctrl: 401 with U+0001 inside the key" eval 'code_is 401 && body_has "provided: sk-te\\u0001st-123\""'
chat badutf8-error
check "badutf8-error: 400 with bytes FF FE in the message" eval 'code_is 400 && body_has_bytes $'"'"'"Bad byte \xff\xfe here."'"'"
chat badutf8-json
check "badutf8-json: 200, a JSON syntax error at bytes FF FE" eval 'code_is 200 && body_has_bytes $'"'"',\xff\xfe}'"'"
chat badutf8-content
check "badutf8-content: 200, Latin-1 byte E9 in the content" eval 'code_is 200 && body_has_bytes $'"'"'"content":"caf\xe9"'"'"
# outages set while running: a model, a prefix, then everything back up
control() { curl -s -m 5 -X POST -o /dev/null -w '%{http_code}' "$BASE/control/$1"; }
check "control/down of a model answers 204" [ "$(control 'down?model=m-out')" = 204 ]
chat m-out
check "control/down: the model answers 502" code_is 502
chat m-in
check "control/down: other models still answer" code_is 200
check "control/down of a prefix, hanging" [ "$(control 'down?prefix=/gw-out&behaviour=hang')" = 204 ]
chat m-in hi "" /gw-out
check "control/down hang: the prefix accepts but never answers" eval '[ "$CODE" = 000 ] && [ "$RC" = 28 ]'
check "control/down rejects an unknown behaviour" [ "$(control 'down?model=x&behaviour=bogus')" = 400 ]
check "control/up of the model answers 204" [ "$(control 'up?model=m-out')" = 204 ]
chat m-out
check "control/up: the model answers again" code_is 200
control up >/dev/null
chat m-in hi "" /gw-out
check "control/up without arguments brings every prefix back" code_is 200

# gateways' shapes: LiteLLM's rewritten errors and ids, Portkey's failure and trace id
chat litellm-quota
check "litellm-quota: 429, code \"429\", type null, the quota in the message" eval 'code_is 429 && body_has "\"type\":null" && body_has "\"code\":\"429\"" && body_has "You exceeded your current quota"'
chat litellm-content
check "litellm-content: 400 ContentPolicyViolationError, code \"400\"" eval 'code_is 400 && body_has "litellm.ContentPolicyViolationError" && body_has "\"code\":\"400\""'
chat litellm-context
check "litellm-context: 400 ContextWindowExceededError" eval 'code_is 400 && body_has "litellm.ContextWindowExceededError"'
chat litellm-nodeploy-7
check "litellm-nodeploy-7: 429 'Try again in 7 seconds', no Retry-After" eval 'code_is 429 && body_has "Try again in 7 seconds" && hdr_lacks "^retry-after"'
chat portkey-failure
check "portkey-failure: 400 {status:failure,message}" eval 'code_is 400 && body_has "{\"status\":\"failure\",\"message\":\"Either x-portkey-config"'
chat ok+litellm
check "+litellm: x-litellm-call-id and llm_provider-x-request-id, no x-request-id" eval 'code_is 200 && hdr_has "^x-litellm-call-id: litellm-[0-9]+$" && hdr_has "^llm_provider-x-request-id: req-[0-9]+$" && hdr_lacks "^x-request-id"'
chat litellm-quota+litellm
check "+litellm on an error too" eval 'code_is 429 && hdr_has "^x-litellm-call-id: litellm-[0-9]+$"'
chat ok+portkey
check "+portkey: x-portkey-trace-id next to x-request-id" eval 'code_is 200 && hdr_has "^x-portkey-trace-id: trace-[0-9]+$" && hdr_has "^x-request-id: req-[0-9]+$"'
chat ok+portkey+norequestid
check "+norequestid: no x-request-id" eval 'code_is 200 && hdr_has "^x-portkey-trace-id: trace-[0-9]+$" && hdr_lacks "^x-request-id"'

# journal: reset, then a known sequence on one keep-alive connection
reset_journal >/dev/null
curl -s -m 5 -o /dev/null -H 'Authorization: Bearer sk-j' -H 'X-Trace: a' -H 'x-b: 2' \
	--data-binary '{"model":"status-503","messages":[{"role":"user","content":"j"}]}' "$BASE/gw9/v1/chat/completions" \
	--next -s -m 5 -o /dev/null "$BASE/v1/models"
curl -s -m 5 "$BASE/journal" > "$TMP/j"
check "journal: two lines after reset" eval '[ "$(wc -l < "$TMP/j")" = 2 ]'
check "journal: twelve tab-separated columns" eval '[ "$(awk -F"\t" "{print NF}" "$TMP/j" | sort -u)" = 12 ]'
check "journal: chat line columns" eval 'cut -f2- "$TMP/j" | head -1 | grep -qP "^/gw9\tPOST\tchat/completions\tstatus-503\t1\t503\tf\t[0-9]+\t[0-9]+\tBearer sk-j\tX-Trace: a; x-b: 2$"'
check "journal: models line columns" eval 'cut -f2- "$TMP/j" | tail -1 | grep -qP "^-\tGET\tmodels\t-\t0\t200\tf\t0\t[0-9]+\t-\t-$"'
check "journal: ordered by seq" eval '[ "$(cut -f1 "$TMP/j" | sort -n | tr "\n" " ")" = "$(cut -f1 "$TMP/j" | tr "\n" " ")" ]'
check "journal: keep-alive reuses the client port" eval '[ "$(cut -f10 "$TMP/j" | sort -u | wc -l)" = 1 ]'

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
