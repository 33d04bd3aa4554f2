//! Incremental splitting of a JSON response into its records.
//!
//! Platform responses are an envelope (`{"code":..,"data":[ ... ]}`) or a
//! bare array, and can weigh hundreds of megabytes. Parsing them whole costs
//! memory in proportion; a byte-by-byte streaming deserializer is slow. This
//! scanner does the cheap part incrementally: it tracks only strings and
//! nesting to find where each element of the records array begins and ends,
//! and hands that element's bytes to a real parser (`serde_json::from_slice`,
//! which borrows strings). Memory is one element plus one network chunk.
//!
//! A source whose answers are large can instead read each record in place
//! ([`Scanner::reading_in_place`]): its parser is handed the text from the
//! record's start on and says how far the record went, so each byte is
//! parsed once. The response is then checked to be UTF-8 as it arrives
//! (JSON is UTF-8, RFC 8259 section 8.1), once, which lets the parser
//! borrow it as `&str`.
//!
//! Small values beside the records array (`code`, `msg`, `numFound`) are kept
//! as raw JSON text in an [`Envelope`] for the provider to judge. A records
//! key whose value is an object instead of an array yields that object as
//! the only element (Wolkvox does this on some endpoints).

mod grammar;
mod held;
mod plain;

use grammar::{Capture, Expect};
use held::Held;
use memchr::memchr2;
pub use plain::plain_run_end;

/// Where a response keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemsAt {
    /// Under this key of the root object (a root array is accepted too).
    Key(&'static str),
    /// The root is an array of records.
    Root,
}

/// The root object's other members, as raw JSON text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Envelope {
    fields: Vec<(String, String)>,
    /// Whether the records key (or a root array) was present at all.
    pub has_items: bool,
}

