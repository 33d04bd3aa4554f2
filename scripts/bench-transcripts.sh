#!/usr/bin/env bash
# How fast UJET messages come from chat transcripts (BENCHMARKS.md): a fake
# Manager API on 127.0.0.1 lists CHATS finished chats of one day (100 a
# page, tailed on updated_at), and each chat's JSON transcript (12 entries)
# is read from a local folder
# (`rate_limit = 1000`: the platform's pace is not what is measured), then from a bucket on the S3 test server
# (moto, `pip install 'moto[server]'`), and from an S3 stand-in that answers
# each read after DELAY seconds (default 0.02, a bucket's round trip within
# a region; moto itself spends about 7 ms of Python per read, which bounds
# it near 140 reads a second however many are asked at once). Prints
# transcripts per second for each, best of RUNS.
#
# Usage: scripts/bench-transcripts.sh [CHATS] [RUNS] [DELAY]
#   CHATDUMP_BIN=path to compare another build
set -euo pipefail
cd "$(dirname "$0")/.."
chats=${1:-3000}
runs=${2:-3}
delay=${3:-0.02}
bin=${CHATDUMP_BIN:-./target/release/chatdump}
work=$(mktemp -d)
trap 'kill $server $moto $slow 2>/dev/null || true; rm -rf "$work"' EXIT
[ -n "${CHATDUMP_BIN:-}" ] || cargo build --release --quiet
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port=$(free_port)
mkdir -p "$work/transcripts"
cat > "$work/fake.py" <<'PY'
import datetime, http.server, json, sys, urllib.parse
port, chats, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
start = datetime.datetime(2024, 3, 5)
rows = [{"id": 100000 + i, "status": "finished", "chat_type": "Messaging (WhatsApp)",
         "updated_at": (start + datetime.timedelta(seconds=20 * i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
        for i in range(chats)]
for r in rows:
    t = int((start - datetime.datetime(1970, 1, 1)).total_seconds())
    entries = [{"timestamp": t + k, "role": "end_user" if k % 2 else "agent", "type": "text",
                "body": {"type": "text", "content": f"mensaje {k} de la conversación {r['id']}"}}
               for k in range(12)]
    with open(f"{folder}/chat-{r['id']}.json", "w") as f:
        json.dump({"comm_type": "chat", "comm_id": r["id"], "transcript_version": "1.0", "entries": entries}, f)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        since, to = q.get("updated_at[from]", ""), q.get("updated_at[to]", "9")
        found = [r for r in rows if since <= r["updated_at"] < to]
        page, per = int(q.get("page", 1)), int(q.get("per", 100))
        data = json.dumps(found[(page - 1) * per: page * per]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
python3 "$work/fake.py" "$port" "$chats" "$work/transcripts" &
server=$!
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/x" && break; sleep 0.1; done

s3=$(free_port)
moto_server -H 127.0.0.1 -p "$s3" >/dev/null 2>&1 &
moto=$!
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$s3/" && break; sleep 0.1; done
export AWS_ENDPOINT="http://127.0.0.1:$s3" AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
python3 - "$AWS_ENDPOINT" "$work/transcripts" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
s3.create_bucket(Bucket="bench")
for name in os.listdir(sys.argv[2]):
    s3.upload_file(os.path.join(sys.argv[2], name), "bench", f"ccaip/{name}")
PY

config() {
  printf '[sources.bench]\nkind = "ujet"\nbase_url = "http://127.0.0.1:%s"\nusername = "bench"\npassword = "bench"\ntranscripts = "%s"\nrate_limit = 1000\n' \
    "$port" "$1" > "$work/chatdump.toml"
  chmod 600 "$work/chatdump.toml"
}
measure() {
  config "$2"
  best=""
  for _ in $(seq "$runs"); do
    start=$(date +%s.%N)
    "$bin" --config "$work/chatdump.toml" export bench --from 2024-03-05 --to 2024-03-06 \
      --records messages -q -o "$work/out.jsonl"
    end=$(date +%s.%N)
    t=$(python3 -c "print(f'{$end - $start:.3f}')")
    best=$(python3 -c "print(min(x for x in [$t, ${best:-$t}]))")
  done
  rows=$(wc -l < "$work/out.jsonl")
  python3 -c "print(f'$1: $chats transcripts ($rows messages) in ${best} s = {$chats / $best:.0f} transcripts/s')"
}
# The stand-in: GET /bench/ccaip/NAME from the folder, after the delay,
# with the headers an S3 client reads; NoSuchKey for what is not there.
slow_port=$(free_port)
cat > "$work/slow.py" <<'PY'
import email.utils, hashlib, http.server, os, sys, time
port, delay, folder = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        time.sleep(delay)
        name = self.path.split("?")[0].rsplit("/", 1)[-1]
        path = os.path.join(folder, name)
        if not self.path.startswith("/bench/ccaip/") or not os.path.isfile(path):
            body = b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>no</Message></Error>"
            self.send_response(404)
        else:
            body = open(path, "rb").read()
            self.send_response(200)
            self.send_header("ETag", '"%s"' % hashlib.md5(body).hexdigest())
            self.send_header("Last-Modified", email.utils.formatdate(os.path.getmtime(path), usegmt=True))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
python3 "$work/slow.py" "$slow_port" "$delay" "$work/transcripts" &
slow=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$slow_port/" && break; sleep 0.1; done

measure folder "$work/transcripts"
measure s3 "s3://bench/ccaip/"
AWS_ENDPOINT="http://127.0.0.1:$slow_port" measure "s3, ${delay} s a read" "s3://bench/ccaip/"
