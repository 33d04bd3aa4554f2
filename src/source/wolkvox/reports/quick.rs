//! A quick reader for the shape nearly every `chat_2` element has: an
//! object of scalar fields with one `conversation` list of objects of
//! scalar fields.
//!
//! It makes exactly the [`Entry`] serde makes of the same text, without
//! serde's per-field machinery (a visitor per value, a key looked up
//! through generic code, each row collected and then moved): the reading
//! is the most of what an export of this report costs the thread that
//! receives it, and that thread sets the pace. It accepts only a subset of
//! what serde accepts: anything
//! else (a nested value where a scalar belongs, a duplicate field, a number
//! that is not a plain integer, an escaped key, a lone surrogate, a control
//! character) makes it give up, and serde reads the element instead and
//! says what is wrong with it. So every element it reads, serde would have
//! read the same way; the property tests below hold it to that.

use std::borrow::Cow;

use super::{Entry, Rows};
use crate::jsonstream::plain_run_end;
use crate::source::wolkvox::Text;

/// What came of reading an element from the start of a text.
#[derive(Debug)]
pub enum Quick {
    /// The element, which took this many bytes of the text.
    Read(usize),
    /// The text ended inside the element, and nothing before that end was
    /// out of the ordinary: with more text it may be read.
    Short,
    /// Not the usual shape (or not JSON): for serde to read.
    GiveUp,
}

/// Reads the element at the start of `text` into `entry` (an empty one;
/// what it holds after anything but [`Quick::Read`] is of no use).
pub fn read_chat<'a>(text: &'a str, entry: &mut Entry<'a>) -> Quick {
    let mut reader = Reader { text, at: 0 };
    match reader.object(entry, true) {
        Ok(()) => Quick::Read(reader.at),
        Err(Stop::End) => Quick::Short,
        Err(Stop::Unusual) => Quick::GiveUp,
    }
}

/// Why reading stopped.
#[derive(Debug)]
enum Stop {
    End,
    Unusual,
}

