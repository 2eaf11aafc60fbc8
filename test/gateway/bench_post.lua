-- wrk script: POST a small "ok" chat completion (see bench.sh)
wrk.method = "POST"
wrk.body = '{"model":"ok","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
