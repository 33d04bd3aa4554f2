-- Reading the partitioned bucket the Kubernetes CronJobs write
-- (examples/kubernetes/): one gzip JSON Lines object per source, record
-- type and day, under {records}/source={source}/dt={from:%Y-%m-%d}/.
--   duckdb < examples/duckdb-query.sql
INSTALL httpfs; LOAD httpfs;
CREATE SECRET (TYPE s3, PROVIDER credential_chain);

-- Conversations: a file holds each one once, in its newest version; a
-- conversation that changed after its file was written appears again in a
-- later file, so keep the newest `updated_at` per id.
CREATE VIEW conversations AS
SELECT * EXCLUDE (rn) FROM (
  SELECT *, row_number() OVER (
    PARTITION BY source, conversation_id ORDER BY updated_at DESC) AS rn
  FROM read_json_auto('s3://acme-chats/conversations/*/*/*.jsonl.gz',
                      hive_partitioning = true, format = 'newline_delimited')
) WHERE rn = 1;

-- Messages are written once each (`message_id` is stable across runs).
CREATE VIEW messages AS
SELECT * FROM read_json_auto('s3://acme-chats/messages/*/*/*.jsonl.gz',
                             hive_partitioning = true, format = 'newline_delimited');

-- How long customers waited and how chats were coded, per source and day.
SELECT source, dt, count(*) AS chats,
       round(avg(wait_s)) AS avg_wait_s,
       mode(disposition) AS top_disposition
FROM conversations
GROUP BY ALL
ORDER BY dt DESC, source;
