#!/bin/sh
# Pipelines over chatdump's JSON Lines, tried on the demo data (jq 1.6,
# DuckDB 2.0 through its Python package). Each works with the demo data:
#   cargo run --release -- demo --records messages > messages.jsonl
set -eu

# Messages per sender type.
chatdump demo --records messages -q | jq -r .sender | sort | uniq -c

# Only what customers wrote, as text.
chatdump demo --records messages -q | jq -r 'select(.sender == "customer") | .text'

# Conversations longer than five minutes, as CSV for a spreadsheet.
chatdump demo -q | jq -r 'select(.duration_s > 300) | [.source, .conversation_id, .agent_name, .duration_s] | @csv'

# DuckDB reads the files directly (also the .jsonl.gz of a cron export):
chatdump demo --records messages -q -o messages.jsonl
duckdb -c "SELECT channel, sender, count(*) AS n FROM read_json_auto('messages.jsonl') GROUP BY ALL ORDER BY n DESC"
duckdb -c "SELECT date_trunc('day', sent_at::TIMESTAMP) AS day, count(*) AS messages FROM read_json_auto('messages.jsonl') GROUP BY 1 ORDER BY 1"
# A cron export's files, compressed, all at once:
# duckdb -c "SELECT count(*) FROM read_json_auto('/data/chats/hanoi/*.jsonl.gz')"
# Without the duckdb CLI: pip install duckdb, then
# python3 -c "import duckdb; print(duckdb.sql(\"SELECT sender, count(*) FROM read_json_auto('messages.jsonl') GROUP BY 1\"))"

# The newest row of every conversation, from stdout (a changelog) or from a
# folder of --state files (a changed conversation comes back in a later file):
chatdump demo -q | jq -sc 'group_by([.source, .conversation_id])[] | max_by(.updated_at)'
# duckdb -c "SELECT * FROM read_json('/data/chats/hanoi/*.jsonl.gz') QUALIFY row_number() OVER (PARTITION BY source, conversation_id ORDER BY updated_at DESC) = 1"
