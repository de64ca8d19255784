#!/usr/bin/env bash
# ctest serve_smoke: `jamba serve` answered by curl on loopback — health, a completion, a streamed chat reply, a
# malformed request (400), a wrong API key (401) — then SIGTERM, which must end it with status 0 (under the ASan
# build, a leak would make that status non-zero). tests/python/test_serve.py is the full suite.
#   serve_smoke.sh JAMBA_BINARY MODEL_DIR
set -euo pipefail
cli="$1" model="$2"
log="$(mktemp)"
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -f "$log"; }
trap cleanup EXIT
fail() { echo "serve_smoke: $*" >&2; cat "$log" >&2; exit 1; }

"$cli" serve --model "$model" --port 0 --threads 2 --api-key smoke-key 2>"$log" &
pid=$!
for _ in $(seq 600); do  # at most 60 s to start
  url="$(grep -o 'listening on http://[0-9.:]*' "$log" | cut -d' ' -f3 || true)"
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || fail "the server exited before listening"
  sleep 0.1
done
[ -n "$url" ] || fail "the server did not start within 60 s"

auth=(-H "Authorization: Bearer smoke-key")
[ "$(curl -sS --max-time 30 "$url/health")" = '{"status":"ok"}' ] || fail "/health"
reply="$(curl -sS --max-time 60 "${auth[@]}" "$url/v1/completions" \
  -d '{"prompt": "ROMEO:", "max_tokens": 8, "temperature": 0, "ignore_eos": true}')"
echo "$reply" | grep -q '"finish_reason":"length"' || fail "completion: $reply"
echo "$reply" | grep -q '"completion_tokens":8' || fail "completion usage: $reply"
stream="$(curl -sS -N --max-time 60 "${auth[@]}" "$url/v1/chat/completions" \
  -d '{"messages": [{"role": "user", "content": "Who art thou?"}], "max_tokens": 8, "stream": true}')"
echo "$stream" | grep -q '"object":"chat.completion.chunk"' || fail "chat stream: $stream"
[ "$(echo "$stream" | tail -n 1)" = "data: [DONE]" ] || fail "chat stream end: $stream"
code="$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' "${auth[@]}" "$url/v1/completions" -d '{"prompt": ')"
[ "$code" = 400 ] || fail "malformed JSON answered $code"
code="$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' "$url/v1/models")"
[ "$code" = 401 ] || fail "a wrong key answered $code"

kill -TERM "$pid"
status=0
for _ in $(seq 300); do  # at most 30 s to stop
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "the server did not stop within 30 s of SIGTERM"
wait "$pid" || status=$?
pid=""
[ "$status" = 0 ] || fail "the server exited with $status after SIGTERM"
grep -q "jamba serve: stopped" "$log" || fail "no 'stopped' line"
echo "serve_smoke: ok"
