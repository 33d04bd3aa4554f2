#!/bin/sh
# Pipelines over chatdump's JSON Lines. Each works with the demo data:
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
# duckdb -c "SELECT date_trunc('day', sent_at) AS day, count(*) FROM read_json_auto('/data/chats/hanoi/*.jsonl.gz') GROUP BY 1 ORDER BY 1"