type Step<T> = Result<T, Stop>;

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Step<u8> {
        self.text.as_bytes().get(self.at).copied().ok_or(Stop::End)
    }

    fn skip_whitespace(&mut self) -> Step<u8> {
        loop {
            match self.peek()? {
                b' ' | b'\n' | b'\t' | b'\r' => self.at += 1,
                b => return Ok(b),
            }
        }
    }

    fn expect(&mut self, byte: u8) -> Step<()> {
        if self.skip_whitespace()? != byte {
            return Err(Stop::Unusual);
        }
        self.at += 1;
        Ok(())
    }

    /// `{ "field": scalar, ... }` into `entry` (an empty one), with a
    /// `conversation` list in the chat (`outer`) but not in its messages.
    /// (Filled in place: an entry is a few hundred bytes, and a chat's
    /// messages are many.)
    fn object(&mut self, entry: &mut Entry<'a>, outer: bool) -> Step<()> {
        self.expect(b'{')?;
        // Serde refuses a field given twice; so does this, by giving up.
        let mut seen = 0u16;
        if self.skip_whitespace()? == b'}' {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.expect(b'"')?;
            let key = self.key()?;
            // A field given twice is refused at its key, as serde does.
            if key == "conversation" {
                if !outer || seen & 1 != 0 {
                    return Err(Stop::Unusual);
                }
                seen |= 1;
                self.expect(b':')?;
                entry.conversation = self.rows()?;
            } else if let Some((bit, slot)) = field(entry, key) {
                if seen & (1 << bit) != 0 {
                    return Err(Stop::Unusual);
                }
                seen |= 1 << bit;
                self.expect(b':')?;
                *slot = self.scalar()?;
            } else {
                // Serde ignores other fields; this reads past scalar ones.
                self.expect(b':')?;
                self.scalar()?;
            }
            match self.skip_whitespace()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(Stop::Unusual),
            }
        }
    }

    /// A chat's messages: `null` or `[ {..}, ... ]`.
    fn rows(&mut self) -> Step<Option<Rows<'a>>> {
        match self.skip_whitespace()? {
            b'n' => self.literal("null").map(|()| None),
            b'[' => {
                self.at += 1;
                // As serde's reading of a list sizes it.
                let mut rows = Vec::with_capacity(32);
                if self.skip_whitespace()? == b']' {
                    self.at += 1;
                    return Ok(Some(Rows(rows)));
                }
                loop {
                    rows.push(Entry::default());
                    let row = rows.last_mut().expect("just added");
                    self.object(row, false)?;
                    match self.skip_whitespace()? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Ok(Some(Rows(rows)));
                        }
                        _ => return Err(Stop::Unusual),
                    }
                }
            }
            _ => Err(Stop::Unusual),
        }
    }

    /// A field's value as [`Text`] reads it: a string, `null`, a boolean or
    /// a plain integer (kept as written, which is how serde's reading of
    /// the number prints back).
    fn scalar(&mut self) -> Step<Text<'a>> {
        match self.skip_whitespace()? {
            b'"' => {
                self.at += 1;
                self.string().map(|s| Text(Some(s)))
            }
            b'n' => self.literal("null").map(|()| Text(None)),
            b't' => self.literal("true").map(|()| owned("true")),
            b'f' => self.literal("false").map(|()| owned("false")),
            b'-' | b'0'..=b'9' => self.integer(),
            _ => Err(Stop::Unusual),
        }
    }

    fn literal(&mut self, word: &str) -> Step<()> {
        let rest = &self.text.as_bytes()[self.at..];
        let n = rest.len().min(word.len());
        if rest[..n] != word.as_bytes()[..n] {
            return Err(Stop::Unusual);
        }
        if n < word.len() {
            return Err(Stop::End);
        }
        self.at += n;
        // A literal runs into the next token only in text that is not
        // JSON (`nullx`): left to serde.
        match self.peek() {
            Ok(b) if b.is_ascii_alphanumeric() => Err(Stop::Unusual),
            _ => Ok(()),
        }
    }

    /// `0` or `-?[1-9][0-9]*` of at most 18 digits, which serde reads as an
    /// integer and prints back digit for digit; fractions, exponents, `-0`
    /// and longer numbers are left to serde.
    fn integer(&mut self) -> Step<Text<'a>> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut at = start + usize::from(bytes[start] == b'-');
        let first = *bytes.get(at).ok_or(Stop::End)?;
        let digits_from = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        let digits = at - digits_from;
        let next = *bytes.get(at).ok_or(Stop::End)?;
        if digits == 0
            || digits > 18
            || (first == b'0' && (digits > 1 || digits_from > start))
            || matches!(next, b'.' | b'e' | b'E')
        {
            return Err(Stop::Unusual);
        }
        self.at = at;
        Ok(owned(&self.text[start..at]))
    }

    /// An object's key, after its opening quote: only keys without
    /// escapes are read here.
    fn key(&mut self) -> Step<&'a str> {
        let bytes = self.text.as_bytes();
        let end = plain_run_end(bytes, self.at).ok_or(Stop::End)?;
        if bytes[end] != b'"' {
            return Err(Stop::Unusual);
        }
        let key = &self.text[self.at..end];
        self.at = end + 1;
        Ok(key)
    }

    /// A string, after its opening quote: borrowed when it has no escapes.
    fn string(&mut self) -> Step<Cow<'a, str>> {
        let bytes = self.text.as_bytes();
        let mut end = plain_run_end(bytes, self.at).ok_or(Stop::End)?;
        if bytes[end] == b'"' {
            let plain = &self.text[self.at..end];
            self.at = end + 1;
            return Ok(Cow::Borrowed(plain));
        }
        // Unescaped, it is no longer than it is escaped, which is at least
        // up to the next quote.
        let at_least = memchr::memchr(b'"', &bytes[end..]).unwrap_or(0);
        let mut unescaped = String::with_capacity(end - self.at + at_least);
        loop {
            unescaped.push_str(&self.text[self.at..end]);
            match bytes[end] {
                b'"' => {
                    self.at = end + 1;
                    return Ok(Cow::Owned(unescaped));
                }
                b'\\' => {
                    self.at = end + 1;
                    unescaped.push(self.escape()?);
                }
                // A raw control character: not JSON.
                _ => return Err(Stop::Unusual),
            }
            end = plain_run_end(bytes, self.at).ok_or(Stop::End)?;
        }
    }

    /// The character an escape after a backslash stands for.
    fn escape(&mut self) -> Step<char> {
        let c = match self.peek()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                self.at += 1;
                let unit = self.hex4()?;
                return match unit {
                    0xD800..=0xDBFF => {
                        // A pair: the low half must follow at once.
                        if self.peek()? != b'\\' {
                            return Err(Stop::Unusual);
                        }
                        self.at += 1;
                        if self.peek()? != b'u' {
                            return Err(Stop::Unusual);
                        }
                        self.at += 1;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(Stop::Unusual);
                        }
                        let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        char::from_u32(code).ok_or(Stop::Unusual)
                    }
                    0xDC00..=0xDFFF => Err(Stop::Unusual),
                    _ => char::from_u32(unit).ok_or(Stop::Unusual),
                };
            }
            _ => return Err(Stop::Unusual),
        };
        self.at += 1;
        Ok(c)
    }

    fn hex4(&mut self) -> Step<u32> {
        let digits = self.text.as_bytes().get(self.at..self.at + 4);
        let Some(digits) = digits else {
            // Short of four: the end, unless what there is already is not hex.
            let rest = &self.text.as_bytes()[self.at..];
            return Err(if rest.iter().all(u8::is_ascii_hexdigit) {
                Stop::End
            } else {
                Stop::Unusual
            });
        };
        let mut unit = 0;
        for &d in digits {
            let value = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(Stop::Unusual),
            };
            unit = unit * 16 + u32::from(value);
        }
        self.at += 4;
        Ok(unit)
    }
}

