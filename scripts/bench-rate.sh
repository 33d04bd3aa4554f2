#!/usr/bin/env bash
# How much of the configured rate limit a CareSoft or UJET export uses when
# every answer takes a round trip of 200 ms (BENCHMARKS.md).
#
# A fake CareSoft on 127.0.0.1 (Python) answers each request after DELAY
# seconds, filtering on start_time and paging like the platform: 7 days,
# 3 conversation types, a few pages a day. chatdump exports it with
# `rate_limit = RATE`; the script prints requests per second and the share
# of the rate limit used, and the fake's count of 429s (it answers 429 to a
# request that comes sooner than 1/RATE after the previous one would allow
# over a one-second window).
#
# With `ujet`, a fake UJET Manager API instead: the same 7 days of chats,
# sorted by updated_at and paged 10 at a time (so each day is a tail of
# about 13 requests, each starting where the last ended).
#
# Usage: scripts/bench-rate.sh [RATE] [DELAY] [conversations|messages|ujet]
#   CHATDUMP_BIN=path to compare another build
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-10}
delay=${2:-0.2}
records=${3:-conversations}
bin=${CHATDUMP_BIN:-./target/release/chatdump}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
[ -n "${CHATDUMP_BIN:-}" ] || cargo build --release --quiet

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/fake.py" <<'PY'
import datetime, http.server, json, sys, threading, time, urllib.parse
port, delay, rate = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
start = datetime.datetime(2024, 3, 1)
# 7 days, a chat every 12 minutes, so a day is 120 chats: a few pages of 50.
chats = [{"conversation_id": f"c{i}", "start_time": (start + datetime.timedelta(minutes=12 * i)).strftime("%Y-%m-%d %H:%M:%S"),
          "end_time": (start + datetime.timedelta(minutes=12 * i + 5)).strftime("%Y-%m-%d %H:%M:%S"), "cus_name": "Khách"}
         for i in range(7 * 120)]
messages = [{"id": f"{c['conversation_id']}-{k}", "conversation_id": c["conversation_id"], "start_time": c["start_time"],
             "time": c["start_time"], "content": f"tin nhắn {k}", "message_index": k} for c in chats for k in range(3)]
lock, stamps, throttled = threading.Lock(), [], [0]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        if url.path.endswith("/stats"):
            return self.reply(200, {"throttled": throttled[0], "requests": len(stamps)})
        now = time.monotonic()
        with lock:
            stamps.append(now)
            recent = [t for t in stamps if now - t < 1.0]
            limited = len(recent) > rate * 1.05 + 1
            if limited:
                throttled[0] += 1
        time.sleep(delay)
        if limited:
            return self.reply(429, {"code": "errors", "message": "Too many requests"})
        if url.path.endswith("/manager/api/v1/chats"):
            since, to = q.get("updated_at[from]", ""), q.get("updated_at[to]", "9")
            rows = [{"id": 100000 + i, "status": "finished", "chat_type": "Messaging (WhatsApp)",
                     "updated_at": c["start_time"].replace(" ", "T") + ".000Z"} for i, c in enumerate(chats)]
            rows = [r for r in rows if since <= r["updated_at"] < to]
            page, per = int(q.get("page", 1)), int(q.get("per", 100))
            return self.reply(200, rows[(page - 1) * per: page * per])
        since = q.get("start_time_since", "").replace("T", " ").rstrip("Z")
        to = q.get("start_time_to", "").replace("T", " ").rstrip("Z")
        rows = messages if url.path.endswith("/messages") else chats
        kind = q.get("conversation_type", "0")
        # Each conversation type has chats of its own.
        rows = [dict(r, conversation_id=f"{r['conversation_id']}-{kind}", id=f"{r.get('id', '')}-{kind}")
                for r in rows if since <= r["start_time"] <= to]
        page, count = int(q.get("page", 1)), int(q.get("count", 50))
        body = {"code": "ok", "numFound": len(rows), "chats": rows[(page - 1) * count: page * count]}
        self.reply(200, body)
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:
            pass  # a page the client no longer needed
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
python3 "$work/fake.py" "$port" "$delay" "$rate" &
server=$!
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/acme/stats" && break; sleep 0.1; done
if [ "$records" = ujet ]; then
  cat > "$work/chatdump.toml" <<TOML
[sources.bench]
kind = "ujet"
base_url = "http://127.0.0.1:$port"
username = "bench"
password = "bench"
rate_limit = $rate
page_size = 10
TOML
else
  cat > "$work/chatdump.toml" <<TOML
[sources.bench]
kind = "caresoft"
base_url = "http://127.0.0.1:$port/acme"
token = "bench"
rate_limit = $rate
page_size = 50
TOML
fi
kind_records=$records
[ "$records" = ujet ] && kind_records=conversations
chmod 600 "$work/chatdump.toml"
start=$(date +%s.%N)
"$bin" --config "$work/chatdump.toml" export bench --from 2024-03-01 --to 2024-03-08 \
  --records "$kind_records" -q -o "$work/out.jsonl"
end=$(date +%s.%N)
stats=$(curl -fs "http://127.0.0.1:$port/acme/stats")
python3 - "$start" "$end" "$rate" "$stats" "$records" "$(wc -l < "$work/out.jsonl")" <<'PY'
import json, sys
start, end, rate, stats, records, rows = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5], sys.argv[6]
n = stats["requests"]
print(f"{records}: {rows} rows, {n} requests in {end - start:.1f} s = {n / (end - start):.1f} req/s, "
      f"{100 * n / (end - start) / rate:.0f}% of rate_limit {rate:g}; 429 answers: {stats['throttled']}")
PY
