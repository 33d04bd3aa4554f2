#!/usr/bin/env bash
# Cost of "one row per conversation in a file" (BENCHMARKS.md).
#
# A fake UJET Manager API on 127.0.0.1 pages through N chats, or the same N
# chats twice (an old version, then a newer one: what a tail sees
# when every chat changes during the export). chatdump exports both to a
# file; with repeats it remembers each chat's newest row while writing and
# rewrites the file once at commit. Compared: wall time and peak RSS, for
# JSONL, CSV and JSONL.gz.
#
# Usage: scripts/bench-latest.sh [N]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --quiet

python3 - "$work" "$n" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
def chat(i, t, status):
    return json.dumps({"id": 10_000_000 + i, "status": status, "chat_type": "Messaging (WhatsApp)",
                       "created_at": "2024-03-05T00:00:00.000Z", "updated_at": t, "rating": 5,
                       "agent": {"id": 7, "name": "Ana"}, "end_user": {"id": i, "name": "Cliente"}},
                      separators=(",", ":"))
def stamp(s):
    return "2024-03-05T%02d:%02d:%02d.000Z" % (s // 3600, s // 60 % 60, s % 60)
with open(f"{work}/unique.json", "w") as f:
    f.write("[" + ",".join(chat(i, stamp(i * 40000 // n), "finished") for i in range(n)) + "]")
with open(f"{work}/twice.json", "w") as f:
    old = (chat(i, stamp(i * 40000 // n), "finished") for i in range(n))
    new = (chat(i, stamp(40000 + i * 40000 // n), "reopened") for i in range(n))
    f.write("[" + ",".join(old) + "," + ",".join(new) + "]")
PY

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/serve.py" <<'PY'
# Pages like the Manager API: sorted by updated_at, filtered on
# updated_at[from], `per` (at most 100) a page.
import bisect, http.server, json, sys, urllib.parse
work, port = sys.argv[1], int(sys.argv[2])
data = {}
for name in ("unique", "twice"):
    rows = sorted((r["updated_at"], json.dumps(r, separators=(",", ":"))) for r in json.load(open(f"{work}/{name}.json")))
    data[name] = ([t for t, _ in rows], [j for _, j in rows])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every page waits 40 ms for an ACK
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        times, rows = data[url.path.split("/")[1]]
        per = min(int(q.get("per", ["100"])[0]), 100)
        page = int(q.get("page", ["1"])[0])
        start = bisect.bisect_left(times, q.get("updated_at[from]", [""])[0]) + (page - 1) * per
        body = ("[" + ",".join(rows[start:start + per]) + "]").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
python3 "$work/serve.py" "$work" "$port" &
server=$!
for _ in $(seq 300); do curl -fs -o /dev/null "http://127.0.0.1:$port/unique/x?page=9" && break; sleep 0.2; done

for data in unique twice; do
cat >> "$work/chatdump.toml" <<TOML
[sources.$data]
kind = "ujet"
base_url = "http://127.0.0.1:$port/$data"
username = "bench"
password = "bench"
rate_limit = 1000
TOML
done
chmod 600 "$work/chatdump.toml"

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -v "$@" 2> "$work/time.txt" > /dev/null
  local wall rss
  wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
  printf '%-28s wall %8s   peak RSS %7.1f MB\n' "$label" "$wall" "$(python3 -c "print($rss/1024)")"
}

echo "$n chats, $(nproc) cores"
chatdump=(./target/release/chatdump --config "$work/chatdump.toml" export)
window=(--from 2024-03-05T00:00:00Z --to 2024-03-06T00:00:00Z -q)
# The changelog (stdout) writes every version and rewrites nothing: the
# difference to "twice -> jsonl" is the cost of keeping the newest rows.
measure "twice -> stdout (changelog)" sh -c "${chatdump[*]} twice ${window[*]} > $work/changelog.jsonl"
echo "  rows: $(wc -l < "$work/changelog.jsonl")"
for ext in jsonl csv jsonl.gz; do
  for data in unique twice; do
    measure "$data -> $ext" "${chatdump[@]}" "$data" "${window[@]}" -o "$work/out.$data.$ext"
  done
  rows() { if [[ $1 == *.gz ]]; then zcat "$1" | wc -l; else wc -l < "$1"; fi; }
  echo "  rows: unique $(rows "$work/out.unique.$ext"), twice $(rows "$work/out.twice.$ext") (CSV counts its header)"
done
