# Shared by the Wolkvox benchmark scripts (sourced, not run): build the
# release binary and the generator, generate a chat_2 answer, serve it on
# 127.0.0.1, and write a configuration pointing at it. Sourcing it makes
# $work, a scratch folder removed on exit with the server.

work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT

# serve_chat2 MB MIX: sets $port, $server and $size.
serve_chat2() {
  cargo build --release --quiet
  cargo build --release --quiet --example gen_chat2
  mkdir -p "$work/www/api/v2"
  ./target/release/examples/gen_chat2 "$work/www/api/v2/reports_manager.php" "$1" "$2"
  size=$(stat -c %s "$work/www/api/v2/reports_manager.php")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # Python's file server, answering with sendfile(2): the stand-in for a
  # remote platform then costs this machine's two cores next to nothing
  # (copying through Python took about 0.15 s of CPU a 256 MB answer,
  # which a two-thread export pays and a one-thread jq hardly notices).
  (cd "$work/www" && exec python3 -c '
import http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile):
        outputfile.flush()
        self.connection.sendfile(source)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
' "$port" >/dev/null 2>&1) &
  server=$!
  for _ in $(seq 50); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/api/v2/reports_manager.php" -r 0-0 && break
    sleep 0.1
  done
}

# wolkvox_config [EXTRA]: $work/chatdump.toml with one source, `bench`.
wolkvox_config() {
  printf '[sources.bench]\nkind = "wolkvox"\nbase_url = "http://127.0.0.1:%s"\ntoken = "bench"\nrecord_cap = 10000000\n%s\n' \
    "$port" "${1:-}" > "$work/chatdump.toml"
  chmod 600 "$work/chatdump.toml"
}

# bench_chat2 MB MIX: the answer served and the configuration written.
bench_chat2() {
  serve_chat2 "$1" "$2"
  wolkvox_config
}
