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
//! Small values beside the records array (`code`, `msg`, `numFound`) are kept
//! as raw JSON text in an [`Envelope`] for the provider to judge. A records
//! key whose value is an object instead of an array yields that object as
//! the only element (Wolkvox does this on some endpoints).

use memchr::memchr2;

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

/// Envelope values larger than this are skipped, not kept.
const MAX_ENVELOPE_VALUE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootExpect {
    Key,
    Colon,
    Value,
    /// Inside or after a value, until the next `,`.
    Comma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    None,
    /// A root member's key string starting at this offset.
    Key(usize),
    /// A root member's value starting at this offset.
    Value(usize),
    /// A record starting at this offset.
    Item(usize),
}

/// A resumable scanner; feed it chunks, it calls back once per record.
pub struct Scanner {
    items_at: ItemsAt,
    buf: Vec<u8>,
    /// Next byte of `buf` to look at.
    pos: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
    started: bool,
    done: bool,
    root_expect: RootExpect,
    key: String,
    /// Depth at which records live (inside their array), once known.
    item_depth: Option<u32>,
    /// A lone object under the records key: the item ends back at depth 1.
    single_item: bool,
    capture: Capture,
    capture_is_container: bool,
    pub envelope: Envelope,
    pub items: usize,
}

impl Scanner {
    pub fn new(items_at: ItemsAt) -> Self {
        Scanner {
            items_at,
            buf: Vec::new(),
            pos: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            started: false,
            done: false,
            root_expect: RootExpect::Key,
            key: String::new(),
            item_depth: None,
            single_item: false,
            capture: Capture::None,
            capture_is_container: false,
            envelope: Envelope::default(),
            items: 0,
        }
    }

    /// Scans `chunk`, calling `on_item` with the bytes of each complete record.
    pub fn feed(&mut self, chunk: &[u8], on_item: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        self.buf.extend_from_slice(chunk);
        self.scan(on_item)?;
        self.compact();
        Ok(())
    }

    /// Ends the input; errors if the JSON was cut short.
    pub fn finish(&mut self, on_item: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        if !self.done {
            // A bare scalar record at the very end has no terminator.
            if let (Capture::Item(start), false) = (self.capture, self.capture_is_container) {
                if !self.in_string && start < self.buf.len() {
                    self.emit_item(start, self.buf.len(), on_item);
                }
            }
            return Err(if self.started {
                "the response ended before its JSON was complete".into()
            } else {
                "the response was empty".into()
            });
        }
        Ok(())
    }

    fn at_item_level(&self) -> bool {
        self.item_depth == Some(self.depth) && self.capture == Capture::None
    }