impl Envelope {
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A member as text: strings unquoted, numbers as written; null is None.
    pub fn text(&self, key: &str) -> Option<String> {
        match serde_json::from_str::<serde_json::Value>(self.raw(key)?).ok()? {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// A record as the scanner hands it over.
pub enum Element<'a> {
    /// A whole record's bytes.
    Whole(&'a [u8]),
    /// Text starting with a record, running on past its end or stopping
    /// before it (only when reading in place).
    Leading(&'a str),
}

/// What the receiver made of an [`Element::Leading`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lead {
    /// The record was the first `n` bytes, and was read.
    Read(usize),
    /// The text ends inside the record; nothing was read.
    Short,
    /// Not read this way (it does not parse): the scanner finds its end
    /// and hands it over whole.
    Declined,
}

/// A byte-order mark, which some servers put first.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How much text from a record's start a first try at reading it in place
/// waits for: most records fit, so few tries come up short, and one that
/// does waits for twice as much before the next.
const LEAD_AT_LEAST: usize = 16 << 10;

/// Envelope values larger than this are validated, not kept.
const MAX_ENVELOPE_VALUE: usize = 64 * 1024;

/// A resumable scanner; feed it chunks, it calls back once per record.
///
/// The outer layer (root container, its keys, the records array and the
/// separators between records) is checked against the JSON grammar here;
/// what lies inside a record is only walked for its nesting and handed
/// whole to the provider's parser, which checks the rest. Small envelope
/// members are checked when kept. So a response with a syntax error
/// anywhere is refused, by this scanner or by the parser of the record
/// that holds the error.
pub struct Scanner {
    items_at: ItemsAt,
    held: Held,
    /// Bytes of the response dropped from the front of `held` (for
    /// offsets in messages).
    dropped: usize,
    /// The current record is to be offered in place, from this many bytes
    /// past its start on; None: it is walked (or there is none).
    lead_when: Option<usize>,
    /// The first offer's threshold ([`LEAD_AT_LEAST`]; tests lower it).
    lead_at_least: usize,
    /// Next byte of `held` to look at.
    pos: usize,
    /// Nesting depth, outer layer and captured containers alike.
    depth: u32,
    in_string: bool,
    escaped: bool,
    started: bool,
    expect: Expect,
    /// The outer layer's open containers (true: object); at most two.
    outer: Vec<bool>,
    /// Whether the innermost outer container is the records array.
    in_records: bool,
    /// The records key was met (a second one is an error).
    records_seen: bool,
    /// The root member whose value comes next.
    key: String,
    capture: Capture,
    capture_is_container: bool,
    /// The depth at which a captured container closes.
    capture_depth: u32,
    max_value: usize,
    /// The input did not even start like JSON (an HTML page, text).
    not_json: bool,
    pub envelope: Envelope,
    pub items: usize,
}

impl Scanner {
    #[cfg(test)]
    pub fn new(items_at: ItemsAt) -> Self {
        Scanner::with_limit(items_at, 64 << 20)
    }

    /// A scanner that refuses any single value (a record, an envelope
    /// member) larger than `max_value` bytes instead of buffering it.
    pub fn with_limit(items_at: ItemsAt, max_value: usize) -> Self {
        Scanner {
            items_at,
            held: Held::Bytes(Vec::new()),
            dropped: 0,
            lead_when: None,
            lead_at_least: LEAD_AT_LEAST,
            pos: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            started: false,
            expect: Expect::Value,
            outer: Vec::with_capacity(2),
            in_records: false,
            records_seen: false,
            key: String::new(),
            capture: Capture::None,
            capture_is_container: false,
            capture_depth: 0,
            max_value,
            not_json: false,
            envelope: Envelope::default(),
            items: 0,
        }
    }

    /// Records are to be offered in place ([`Element::Leading`]) before any
    /// is walked; the response must then be UTF-8.
    pub fn reading_in_place(mut self) -> Self {
        self.held = Held::Text {
            text: String::new(),
            cut: Vec::new(),
        };
        self
    }

    /// Offers each record in place once this many bytes of it are held
    /// (tests: small records, offered before they are whole).
    #[cfg(test)]
    pub fn offering_from(mut self, bytes: usize) -> Self {
        self.lead_at_least = bytes;
        self
    }

    /// The error for an input that does not even start like JSON, showing
    /// how it starts.
    fn refuse_as_not_json(&mut self, start: &[u8]) -> String {
        self.not_json = true;
        let preview = String::from_utf8_lossy(&start[..start.len().min(40)]);
        format!("the response is not JSON (it starts with {preview:?})")
    }

    /// Whether the last error was that the input is not JSON at all, as
    /// opposed to JSON that is broken or cut.
    pub fn refused_as_not_json(&self) -> bool {
        self.not_json
    }

    /// Whether the root value is complete: nothing after it matters, so a
    /// reader may stop (a server may pad an answer with endless spaces).
    pub fn is_done(&self) -> bool {
        self.expect == Expect::End
    }

    /// Scans `chunk`, calling `on_item` with the bytes of each complete record.
    #[cfg(test)]
    pub fn feed(&mut self, chunk: &[u8], on_item: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        self.feed_elements(chunk, &mut whole_only(on_item))
    }

    /// Scans `chunk`, handing each record to `on_element`: whole, or when
    /// reading in place, leading the text that follows it.
    pub fn feed_elements(
        &mut self,
        chunk: &[u8],
        on_element: &mut dyn FnMut(Element<'_>) -> Lead,
    ) -> Result<(), String> {
        let at = self.held.len();
        if let Err(offset) = self.held.append(chunk) {
            // Still say so if it is no JSON at all (an HTML error page).
            if !self.started {
                let start = chunk.trim_ascii_start();
                if !start.starts_with(b"{") && !start.starts_with(b"[") && !start.starts_with(BOM) {
                    return Err(self.refuse_as_not_json(start));
                }
            }
            return Err(format!(
                "the response is not UTF-8 (at byte {})",
                self.dropped + at + offset
            ));
        }
        self.scan(on_element, false)?;
        self.compact();
        if let Capture::Key(start) | Capture::Value(start) | Capture::Item(start) = self.capture {
            if self.held.len() - start > self.max_value {
                return Err(format!(
                    "a single value is larger than {} bytes (`max_record_size`)",
                    self.max_value
                ));
            }
        }
        Ok(())
    }

    /// Ends the input; errors if the JSON was cut short.
    #[cfg(test)]
    pub fn finish(&mut self) -> Result<(), String> {
        self.finish_elements(&mut whole_only(&mut |_| {}))
    }

    /// Ends the input, reading a record still held in place; errors if the
    /// JSON was cut short.
    pub fn finish_elements(
        &mut self,
        on_element: &mut dyn FnMut(Element<'_>) -> Lead,
    ) -> Result<(), String> {
        if self.held.is_cut() {
            return Err("the response ended inside a UTF-8 character".into());
        }
        if self.lead_when.is_some() {
            self.scan(on_element, true)?;
        }
        match (self.is_done(), self.started) {
            (true, _) => Ok(()),
            (false, true) => Err("the response ended before its JSON was complete".into()),
            (false, false) => Err("the response was empty".into()),
        }
    }

    /// Scans what is held from `pos` on. `force`: the input has ended, so
    /// a record held for reading in place is offered with what there is.
    fn scan(
        &mut self,
        on_element: &mut dyn FnMut(Element<'_>) -> Lead,
        force: bool,
    ) -> Result<(), String> {
        let mut i = self.pos;
        while i < self.held.len() {
            if let (Some(when), Capture::Item(start)) = (self.lead_when, self.capture) {
                match self.offer(start, when, force, on_element)? {
                    Offered::Read(end) => {
                        i = end;
                        continue;
                    }
                    Offered::Wait => {
                        self.pos = i;
                        return Ok(());
                    }
                    // Walked from just after its opening brace on.
                    Offered::Walk => {}
                }
            }
            let buf = self.held.bytes();
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                match memchr2(b'"', b'\\', &buf[i..]) {
                    None => {
                        i = buf.len();
                        break;
                    }
                    Some(off) => {
                        i += off;
                        if buf[i] == b'\\' {
                            self.escaped = true;
                            i += 1;
                            continue;
                        }
                        self.in_string = false;
                        self.string_closed(i, on_element)?;
                        i += 1;
                        continue;
                    }
                }
            }
            let b = buf[i];
            if self.capture != Capture::None {
                if self.capture_is_container {
                    match b {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == self.capture_depth {
                                self.end_capture(i + 1, on_element)?;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                    continue;
                }
                // A number or literal ends at the first byte that cannot
                // belong to it; that byte is then read as structure.
                if !is_delimiter(b) {
                    i += 1;
                    continue;
                }
                self.end_capture(i, on_element)?;
            }
            if b.is_ascii_whitespace() {
                i += 1;
                continue;
            }
            if !self.started {
                match b {
                    b'{' | b'[' => self.started = true,
                    0xEF | 0xBB | 0xBF => {
                        // A byte-order mark some servers put first.
                        i += 1;
                        continue;
                    }
                    _ => {
                        let held = self.held.bytes();
                        let start = held[i..held.len().min(i + 40)].to_vec();
                        return Err(self.refuse_as_not_json(&start));
                    }
                }
            }
            self.outer_byte(i, b)?;
            i += 1;
        }
        self.pos = i;
        Ok(())
    }

    /// Drops bytes no capture needs any more.
    fn compact(&mut self) {
        let keep_from = match self.capture {
            Capture::None => self.pos,
            Capture::Key(s) | Capture::Value(s) | Capture::Item(s) => s,
        };
        if keep_from == 0 || keep_from < self.held.len() / 2 && keep_from < 1 << 20 {
            return;
        }
        if !self.held.drop_front(keep_from) {
            return;
        }
        self.dropped += keep_from;
        self.pos -= keep_from;
        self.capture = match self.capture {
            Capture::None => Capture::None,
            Capture::Key(s) => Capture::Key(s - keep_from),
            Capture::Value(s) => Capture::Value(s - keep_from),
            Capture::Item(s) => Capture::Item(s - keep_from),
        };
    }
}

/// What became of a record offered to be read in place.
enum Offered {
    /// Read; scanning goes on at this offset.
    Read(usize),
    /// Not enough of it is held yet.
    Wait,
    /// To be walked like any record.
    Walk,
}

/// A receiver of whole records only: records offered in place are declined.
#[cfg(test)]
fn whole_only<'f>(on_item: &'f mut dyn FnMut(&[u8])) -> impl FnMut(Element<'_>) -> Lead + 'f {
    move |element| match element {
        Element::Whole(bytes) => {
            on_item(bytes);
            Lead::Read(bytes.len())
        }
        Element::Leading(_) => Lead::Declined,
    }
}

/// Bytes that end a number or a literal.
fn is_delimiter(b: u8) -> bool {
    matches!(b, b',' | b':' | b'{' | b'}' | b'[' | b']' | b'"') || b.is_ascii_whitespace()
}

/// Property tests run the same cases on every machine and every run (CI
/// must be deterministic), and write no regression files into the tree.
#[cfg(test)]
pub fn proptest_config(cases: u32) -> proptest::prelude::ProptestConfig {
    proptest::prelude::ProptestConfig {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x00c4_a7d0),
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use held::cut_off_at_end;
    use plain::plain_run_end_portable;

    fn split(
        items_at: ItemsAt,
        text: &str,
        chunk: usize,
    ) -> Result<(Vec<String>, Envelope), String> {
        let mut s = Scanner::new(items_at);
        let mut out = Vec::new();
        for piece in text.as_bytes().chunks(chunk.max(1)) {
            s.feed(piece, &mut |b| {
                out.push(String::from_utf8(b.to_vec()).unwrap())
            })?;
        }
        s.finish()?;
        assert_eq!(s.items, out.len());
        Ok((out, s.envelope))
    }

    const NESTED: &str = r#" {"code": 200, "error" : null, "msg":" 1 records were found",
        "data": [ {"conn_id":"1","conversation":[{"message":"a \"quoted\" ] } [ {","date":"x"}]},
                  {"conn_id":"2","conversation":[]} , "scalar\\", 42 ,null],
        "tail": {"k": [1, 2]}, "after": "\u00e9"}"#;

    #[test]
    fn splits_items_and_keeps_the_envelope_at_any_chunk_size() {
        let whole = split(ItemsAt::Key("data"), NESTED, usize::MAX).unwrap();
        assert_eq!(
            whole.0,
            [
                r#"{"conn_id":"1","conversation":[{"message":"a \"quoted\" ] } [ {","date":"x"}]}"#,
                r#"{"conn_id":"2","conversation":[]}"#,
                r#""scalar\\""#,
                "42",
                "null",
            ]
        );
        assert_eq!(whole.1.raw("code"), Some("200"));
        assert_eq!(
            whole.1.text("msg").as_deref(),
            Some(" 1 records were found")
        );
        assert_eq!(whole.1.text("error"), None);
        assert_eq!(whole.1.raw("tail"), Some(r#"{"k": [1, 2]}"#));
        assert_eq!(whole.1.text("after").as_deref(), Some("é"));
        assert!(whole.1.has_items);
        for chunk in 1..40 {
            assert_eq!(
                split(ItemsAt::Key("data"), NESTED, chunk).unwrap(),
                whole,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn bare_arrays_and_single_objects() {
        let (items, env) = split(ItemsAt::Root, r#"[{"id":1},{"id":2}]"#, 3).unwrap();
        assert_eq!(items, [r#"{"id":1}"#, r#"{"id":2}"#]);
        assert!(env.has_items);
        let (items, _) = split(ItemsAt::Key("data"), r#"[{"id":1}]"#, 2).unwrap();
        assert_eq!(
            items.len(),
            1,
            "a root array is accepted for a keyed source"
        );
        let (items, env) = split(
            ItemsAt::Key("data"),
            r#"{"code":"200","data":{"conn_id":"9"}}"#,
            5,
        )
        .unwrap();
        assert_eq!(items, [r#"{"conn_id":"9"}"#]);
        assert_eq!(env.text("code").as_deref(), Some("200"));
        let (items, env) = split(ItemsAt::Root, r#"{"error":"nope"}"#, 4).unwrap();
        assert!(items.is_empty() && !env.has_items);
        assert_eq!(env.text("error").as_deref(), Some("nope"));
        let (items, env) = split(
            ItemsAt::Key("chats"),
            r#"{"code":"ok","numFound":0,"chats":[]}"#,
            1,
        )
        .unwrap();
        assert!(items.is_empty() && env.has_items);
        assert_eq!(env.text("numFound").as_deref(), Some("0"));
    }

    #[test]
    fn broken_input_is_an_error() {
        assert!(split(ItemsAt::Key("data"), "<html>502</html>", 4)
            .unwrap_err()
            .contains("not JSON"));
        assert!(split(ItemsAt::Key("data"), r#"{"data":[{"a":1},{"b""#, 4)
            .unwrap_err()
            .contains("ended before"));
        assert!(split(ItemsAt::Key("data"), "", 4)
            .unwrap_err()
            .contains("empty"));
        assert!(split(ItemsAt::Key("data"), r#"{"data":[]} x"#, 4).is_err());
    }

    #[test]
    fn a_character_cut_off_at_a_chunks_end_is_found() {
        for (bytes, cut) in [
            (&b""[..], 0),
            (b"abc", 0),
            ("é".as_bytes(), 0),
            (b"a\xC3", 1),
            (b"\xE2\x82", 2),
            (b"\xF0\x9F\x98", 3),
            ("😀".as_bytes(), 0),
            // Not a character's start: left to the check, which refuses it.
            (b"\xFF", 0),
            (b"\x80\x80\x80\x80", 0),
            (b"\xE2A", 0),
        ] {
            assert_eq!(cut_off_at_end(bytes), cut, "{bytes:?}");
        }
    }

    #[test]
    fn text_held_in_place_is_utf8_checked_across_chunk_cuts() {
        let body = "{\"data\":[{\"m\":\"a😀b\"}]}".as_bytes();
        let emoji = body.iter().position(|&b| b == 0xF0).unwrap();
        let mut s = Scanner::new(ItemsAt::Key("data")).reading_in_place();
        let mut read = Vec::new();
        let mut on_element = |e: Element<'_>| match e {
            Element::Leading(text) => {
                let (lead, value) = read_leading(text);
                read.extend(value);
                lead
            }
            Element::Whole(_) => Lead::Declined,
        };
        // The emoji's four bytes arrive in three chunks.
        for piece in [
            &body[..emoji + 1],
            &body[emoji + 1..emoji + 3],
            &body[emoji + 3..],
        ] {
            s.feed_elements(piece, &mut on_element).unwrap();
        }
        s.finish_elements(&mut on_element).unwrap();
        assert_eq!(read, [serde_json::json!({"m": "a😀b"})]);

        let mut s = Scanner::new(ItemsAt::Key("data")).reading_in_place();
        let err = s
            .feed_elements(b"{\"data\":[{\"m\":\"adi\xF3s\"}]}", &mut |_| {
                Lead::Declined
            })
            .unwrap_err();
        assert!(err.contains("not UTF-8 (at byte 18)"), "{err}");
        let mut s = Scanner::new(ItemsAt::Key("data")).reading_in_place();
        s.feed_elements(b"{\"data\":[\"\xE2\x82", &mut |_| Lead::Declined)
            .unwrap();
        let err = s.finish_elements(&mut |_| Lead::Declined).unwrap_err();
        assert!(err.contains("inside a UTF-8 character"), "{err}");
        let err = Scanner::new(ItemsAt::Root)
            .reading_in_place()
            .feed_elements(b"<html>\xE9t\xE9</html>", &mut |_| Lead::Declined)
            .unwrap_err();
        assert!(
            err.contains("not JSON"),
            "a Latin-1 page is still no JSON: {err}"
        );
    }

    #[test]
    fn read_in_place_memory_stays_bounded_and_oversized_records_are_refused() {
        let mut s = Scanner::new(ItemsAt::Key("data")).reading_in_place();
        let mut read = 0;
        let mut on_element = |e: Element<'_>| match e {
            Element::Leading(text) => {
                let (lead, value) = read_leading(text);
                read += usize::from(value.is_some());
                lead
            }
            Element::Whole(_) => Lead::Declined,
        };
        s.feed_elements(b"{\"data\":[", &mut on_element).unwrap();
        let item = format!("{{\"m\":\"{}\"}},", "ñ".repeat(50_000));
        // Each record arrives in 7 KiB pieces: offered, short, offered again.
        for _ in 0..50 {
            for piece in item.as_bytes().chunks(7 << 10) {
                s.feed_elements(piece, &mut on_element).unwrap();
            }
            assert!(s.held.len() < 3 * item.len(), "held {}", s.held.len());
        }
        s.feed_elements(b"{}]}", &mut on_element).unwrap();
        s.finish_elements(&mut on_element).unwrap();
        assert_eq!(read, 51);

        let mut s = Scanner::with_limit(ItemsAt::Key("data"), 1000).reading_in_place();
        s.feed_elements(br#"{"data":[{"m":""#, &mut |_| Lead::Short)
            .unwrap();
        let err = (0..20)
            .find_map(|_| s.feed_elements(&[b'x'; 100], &mut |_| Lead::Short).err())
            .expect("refused");
        assert!(err.contains("max_record_size"), "{err}");
        assert!(s.held.len() < 1200);
    }

    #[test]
    fn memory_stays_bounded_by_one_item() {
        let mut s = Scanner::new(ItemsAt::Key("data"));
        s.feed(b"{\"data\":[", &mut |_| {}).unwrap();
        let item = format!("{{\"m\":\"{}\"}},", "x".repeat(100_000));
        let mut count = 0;
        for _ in 0..200 {
            s.feed(item.as_bytes(), &mut |_| count += 1).unwrap();
            assert!(
                s.held.len() < 3 * item.len(),
                "buffer grew to {}",
                s.held.len()
            );
        }
        s.feed(b"{}]}", &mut |_| count += 1).unwrap();
        s.finish().unwrap();
        assert_eq!(count, 201);
    }

    /// What `serde_json` makes of a whole response: the records it holds
    /// (None: not a response with records at all).
    fn records_by_serde(items_at: ItemsAt, bytes: &[u8]) -> Option<Vec<serde_json::Value>> {
        use serde_json::Value;
        match (serde_json::from_slice::<Value>(bytes).ok()?, items_at) {
            (Value::Array(items), _) => Some(items),
            (Value::Object(mut root), ItemsAt::Key(k)) => match root.remove(k)? {
                Value::Array(items) => Some(items),
                Value::Null => Some(Vec::new()),
                one @ Value::Object(_) => Some(vec![one]),
                _ => None,
            },
            _ => None,
        }
    }

    /// What the scanner, then a parser per record, makes of it: the same
    /// whether records are handed over whole or read in place (checked on
    /// every call).
    fn records_by_scanner(
        items_at: ItemsAt,
        bytes: &[u8],
        cuts: &[usize],
    ) -> Option<Vec<serde_json::Value>> {
        let whole = records_read(items_at, bytes, cuts, false);
        let in_place = records_read(items_at, bytes, cuts, true);
        assert_eq!(whole, in_place, "read in place");
        whole
    }

    /// A reader in place, as a source's would be: the value at the start
    /// of the text, its length, or whether the text stops inside it.
    fn read_leading(text: &str) -> (Lead, Option<serde_json::Value>) {
        let mut stream = serde_json::Deserializer::from_str(text).into_iter();
        match stream.next() {
            Some(Ok(value)) => (Lead::Read(stream.byte_offset()), Some(value)),
            Some(Err(e)) if e.is_eof() => (Lead::Short, None),
            _ => (Lead::Declined, None),
        }
    }

    fn records_read(
        items_at: ItemsAt,
        bytes: &[u8],
        cuts: &[usize],
        in_place: bool,
    ) -> Option<Vec<serde_json::Value>> {
        let mut s = Scanner::new(items_at);
        if in_place {
            // Offered from the first byte on: most offers come up short.
            s = s.reading_in_place().offering_from(1);
        }
        let mut read: Vec<Option<serde_json::Value>> = Vec::new();
        let mut on_element = |element: Element<'_>| match element {
            Element::Whole(b) => {
                read.push(serde_json::from_slice(b).ok());
                Lead::Read(b.len())
            }
            Element::Leading(text) => {
                let (lead, value) = read_leading(text);
                if value.is_some() {
                    read.push(value);
                }
                lead
            }
        };
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(start, bytes.len());
            s.feed_elements(&bytes[start..cut], &mut on_element).ok()?;
            start = cut;
        }
        s.finish_elements(&mut on_element).ok()?;
        if !s.envelope.has_items {
            return None;
        }
        read.into_iter().collect()
    }

    fn json_leaf() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z\"\\\\ \u{0}-\u{1f}é😀\\]\\[{},:]{0,12}".prop_map(Value::String),
        ]
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        json_leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\"{]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A response; with `small` its records are scalars, so most of its
    /// bytes are the outer grammar a damage test should hit.
    fn response(small: bool) -> impl proptest::strategy::Strategy<Value = (ItemsAt, Vec<u8>)> {
        use proptest::prelude::*;
        let item = if small {
            json_leaf().boxed()
        } else {
            json_value().boxed()
        };
        (
            proptest::collection::vec(item, 0..6),
            json_value(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(items, other, keyed, pretty)| {
                let doc = if keyed {
                    serde_json::json!({"code": 200, "other": other, "data": items, "msg": "ok"})
                } else {
                    serde_json::Value::Array(items)
                };
                let text = if pretty {
                    serde_json::to_vec_pretty(&doc)
                } else {
                    serde_json::to_vec(&doc)
                };
                let at = if keyed {
                    ItemsAt::Key("data")
                } else {
                    ItemsAt::Root
                };
                (at, text.unwrap())
            })
    }

    /// Mostly the bytes JSON's grammar turns on, so damage lands where it
    /// matters; sometimes any byte.
    fn json_byte() -> impl proptest::strategy::Strategy<Value = u8> {
        use proptest::prelude::*;
        prop_oneof![
            4 => proptest::sample::select(b"{}[],:\" \\0123456789.-eEtrufalsn".to_vec()),
            1 => any::<u8>(),
        ]
    }

    proptest::proptest! {
        #![proptest_config(super::proptest_config(512))]

        /// The block-at-a-time scan finds the first quote, backslash or
        /// control character from any offset, as a byte-by-byte look does.
        #[test]
        fn plain_run_end_finds_the_first_stop(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => proptest::sample::select(b"abc \xc3\xa1~\x7f\x80\xff".to_vec()),
                    1 => proptest::sample::select(b"\"\\\x00\x1f\x20\n".to_vec()),
                ],
                0..80,
            ),
            from in 0usize..90,
        ) {
            let expected = bytes
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, &b)| b < 0x20 || b == b'"' || b == b'\\')
                .map(|(at, _)| at);
            proptest::prop_assert_eq!(plain_run_end(&bytes, from), expected);
            proptest::prop_assert_eq!(plain_run_end_portable(&bytes, from), expected);
        }

        /// Valid responses, cut into random chunks: the same records as
        /// serde_json reads, and every strict prefix is refused.
        #[test]
        fn valid_json_in_any_chunks_gives_serdes_records(
            (at, doc) in response(false),
            cuts in proptest::collection::vec(0usize..4096, 0..8),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let expected = records_by_serde(at, &doc);
            proptest::prop_assert!(expected.is_some());
            proptest::prop_assert_eq!(records_by_scanner(at, &doc, &cuts), expected);
            for end in 0..doc.len() {
                let prefix = &doc[..end];
                if prefix.iter().all(u8::is_ascii_whitespace) || records_by_serde(at, prefix).is_none() {
                    proptest::prop_assert_eq!(records_by_scanner(at, prefix, &[end / 2]), None, "prefix {}", end);
                }
            }
        }

        /// Damaged responses (bytes replaced, inserted, removed) and pure
        /// noise: the scanner accepts exactly what serde_json accepts, with
        /// the same records, and never panics.
        #[test]
        fn damaged_json_is_refused_exactly_when_serde_refuses_it(
            (at, doc) in proptest::prop_oneof![response(false), response(true)],
            edits in proptest::collection::vec((0usize..4096, 0u8..3, json_byte()), 1..4),
            cut in 0usize..4096,
        ) {
            let mut doc = doc;
            for (at_byte, op, byte) in edits {
                let i = at_byte % (doc.len() + 1);
                match op {
                    0 if i < doc.len() => doc[i] = byte,
                    1 => doc.insert(i, byte),
                    _ if i < doc.len() => { doc.remove(i); }
                    _ => {}
                }
            }
            // Two records keys (serde keeps the last) and a leading
            // byte-order mark (tolerated here) are deliberate differences.
            proptest::prop_assume!(doc.windows(6).filter(|w| w == b"\"data\"").count() < 2);
            proptest::prop_assume!(doc.first() != Some(&0xEF));
            proptest::prop_assert_eq!(
                records_by_scanner(at, &doc, &[cut % (doc.len() + 1)]),
                records_by_serde(at, &doc)
            );
        }

        #[test]
        fn noise_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            proptest::prop_assume!(bytes.first() != Some(&0xEF));
            for at in [ItemsAt::Root, ItemsAt::Key("data")] {
                proptest::prop_assert_eq!(
                    records_by_scanner(at, &bytes, &[bytes.len() / 3]),
                    records_by_serde(at, &bytes)
                );
            }
        }
    }

    #[test]
    fn grammar_errors_between_records_are_refused() {
        for bad in [
            r#"{"data":[{"a":1} {"b":2}]}"#,
            r#"{"data":[{"a":1},,{"b":2}]}"#,
            r#"{"data":[{"a":1},]}"#,
            r#"{"data" [1]}"#,
            r#"{"code" 1, "data":[]}"#,
            r#"{"data":[1 2]}"#,
            r#"{"data":[],}"#,
            r#"{"data":[]]"#,
            r#"{"data":[1],"data":[2]}"#,
            r#"{"data":[1:2]}"#,
            r#"{,"data":[]}"#,
        ] {
            assert!(
                records_by_scanner(ItemsAt::Key("data"), bad.as_bytes(), &[]).is_none(),
                "{bad}"
            );
        }
        assert_eq!(
            records_by_scanner(ItemsAt::Key("data"), br#"{"data":null}"#, &[6]),
            Some(Vec::new())
        );
        assert_eq!(
            records_by_scanner(ItemsAt::Key("data"), br#"{"code":"OK"}"#, &[]),
            None
        );
        assert_eq!(
            records_by_scanner(ItemsAt::Root, br#"{"message":"token expired"}"#, &[]),
            None
        );
    }

    #[test]
    fn an_oversized_value_is_refused_before_it_is_held() {
        let mut s = Scanner::with_limit(ItemsAt::Key("data"), 1000);
        s.feed(br#"{"data":["#, &mut |_| {}).unwrap();
        let mut fed = 0;
        let err = loop {
            match s.feed(&[b'x'; 100], &mut |_| {}) {
                Ok(()) => fed += 100,
                Err(e) => break e,
            }
            assert!(fed < 2000, "never refused");
        };
        assert!(err.contains("max_record_size"), "{err}");
        assert!(s.held.len() < 1200);
    }

    #[test]
    fn the_scanner_says_when_the_root_is_complete() {
        let mut s = Scanner::new(ItemsAt::Key("data"));
        s.feed(br#"{"data":[]"#, &mut |_| {}).unwrap();
        assert!(!s.is_done());
        s.feed(b"}   ", &mut |_| {}).unwrap();
        assert!(s.is_done());
    }
}