/// The scalar field a key names, with a bit of its own (`conversation`
/// has bit 0).
fn field<'e, 'a>(entry: &'e mut Entry<'a>, key: &str) -> Option<(u32, &'e mut Text<'a>)> {
    Some(match key {
        "conn_id" => (1, &mut entry.conn_id),
        "agent_name" => (2, &mut entry.agent_name),
        "customer_name" => (3, &mut entry.customer_name),
        "channel" => (4, &mut entry.channel),
        "from" => (5, &mut entry.from),
        "from_name" => (6, &mut entry.from_name),
        "to_name" => (7, &mut entry.to_name),
        "date" => (8, &mut entry.date),
        "message" => (9, &mut entry.message),
        "customer_id" => (10, &mut entry.customer_id),
        "customer_phone" => (11, &mut entry.customer_phone),
        "feeling" => (12, &mut entry.feeling),
        _ => return None,
    })
}

fn owned(text: &str) -> Text<'static> {
    Text(Some(Cow::Owned(text.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What serde makes of the element at the start of `text`: the entry
    /// and its length, `Err(true)` at the end of the text, `Err(false)`
    /// for any other failure.
    fn by_serde(text: &str) -> Result<(Entry<'_>, usize), bool> {
        let mut entries = serde_json::Deserializer::from_str(text).into_iter::<Entry>();
        match entries.next() {
            Some(Ok(entry)) => Ok((entry, entries.byte_offset())),
            Some(Err(e)) => Err(e.is_eof()),
            None => Err(true),
        }
    }

    /// The quick reader either agrees with serde, or gives up; it says
    /// "short" only where serde says the text ended.
    fn agrees(text: &str) -> Result<bool, TestCaseError> {
        let mut entry = Entry::default();
        match read_chat(text, &mut entry) {
            Quick::Read(length) => {
                let (expected, expected_length) = by_serde(text)
                    .map_err(|_| TestCaseError::fail(format!("serde refused {text:?}")))?;
                prop_assert_eq!(entry, expected, "in {:?}", text);
                prop_assert_eq!(length, expected_length, "in {:?}", text);
                Ok(true)
            }
            Quick::Short => {
                prop_assert_eq!(by_serde(text).err(), Some(true), "short {:?}", text);
                Ok(false)
            }
            Quick::GiveUp => Ok(false),
        }
    }

    fn read(text: &str) -> (Entry<'_>, usize) {
        let mut entry = Entry::default();
        match read_chat(text, &mut entry) {
            Quick::Read(length) => (entry, length),
            other => panic!("{other:?} for {text:?}"),
        }
    }

    fn quick(text: &str) -> Quick {
        read_chat(text, &mut Entry::default())
    }

    const CHAT: &str = r#"{"conn_id":"40000001","agent_name":"Agente 51","customer_name":"Cliente","customer_id":1040000001,"customer_phone":"573000000001","channel":"WhatsApp","conversation":[{"date":"2024-03-05 05:00:00","from":"customer","from_name":"Cliente","to_name":"Agente","message":"hola \u00bfpodr\u00edan? \"premium\" \ud83d\ude00 \/ \\ \n fin"},{"date":"2024-03-05 05:00:07","from":"agent","message":"S\u00ed","feeling":null,"extra":true}]}"#;

    #[test]
    fn reads_the_usual_chat_as_serde_does() {
        let (entry, length) = read(CHAT);
        assert_eq!(length, CHAT.len());
        let (expected, _) = by_serde(CHAT).unwrap();
        assert_eq!(entry, expected);
        let rows = entry.conversation.unwrap().0;
        assert_eq!(
            rows[0].message.get(),
            Some("hola ¿podrían? \"premium\" 😀 / \\ \n fin")
        );
        assert_eq!(entry.customer_id.get(), Some("1040000001"));
        // Text without escapes is borrowed from the answer.
        assert!(matches!(rows[0].date.0, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn stops_where_the_element_ends() {
        let text = format!("{CHAT} ,\n{CHAT}]}}");
        assert_eq!(read(&text).1, CHAT.len());
        let spaced = " {\n \"conn_id\" : 7 ,\"conversation\" : null\t} ,";
        let (entry, length) = read(spaced);
        assert_eq!(length, spaced.len() - 2);
        assert_eq!(entry.conn_id.get(), Some("7"));
        assert!(entry.conversation.is_none());
    }

    #[test]
    fn every_cut_of_the_chat_is_short() {
        for cut in 0..CHAT.len() {
            assert!(
                matches!(quick(&CHAT[..cut]), Quick::Short),
                "cut at {cut}: {:?}",
                &CHAT[..cut]
            );
        }
    }

    #[test]
    fn gives_up_on_what_serde_must_judge() {
        for text in [
            r#"{"conn_id":"1","conn_id":"2"}"#,
            r#"{"conversation":[],"conversation":null}"#,
            r#"{"conversation":[{"conversation":[]}]}"#,
            r#"{"conversation":"none"}"#,
            r#"{"message":{"text":"x"}}"#,
            r#"{"other":[1,2]}"#,
            r#"{"message":1.5}"#,
            r#"{"message":1e3}"#,
            r#"{"message":-0}"#,
            r#"{"message":007}"#,
            r#"{"message":12345678901234567890}"#,
            r#"{"mess\u0061ge":"x"}"#,
            r#"{"message":"\ud83d"}"#,
            r#"{"message":"\ude00"}"#,
            r#"{"message":"\x"}"#,
            "{\"message\":\"tab\there\"}",
            r#"{"message":nul}"#,
            r#"{"message":nullx}"#,
            r#"{"message":"x",}"#,
            r#"{"conversation":[{},]}"#,
            r#"["1","a"]"#,
            r#"{"message" "x"}"#,
        ] {
            assert!(matches!(quick(text), Quick::GiveUp), "{text}");
        }
    }

    /// A value as the platform might send it, or as a hostile one might.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-zA-Z0-9 áéñ😀\"\\\\/\n\t\u{1}-]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            2 => "[a-z\\\\\"]{0,6}".prop_map(|s| format!("\"{s}\"")),
            1 => prop::sample::select(vec![
                r#""\u00e1\u00E9""#, r#""\ud83d\ude00""#, r#""\ud83d""#, r#""\ude00x""#,
                r#""\u12""#, r#""\uZZZZ""#, r#""\/\b\f\r""#,
            ]).prop_map(str::to_string),
            1 => prop::sample::select(vec![
                "null", "true", "false", "0", "-0", "7", "-12", "1.5", "2e3", "01",
                "123456789012345678", "1234567890123456789", "nul", "truex", "{}", "[]",
                "{\"a\":1}", "[1,\"x\"]",
            ]).prop_map(str::to_string),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "conn_id",
            "agent_name",
            "customer_name",
            "channel",
            "from",
            "from_name",
            "to_name",
            "date",
            "message",
            "customer_id",
            "customer_phone",
            "feeling",
            "other",
            "conversation",
            "mess\\u0061ge",
        ])
        .prop_map(str::to_string)
    }

    fn space() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["", "", "", " ", "\n  ", "\t", "\r\n"]).prop_map(str::to_string)
    }

    fn object(depth: u32) -> BoxedStrategy<String> {
        let member = (space(), key(), space(), value())
            .prop_map(|(s, k, t, v)| format!("{s}\"{k}\"{t}:{v}"));
        let rows = if depth == 0 {
            Just(None).boxed()
        } else {
            prop::option::of(prop::collection::vec(object(depth - 1), 0..4)).boxed()
        };
        (prop::collection::vec(member, 0..8), rows, space())
            .prop_map(|(mut members, rows, s)| {
                if let Some(rows) = rows {
                    members.push(format!("\"conversation\":{s}[{}]", rows.join(",")));
                }
                format!("{{{}{s}}}", members.join(","))
            })
            .boxed()
    }

    proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(512))]

        /// Whatever the element, whole, followed by the next one, or cut
        /// anywhere: what the quick reader reads is what serde reads.
        #[test]
        fn agrees_with_serde(chat in object(2), cut in any::<prop::sample::Index>()) {
            let whole = format!("{chat},{chat}]}}");
            agrees(&chat)?;
            agrees(&whole)?;
            let mut at = cut.index(chat.len() + 1);
            while !chat.is_char_boundary(at) {
                at -= 1;
            }
            agrees(&chat[..at])?;
        }

        /// Elements of the usual shape are all read quickly, not left to
        /// serde (which would be correct but slow).
        #[test]
        fn reads_the_usual_shape(
            fields in prop::collection::vec(("[a-z_]{1,8}", "[^\"\\\\\u{0}-\u{1f}]{0,20}"), 0..6),
            texts in prop::collection::vec(".{0,40}", 0..5),
        ) {
            let mut chat = serde_json::Map::new();
            for (k, v) in fields {
                if k != "conversation" {
                    chat.insert(k, v.into());
                }
            }
            let rows: Vec<serde_json::Value> = texts
                .into_iter()
                .map(|t| serde_json::json!({"from": "agent", "message": t, "date": "2024-03-05 05:00:00"}))
                .collect();
            chat.insert("conversation".into(), rows.into());
            let text = serde_json::to_string(&chat).unwrap();
            prop_assert!(agrees(&text)?, "not read: {}", text);
        }
    }
}