    fn scan(&mut self, on_item: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        let mut i = self.pos;
        while i < self.buf.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                match memchr2(b'"', b'\\', &self.buf[i..]) {
                    None => {
                        i = self.buf.len();
                        break;
                    }
                    Some(off) => {
                        i += off;
                        if self.buf[i] == b'\\' {
                            self.escaped = true;
                            i += 1;
                            continue;
                        }
                        self.in_string = false;
                        self.string_closed(i, on_item);
                        i += 1;
                        continue;
                    }
                }
            }
            let b = self.buf[i];
            if self.done {
                if !b.is_ascii_whitespace() {
                    return Err(format!(
                        "unexpected data after the end of the JSON response at byte {i}"
                    ));
                }
                i += 1;
                continue;
            }
            if !self.started {
                match b {
                    b'{' | b'[' => self.started = true,
                    b if b.is_ascii_whitespace() || b == 0xEF || b == 0xBB || b == 0xBF => {
                        i += 1;
                        continue;
                    }
                    _ => {
                        let preview =
                            String::from_utf8_lossy(&self.buf[i..self.buf.len().min(i + 40)])
                                .into_owned();
                        return Err(format!(
                            "the response is not JSON (it starts with {preview:?})"
                        ));
                    }
                }
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.at_item_level() {
                        self.capture = Capture::Item(i);
                        self.capture_is_container = false;
                    } else if self.depth == 1
                        && self.item_depth != Some(1)
                        && self.capture == Capture::None
                    {
                        match self.root_expect {
                            RootExpect::Key => self.capture = Capture::Key(i),
                            RootExpect::Value => {
                                self.capture = Capture::Value(i);
                                self.capture_is_container = false;
                                self.root_expect = RootExpect::Comma;
                            }
                            _ => {}
                        }
                    }
                }
                b'{' | b'[' => {
                    if self.depth == 0 {
                        if b == b'[' {
                            self.item_depth = Some(1);
                            self.envelope.has_items = true;
                        }
                    } else if self.at_item_level() {
                        self.capture = Capture::Item(i);
                        self.capture_is_container = true;
                    } else if self.depth == 1
                        && self.root_expect == RootExpect::Value
                        && self.capture == Capture::None
                    {
                        self.root_expect = RootExpect::Comma;
                        if matches!(self.items_at, ItemsAt::Key(k) if k == self.key) {
                            self.envelope.has_items = true;
                            if b == b'[' {
                                self.item_depth = Some(2);
                            } else {
                                self.single_item = true;
                                self.capture = Capture::Item(i);
                                self.capture_is_container = true;
                            }
                        } else {
                            self.capture = Capture::Value(i);
                            self.capture_is_container = true;
                        }
                    }
                    self.depth += 1;
                }
                b'}' | b']' => {
                    if self.depth == 0 {
                        return Err(format!("unbalanced {:?} at byte {i}", b as char));
                    }
                    self.end_scalar(i, on_item);
                    self.depth -= 1;
                    match self.capture {
                        Capture::Item(start) if self.capture_is_container => {
                            let level = if self.single_item {
                                1
                            } else {
                                self.item_depth.unwrap_or(0)
                            };
                            if self.depth == level {
                                self.emit_item(start, i + 1, on_item);
                                self.single_item = false;
                            }
                        }
                        Capture::Value(start) if self.capture_is_container && self.depth == 1 => {
                            self.keep_value(start, i + 1);
                        }
                        _ => {}
                    }
                    if self.item_depth == Some(self.depth + 1)
                        && self.capture == Capture::None
                        && b == b']'
                    {
                        // The records array closed.
                        self.item_depth = None;
                    }
                    if self.depth == 0 {
                        self.done = true;
                    }
                }
                b',' => {
                    self.end_scalar(i, on_item);
                    if self.depth == 1 && self.item_depth != Some(1) {
                        self.root_expect = RootExpect::Key;
                    }
                }
                b':' => {
                    if self.depth == 1 && self.root_expect == RootExpect::Colon {
                        self.root_expect = RootExpect::Value;
                    }
                }
                b if b.is_ascii_whitespace() => self.end_scalar(i, on_item),
                _ => {
                    // The first byte of a number, true, false or null.
                    if self.at_item_level() {
                        self.capture = Capture::Item(i);
                        self.capture_is_container = false;
                    } else if self.depth == 1
                        && self.root_expect == RootExpect::Value
                        && self.capture == Capture::None
                    {
                        self.capture = Capture::Value(i);
                        self.capture_is_container = false;
                        self.root_expect = RootExpect::Comma;
                    }
                }
            }
            i += 1;
        }
        self.pos = i;
        Ok(())
    }

    /// A string just closed at `end` (the quote's offset).
    fn string_closed(&mut self, end: usize, on_item: &mut dyn FnMut(&[u8])) {
        match self.capture {
            Capture::Key(start) => {
                self.key = String::from_utf8_lossy(&self.buf[start + 1..end]).into_owned();
                self.capture = Capture::None;
                self.root_expect = RootExpect::Colon;
            }
            Capture::Value(start) if !self.capture_is_container => self.keep_value(start, end + 1),
            Capture::Item(start) if !self.capture_is_container => {
                self.emit_item(start, end + 1, on_item)
            }
            _ => {}
        }
    }

    /// A scalar (number, literal) ends at a delimiter.
    fn end_scalar(&mut self, end: usize, on_item: &mut dyn FnMut(&[u8])) {
        if self.capture_is_container {
            return;
        }
        match self.capture {
            Capture::Item(start) => self.emit_item(start, end, on_item),
            Capture::Value(start) => self.keep_value(start, end),
            _ => {}
        }
    }

    fn emit_item(&mut self, start: usize, end: usize, on_item: &mut dyn FnMut(&[u8])) {
        self.capture = Capture::None;
        self.items += 1;
        on_item(&self.buf[start..end]);
    }

    fn keep_value(&mut self, start: usize, end: usize) {
        self.capture = Capture::None;
        if end - start <= MAX_ENVELOPE_VALUE {
            let text = String::from_utf8_lossy(&self.buf[start..end]).into_owned();
            self.envelope
                .fields
                .push((std::mem::take(&mut self.key), text));
        }
    }

    /// Drops bytes no capture needs any more.
    fn compact(&mut self) {
        let keep_from = match self.capture {
            Capture::None => self.pos,
            Capture::Key(s) | Capture::Value(s) | Capture::Item(s) => s,
        };
        if keep_from == 0 || keep_from < self.buf.len() / 2 && keep_from < 1 << 20 {
            return;
        }
        self.buf.drain(..keep_from);
        self.pos -= keep_from;
        self.capture = match self.capture {
            Capture::None => Capture::None,
            Capture::Key(s) => Capture::Key(s - keep_from),
            Capture::Value(s) => Capture::Value(s - keep_from),
            Capture::Item(s) => Capture::Item(s - keep_from),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        s.finish(&mut |b| out.push(String::from_utf8(b.to_vec()).unwrap()))?;
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
    fn memory_stays_bounded_by_one_item() {
        let mut s = Scanner::new(ItemsAt::Key("data"));
        s.feed(b"{\"data\":[", &mut |_| {}).unwrap();
        let item = format!("{{\"m\":\"{}\"}},", "x".repeat(100_000));
        let mut count = 0;
        for _ in 0..200 {
            s.feed(item.as_bytes(), &mut |_| count += 1).unwrap();
            assert!(
                s.buf.len() < 3 * item.len(),
                "buffer grew to {}",
                s.buf.len()
            );
        }
        s.feed(b"{}]}", &mut |_| count += 1).unwrap();
        s.finish(&mut |_| {}).unwrap();
        assert_eq!(count, 201);
    }
}
