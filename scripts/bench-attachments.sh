#!/usr/bin/env bash
# How fast attachments are fetched and kept, and what a large one costs in
# memory (BENCHMARKS.md).
#
# A fake CareSoft on 127.0.0.1 (Python) lists FILES live-chat messages of
# one day, each a type-2 file object linking to a file of SIZE KiB (each
# different, a PNG signature then random bytes) on a media server on
# 127.0.0.1 (Python's file server answering with sendfile(2), reached
# through `attachment_hosts`). chatdump exports the messages with
# `--attachments` into an empty folder: attachments per second and MB/s,
# best of RUNS. Then one message linking one file of BIG MiB (an MP4
# signature, then zeros): the time, MB/s and chatdump's peak RSS
# (/usr/bin/time -v), which stays that of an export without it.
#
# Usage: scripts/bench-attachments.sh [FILES] [SIZE_KIB] [BIG_MIB] [RUNS]
#   CHATDUMP_BIN=path to compare another build
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-2000}
size=${2:-64}
big=${3:-1024}
runs=${4:-3}
bin=${CHATDUMP_BIN:-./target/release/chatdump}
work=$(mktemp -d)
trap 'kill $api $media 2>/dev/null || true; rm -rf "$work"' EXIT
[ -n "${CHATDUMP_BIN:-}" ] || cargo build --release --quiet
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The files.
mkdir -p "$work/www/f"
python3 - "$work/www" "$files" "$size" "$big" <<'PY'
import os, sys
www, n, kib, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
head = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"
for i in range(n):
    with open(f"{www}/f/{i}.png", "wb") as f:
        f.write(head + os.urandom(kib * 1024 - len(head)))
with open(f"{www}/big.mp4", "wb") as f:
    f.write(b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom")
    chunk = bytes(1 << 20)
    for _ in range(big):
        f.write(chunk)
PY
media_port=$(free_port)
(cd "$work/www" && exec python3 -c '
import http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile):
        outputfile.flush()
        self.connection.sendfile(source)
    def log_message(self, *args):
        pass
# A backlog of 5 (the default) drops connections asked for at once.
http.server.ThreadingHTTPServer.request_queue_size = 256
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
' "$media_port" >/dev/null 2>&1) &
media=$!

# The platform: the day's messages, paged like CareSoft.
api_port=$(free_port)
cat > "$work/fake.py" <<'PY'
import http.server, json, sys, urllib.parse
port, media, n, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
links = [f"http://127.0.0.1:{media}/f/{i}.png" for i in range(n)] if mode == "many" else [f"http://127.0.0.1:{media}/big.mp4"]
rows = [{"conversation_id": f"c{i // 10}", "conversation_type": 0, "id": i, "msg_id": f"m{i}", "message_index": i % 10,
         "type": 2, "content": {"type": "file", "url": url}, "time": f"2024-03-01 10:{(i // 60) % 60:02}:{i % 60:02}",
         "start_time": "2024-03-01 10:00:00", "sender_visitor_id": 5}
        for i, url in enumerate(links)]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        q = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).items()}
        found = rows if q.get("conversation_type", "0") == "0" else []
        page, count = int(q.get("page", 1)), int(q.get("count", 50))
        body = json.dumps({"code": "ok", "numFound": len(found), "chats": found[(page - 1) * count: page * count]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY

start_api() {
  [ -z "${api:-}" ] || kill "$api" 2>/dev/null || true
  python3 "$work/fake.py" "$api_port" "$media_port" "$files" "$1" &
  api=$!
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$api_port/x" && break; sleep 0.1; done
}
cat > "$work/chatdump.toml" <<TOML
[sources.bench]
kind = "caresoft"
base_url = "http://127.0.0.1:$api_port/acme"
token = "bench"
rate_limit = 1000
page_size = 500
conversation_types = ["livechat"]
attachment_hosts = ["127.0.0.1"]
attachment_rate = 10000
max_attachment_size = "4GiB"
attachment_timeout = "30m"
TOML
chmod 600 "$work/chatdump.toml"
# export_day [none]: the day's messages, attachments kept (or not, `none`);
# prints the wall time and peak RSS.
export_day() {
  rm -rf "$work/files"
  local keep=(--attachments "$work/files")
  [ "${1:-}" = none ] && keep=()
  /usr/bin/time -v "$bin" --config "$work/chatdump.toml" export bench --from 2024-03-01 --to 2024-03-02 \
    --records messages "${keep[@]}" -q -o "$work/out.jsonl" 2> "$work/time.txt"
  wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$work/time.txt")
  python3 -c "m, s = '$wall'.split(':')[-2:]; print(f'{int(m) * 60 + float(s):.3f} $rss $cpu')"
}

start_api many
best=""
for _ in $(seq "$runs"); do
  read -r t rss cpu < <(export_day)
  best=$(python3 -c "print(min(x for x in [$t, ${best:-$t}]))")
done
stored=$(find "$work/files/sha256" -type f | wc -l)
python3 -c "
t, n, kib = $best, $files, $size
print(f'{n} files of {kib} KiB: {t:.2f} s = {n / t:,.0f} attachments/s, {n * kib / 1024 / t:,.1f} MB/s ({$stored} stored, chatdump {$cpu:.2f} s of CPU, peak RSS {$rss / 1024:.1f} MB)')"

start_api big
read -r _ plain _ < <(export_day none)
read -r t rss cpu < <(export_day)
python3 -c "
t, big = $t, $big
print(f'one file of {big} MiB: {t:.2f} s = {big / t:,.1f} MB/s, chatdump {$cpu:.2f} s of CPU, peak RSS {$rss / 1024:.1f} MB (the same export without --attachments: {$plain / 1024:.1f} MB)')"
if cmp -s "$work/www/big.mp4" "$(find "$work/files/sha256" -name '*.mp4')"; then
  echo "the kept file is the served file, byte for byte"
else
  echo "the kept file differs from the served file" >&2
  exit 1
fi
