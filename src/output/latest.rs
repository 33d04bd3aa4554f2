//! One row per conversation in a file, in the newest version the run saw.
//!
//! A conversation can reach one output more than once: UJET chats change
//! while the export tails them, CareSoft asks each conversation type
//! separately, Wolkvox rows are built from messages of several windows.
//! Rows are streamed as they come, so the writer remembers, per
//! conversation, only which row holds its newest version (largest
//! `updated_at`, else the last received): 16 bytes of digest, 8 of time and
//! 4 of row number. At commit, only if some conversation was written more
//! than once, the temporary file is read back once and rewritten without
//! the older rows, before it is moved into place. stdout and files written
//! in place cannot take a row back; there the rows are a changelog.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use chrono::{DateTime, Utc};

use super::{Compression, Durability};
use crate::model::{sip_digest128, DigestMap};

/// The newest row of every conversation written so far.
#[derive(Default)]
pub struct Latest {
    /// Conversation (with its source) -> (version, row number).
    newest: DigestMap<(i64, u32)>,
    rows: u32,
    repeated: bool,
}

impl Latest {
    /// Notes the next row: conversation `id` of `source` at `updated_at`.
    pub fn note(&mut self, source: &str, id: &str, updated_at: Option<DateTime<Utc>>) {
        // Lives for one file only: the in-process digest is enough.
        let key = sip_digest128(&[source, id]);
        let version = updated_at.map_or(i64::MIN, |t| t.timestamp_millis());
        let row = self.rows;
        self.rows += 1;
        match self.newest.get_mut(&key) {
            None => {
                self.newest.insert(key, (version, row));
            }
            Some(best) => {
                self.repeated = true;
                // Equal or unknown versions: the last received wins.
                if version >= best.0 {
                    *best = (version, row);
                }
            }
        }
    }

    /// Whether some conversation has more than one row.
    /// Rows an older version of a conversation that a newer one replaces
    /// in the file.
    pub fn superseded(&self) -> u64 {
        u64::from(self.rows).saturating_sub(self.newest.len() as u64)
    }

    pub fn repeated(&self) -> bool {
        self.repeated
    }

    /// Rewrites `temp` (CSV with a header row when `csv`, else JSON Lines;
    /// compressed as `compression`) keeping only each conversation's newest row, in the
    /// order they were written; the result replaces `temp`, synced.
    /// For each row written, whether it is its conversation's newest.
    pub fn keep_mask(&self) -> Vec<bool> {
        let mut keep = vec![false; self.rows as usize];
        for &(_, row) in self.newest.values() {
            keep[row as usize] = true;
        }
        keep
    }

    pub fn keep_newest(&self, temp: &Path, csv: bool, compression: Compression) -> io::Result<()> {
        let keep = self.keep_mask();
        let rewritten = temp.with_file_name(format!(
            "{}.latest",
            temp.file_name().unwrap_or_default().to_string_lossy()
        ));
        let result = (|| {
            let input = compression.reader(File::open(temp)?)?;
            let mut input = BufReader::with_capacity(1 << 16, input);
            let file = crate::safefs::create_new(&rewritten, crate::safefs::existing_mode(temp))?;
            let mut output =
                io::BufWriter::with_capacity(1 << 16, compression.stream(file, Durability::Sync)?);
            let mut row = Vec::new();
            if csv && next_row(&mut input, &mut row, true)? {
                output.write_all(&row)?;
            }
            let mut n = 0usize;
            while next_row(&mut input, &mut row, csv)? {
                if keep.get(n).copied().unwrap_or(true) {
                    output.write_all(&row)?;
                }
                n += 1;
            }
            // Ends the compressed frame and syncs, like the first write.
            output.into_inner().map_err(|e| e.into_error())?.finish()?;
            std::fs::rename(&rewritten, temp)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&rewritten);
        }
        result
    }
}

/// Reads one row into `row` (cleared first): a line, or for CSV a record,
/// whose newlines inside quotes do not end it. False at the end.
fn next_row(input: &mut impl BufRead, row: &mut Vec<u8>, csv: bool) -> io::Result<bool> {
    row.clear();
    let mut quotes = 0usize;
    loop {
        let start = row.len();
        if input.read_until(b'\n', row)? == 0 {
            return Ok(!row.is_empty());
        }
        if !csv {
            return Ok(true);
        }
        // RFC 4180 doubles a quote inside a quoted field, so an odd count
        // so far means the newline is inside a field.
        quotes += row[start..].iter().filter(|&&b| b == b'"').count();
        if quotes.is_multiple_of(2) {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<DateTime<Utc>> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_newest_version_wins_else_the_last_received() {
        let mut l = Latest::default();
        l.note("s", "a", t("2024-03-05T10:00:00Z")); // row 0
        l.note("s", "b", None); // row 1
        l.note("s", "a", t("2024-03-05T09:00:00Z")); // row 2: older
        l.note("s", "b", None); // row 3: last received
        l.note("other", "a", None); // row 4: another source's "a"
        assert!(l.repeated());
        let mut rows: Vec<u32> = l.newest.values().map(|v| v.1).collect();
        rows.sort_unstable();
        assert_eq!(rows, [0, 3, 4]);
    }

    #[test]
    fn rows_are_split_like_csv_and_jsonl() {
        let text = "h1,h2\n\"a\nb\",\"x \"\"q\"\"\ny\"\nc,d\nlast";
        let mut input = BufReader::new(text.as_bytes());
        let mut row = Vec::new();
        let mut rows = Vec::new();
        while next_row(&mut input, &mut row, true).unwrap() {
            rows.push(String::from_utf8(row.clone()).unwrap());
        }
        assert_eq!(
            rows,
            ["h1,h2\n", "\"a\nb\",\"x \"\"q\"\"\ny\"\n", "c,d\n", "last"]
        );
    }

    #[test]
    fn a_file_is_rewritten_with_the_newest_rows_only() {
        let dir = tempfile::tempdir().unwrap();
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let temp = dir.path().join(format!(".x.csv.tmp-{compression:?}"));
            let text = "id,v\n\"a\nmultiline\",1\nb,1\na,2\n";
            let mut w = compression
                .stream(File::create(&temp).unwrap(), Durability::Sync)
                .unwrap();
            w.write_all(text.as_bytes()).unwrap();
            w.finish().unwrap();
            let mut l = Latest::default();
            l.note("s", "a", t("2024-01-01T00:00:00Z"));
            l.note("s", "b", None);
            l.note("s", "a", t("2024-01-02T00:00:00Z"));
            l.keep_newest(&temp, true, compression).unwrap();
            let mut back = String::new();
            let mut r = compression.reader(File::open(&temp).unwrap()).unwrap();
            std::io::Read::read_to_string(&mut r, &mut back).unwrap();
            assert_eq!(back, "id,v\nb,1\na,2\n", "{compression:?}");
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            3,
            "no leftovers"
        );
    }

    /// The rewrite's own temporary name, planted as a link to a file of
    /// someone else's: the link is replaced, its target untouched.
    #[cfg(unix)]
    #[test]
    fn the_rewrite_never_writes_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join(".x.jsonl.tmp-1");
        std::fs::write(&temp, "{\"id\":\"a\"}\n{\"id\":\"a\"}\n").unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".x.jsonl.tmp-1.latest")).unwrap();
        let mut l = Latest::default();
        l.note("s", "a", None);
        l.note("s", "a", None);
        l.keep_newest(&temp, false, Compression::None).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&temp).unwrap(), "{\"id\":\"a\"}\n");
    }
}
