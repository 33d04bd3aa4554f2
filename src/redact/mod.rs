//! Personal data removal (`--redact`; the README's "Personal data"), applied to every
//! record before it reaches a writer.
//!
//! Two kinds of rules:
//! - field rules replace whole fields that name or reach a customer (name,
//!   phone, e-mail, id, and `sender_name` / `recipient_name` where they are
//!   the customer's): `hash` by a keyed HMAC-SHA256 pseudonym, the same for
//!   the same person in every run with the same key; `mask` by a fixed
//!   placeholder; `drop` by null. `--redact-agents` adds agent name and
//!   e-mail.
//! - text rules scrub message text in every mode: e-mail addresses, phone
//!   numbers and payment card numbers become `[EMAIL]`, `[PHONE]`, `[CARD]`.
//!
//! Phone numbers are recognised by shape, not by "many digits": an
//! international `+` number, or the national formats of the platforms'
//! markets (Colombia: mobiles `3xx xxx xxxx`, landlines `60x xxx xxxx`,
//! `57` prefixes; Vietnam: `0xx xxx xxxx`, `84` prefixes). Dates, times,
//! prices with thousands separators, order numbers glued to letters and
//! other ids are left alone; the tests hold a corpus of such look-alikes.

use std::cell::RefCell;
use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::{AttachStatus, Conversation, Message, Record, Sender, Shared};

mod phones;
pub use phones::PhoneRegions;

/// What replaces a customer field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Hash,
    Mask,
    Drop,
}

/// The class of a value: pseudonyms are keyed per class, so a phone and a
/// name never share one, and normalised, so `+57 300 123 4567` and
/// `573001234567` are the same person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    Name,
    Phone,
    Email,
    Id,
}

impl Class {
    fn index(self) -> usize {
        match self {
            Class::Name => 0,
            Class::Phone => 1,
            Class::Email => 2,
            Class::Id => 3,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Class::Name => "name",
            Class::Phone => "phone",
            Class::Email => "email",
            Class::Id => "id",
        }
    }

    fn placeholder(self) -> &'static str {
        match self {
            Class::Name => "[NAME]",
            Class::Phone => "[PHONE]",
            Class::Email => "[EMAIL]",
            Class::Id => "[ID]",
        }
    }
}

#[derive(Clone)]
pub struct Redactor {
    mode: Mode,
    agents: bool,
    key: Option<Hmac<Sha256>>,
    /// Pseudonyms computed lately, per class: a chat repeats its
    /// customer's name and phone on every message, and an HMAC per field
    /// per message is the largest cost of redaction otherwise. Looked up by
    /// the value as it is and shared with the records, so a hit allocates
    /// nothing.
    recent: RefCell<[HashMap<Shared, Shared>; 4]>,
    /// The last few values of each class and their pseudonyms, looked at
    /// before `recent`: a chat's messages repeat the same two or three
    /// names, and comparing them costs less than hashing them again.
    latest: RefCell<[Vec<(Shared, Shared)>; 4]>,
    /// The searches for the last few lists of names looked for.
    name_searches: RefCell<Vec<NameSearch>>,
    /// `[NAME]`, `[PHONE]`, `[EMAIL]`, `[ID]`, shared likewise.
    placeholders: [Shared; 4],
    /// Whose national phone numbers the texts may hold.
    phones: PhoneRegions,
}

/// A field redaction writes: a message's shared text or a conversation's
/// own string.
trait Slot: std::ops::Deref<Target = str> + Sized {
    fn from_shared(text: &Shared) -> Self;
}

impl Slot for String {
    fn from_shared(text: &Shared) -> String {
        text.to_string()
    }
}

impl Slot for Shared {
    fn from_shared(text: &Shared) -> Shared {
        text.clone()
    }
}

/// Pseudonyms remembered; the cache starts over beyond this.
const RECENT_PSEUDONYMS: usize = 4096;
/// Values of a class compared before the cache is consulted.
const LATEST_PSEUDONYMS: usize = 4;
/// Lists of names whose searches are kept.
const NAME_SEARCHES: usize = 4;

impl Redactor {
    /// `key` is required for [`Mode::Hash`]; the caller checks (exit 78).
    pub fn new(mode: Mode, agents: bool, key: Option<&[u8]>) -> Redactor {
        Redactor {
            mode,
            agents,
            key: key.map(|k| Hmac::<Sha256>::new_from_slice(k).expect("HMAC takes any key length")),
            recent: RefCell::new(Default::default()),
            latest: RefCell::new(Default::default()),
            name_searches: RefCell::new(Vec::new()),
            placeholders: [Class::Name, Class::Phone, Class::Email, Class::Id]
                .map(|c| Shared::from(c.placeholder())),
            phones: PhoneRegions::default(),
        }
    }

    /// The regions whose national phone numbers are looked for in texts
    /// (every platform's home country by default).
    pub fn with_phone_regions(mut self, phones: PhoneRegions) -> Redactor {
        self.phones = phones;
        self
    }

    pub fn apply(&self, record: &mut Record) {
        match record {
            Record::Conversation(c) => self.conversation(&mut c.record),
            Record::Message(m) => self.message(&mut m.record),
        }
    }

    fn conversation(&self, c: &mut Conversation) {
        // Notes first, while the name fields still hold what to look for:
        // agents write the customer's name, e-mail and phone into them.
        if let Some(notes) = c.comments.take() {
            let mut names: Vec<&str> = c.customer_name.as_deref().into_iter().collect();
            if self.agents {
                names.extend(c.agent_name.as_deref());
            }
            let named = self.scrub_names(&notes, &names);
            let cleaned = scrub(named.as_deref().unwrap_or(&notes), &self.phones).or(named);
            c.comments = Some(cleaned.unwrap_or(notes));
        }
        self.field(&mut c.customer_name, Class::Name);
        self.field(&mut c.customer_phone, Class::Phone);
        self.field(&mut c.customer_email, Class::Email);
        self.field(&mut c.customer_id, Class::Id);
        if self.agents {
            self.field(&mut c.agent_name, Class::Name);
            self.field(&mut c.agent_email, Class::Email);
        }
    }

    fn message(&self, m: &mut Message) {
        // Who the two names belong to: the customer unless the sender (or,
        // for the recipient, the other side) is known to be staff or a bot.
        let sender_is_customer = !matches!(m.sender, Sender::Agent | Sender::Bot | Sender::System);
        let recipient_is_customer =
            matches!(m.sender, Sender::Agent | Sender::Bot | Sender::System);
        // Text first: it looks for the names the fields still hold.
        self.text(m, sender_is_customer, recipient_is_customer);
        // What a customer sent stays unfetched and unnamed: its type and
        // size remain.
        for attachment in m.attachments.iter_mut() {
            attachment.origins.clear();
            attachment.name = None;
            attachment.sha256 = None;
            attachment.path = None;
            attachment.why = None;
            attachment.status = AttachStatus::Redacted;
        }
        if sender_is_customer || self.agents {
            self.field(&mut m.sender_name, Class::Name);
        }
        if recipient_is_customer || self.agents {
            self.field(&mut m.recipient_name, Class::Name);
        }
        self.field(&mut m.customer_name, Class::Name);
        self.field(&mut m.customer_phone, Class::Phone);
        self.field(&mut m.customer_id, Class::Id);
        if self.agents {
            self.field(&mut m.agent_name, Class::Name);
        }
    }

    fn text(&self, m: &mut Message, sender_is_customer: bool, recipient_is_customer: bool) {
        if let Some(text) = m.text.take() {
            // The customer's own name, where the chat knows it, goes too:
            // customers sign their messages and agents greet them by name.
            let mut names: Vec<&str> = vec![];
            names.extend(m.customer_name.as_deref());
            if sender_is_customer {
                names.extend(m.sender_name.as_deref());
            }
            if recipient_is_customer {
                names.extend(m.recipient_name.as_deref());
            }
            if self.agents {
                names.extend(m.agent_name.as_deref());
            }
            // An inline `data:` file is a customer's photo: only its type
            // and size remain.
            let uris = crate::media::data_uris(&text);
            let text = if uris.is_empty() {
                text
            } else {
                crate::media::replace_data_uris(&text, &uris, |_, uri| {
                    format!(
                        "[attachment: {}, {} bytes]",
                        uri.content_type,
                        uri.decoded_len(&text)
                    )
                })
            };
            // Nor does a link to a customer's file, or its name, stay.
            let text = without_references(text, &m.attachments);
            let cleaned = self.scrub_names(&text, &names);
            let now = cleaned.as_deref().unwrap_or(&text);
            let cleaned = scrub(now, &self.phones).or(cleaned);
            m.text = Some(cleaned.unwrap_or(text));
        }
    }

    /// [`NameSearch::scrub`], with the searches for the last few lists of
    /// names kept (a chat's messages look for the same ones).
    fn scrub_names(&self, text: &str, names: &[&str]) -> Option<String> {
        let mut searches = self.name_searches.borrow_mut();
        if let Some(search) = searches.iter().find(|s| s.is_for(names)) {
            return search.scrub(text);
        }
        let search = NameSearch::new(names);
        let scrubbed = search.scrub(text);
        if searches.len() >= NAME_SEARCHES {
            searches.remove(0);
        }
        searches.push(search);
        scrubbed
    }

    fn field<T: Slot>(&self, slot: &mut Option<T>, class: Class) {
        let Some(value) = slot.as_deref() else { return };
        *slot = match self.mode {
            Mode::Drop => None,
            Mode::Mask => Some(T::from_shared(&self.placeholders[class.index()])),
            Mode::Hash => Some(T::from_shared(&self.cached_pseudonym(value, class))),
        };
    }

    fn cached_pseudonym(&self, value: &str, class: Class) -> Shared {
        let mut latest = self.latest.borrow_mut();
        let latest = &mut latest[class.index()];
        if let Some((_, p)) = latest.iter().find(|(v, _)| **v == *value) {
            return p.clone();
        }
        let mut recent = self.recent.borrow_mut();
        let recent = &mut recent[class.index()];
        let (v, p) = match recent.get_key_value(value) {
            Some((v, p)) => (v.clone(), p.clone()),
            None => {
                if recent.len() >= RECENT_PSEUDONYMS {
                    recent.clear();
                }
                let v = Shared::from(value);
                let p = Shared::from(self.pseudonym(value, class));
                recent.insert(v.clone(), p.clone());
                (v, p)
            }
        };
        if latest.len() >= LATEST_PSEUDONYMS {
            latest.remove(0);
        }
        latest.push((v, p.clone()));
        p
    }

    /// `class:` and 24 hex digits (96 bits) of HMAC-SHA256(key, class, value).
    fn pseudonym(&self, value: &str, class: Class) -> String {
        let mut mac = self.key.clone().expect("hash mode has a key");
        mac.update(class.label().as_bytes());
        mac.update(&[0]);
        mac.update(normalise(value, class).as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(class.label().len() + 25);
        out.push_str(class.label());
        out.push(':');
        for b in &digest[..12] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

fn normalise(value: &str, class: Class) -> String {
    match class {
        Class::Phone => value.chars().filter(char::is_ascii_digit).collect(),
        Class::Email => value.trim().to_lowercase(),
        Class::Name => value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
        Class::Id => value.trim().to_string(),
    }
}

/// `text` without the links and file names of `attachments` (a link's
/// HTML spelling too): `[URL]` and `[FILE]` in their place.
fn without_references(mut text: String, attachments: &[crate::model::Attachment]) -> String {
    for attachment in attachments {
        for origin in &attachment.origins {
            if let crate::model::Origin::Url(url) = origin {
                for spelling in [url.clone(), url.replace('&', "&amp;")] {
                    if text.contains(spelling.as_str()) {
                        text = text.replace(spelling.as_str(), "[URL]");
                    }
                }
            }
        }
        if let Some(name) = attachment
            .name
            .as_deref()
            .filter(|n| n.chars().count() >= 4)
        {
            if text.contains(name) {
                text = text.replace(name, "[FILE]");
            }
        }
    }
    text
}

/// [`NameSearch::scrub`] for one text.
#[cfg(test)]
fn scrub_names(text: &str, names: &[&str]) -> Option<String> {
    NameSearch::new(names).scrub(text)
}

/// The names to look for in a text, prepared once: a chat's messages look
/// for the same names, and lower-casing them and building a search for
/// each, per message, cost more than the searches.
#[derive(Clone)]
struct NameSearch {
    /// As given, to tell whether the next message looks for the same.
    given: Vec<String>,
    /// Lower-cased (see [`lowered_name`]), three characters or more.
    names: Vec<String>,
    /// A search for each name's longest run of ASCII bytes, the part of it
    /// that must stand in a text whose ASCII letters are lower-cased.
    runs: Vec<memchr::memmem::Finder<'static>>,
}

impl NameSearch {
    fn new(given: &[&str]) -> NameSearch {
        let names: Vec<String> = given
            .iter()
            .map(|n| lowered_name(n))
            // Very short "names" (initials) would hit ordinary words.
            .filter(|n| n.chars().count() >= 3)
            .collect();
        let runs = names
            .iter()
            .map(|name| {
                let run = name
                    .split(|c: char| !c.is_ascii())
                    .max_by_key(|run| run.len())
                    .unwrap_or("");
                memchr::memmem::Finder::new(run.as_bytes()).into_owned()
            })
            .collect();
        NameSearch {
            given: given.iter().map(|n| n.to_string()).collect(),
            names,
            runs,
        }
    }

    fn is_for(&self, given: &[&str]) -> bool {
        self.given.len() == given.len() && self.given.iter().zip(given).all(|(a, b)| a == b)
    }

    /// Replaces whole occurrences of the names (case-insensitive) with
    /// `[NAME]`. Returns None when none occurs.
    fn scrub(&self, text: &str) -> Option<String> {
        if self.names.is_empty() || !self.may_match(text) {
            return None;
        }
        // Byte offsets carry over only when folding kept every character's
        // width (true of Spanish and Vietnamese); otherwise go char by char.
        // The total length is no test of that: `Ⱥ` grows by a byte and the
        // Ohm sign shrinks by one, so `ȺΩ` keeps it and shifts every offset.
        let Some(lower) = fold_same_width(text) else {
            return scrub_names_by_char(text, &self.names);
        };
        let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for name in &self.names {
            // As the search by character: past a whole-word occurrence,
            // or one character on from one inside a word, so overlapping
            // candidates (`a-a` in `a-a-a`) are judged alike on both paths.
            let finder = memchr::memmem::Finder::new(name.as_bytes());
            let mut from = 0;
            while let Some(found) = finder.find(&lower.as_bytes()[from..]) {
                let start = from + found;
                let end = start + name.len();
                if !is_word(lower[..start].chars().next_back())
                    && !is_word(lower[end..].chars().next())
                {
                    spans.push((start, end));
                    from = end;
                } else {
                    from = start + lower[start..].chars().next().map_or(1, char::len_utf8);
                }
            }
        }
        replace_spans(text, spans)
    }

    /// Whether `text` can hold one of the names: false only when none of
    /// them can match, which spares the Unicode lower-casing of every
    /// message that names nobody (most). Each name's longest run of ASCII
    /// bytes must then stand in the text once its ASCII letters are
    /// lower-cased: the only other characters whose lower case is ASCII
    /// are the Kelvin sign (K) and the dotted capital I (İ), and a text
    /// holding one of them is always searched in full.
    fn may_match(&self, text: &str) -> bool {
        const KELVIN: &[u8] = "\u{212A}".as_bytes();
        const DOTTED_I: &[u8] = "\u{130}".as_bytes();
        // One pass for both: their first bytes, then the rest of either.
        let bytes = text.as_bytes();
        if memchr::memchr2_iter(KELVIN[0], DOTTED_I[0], bytes)
            .any(|at| bytes[at..].starts_with(KELVIN) || bytes[at..].starts_with(DOTTED_I))
        {
            return true;
        }
        let folded = text.to_ascii_lowercase();
        self.runs
            .iter()
            .any(|run| run.needle().is_empty() || run.find(folded.as_bytes()).is_some())
    }
}

fn scrub_names_by_char(text: &str, names: &[String]) -> Option<String> {
    let hay: Vec<(usize, char)> = text.char_indices().collect();
    let lower: Vec<char> = hay.iter().map(|(_, c)| fold(*c)).collect();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for name in names {
        let needle: Vec<char> = name.chars().map(fold).collect();
        let mut i = 0;
        while i + needle.len() <= lower.len() {
            let after = i + needle.len();
            let boundary_before = i == 0 || !lower[i - 1].is_alphanumeric();
            let boundary_after = after == lower.len() || !lower[after].is_alphanumeric();
            if boundary_before && boundary_after && lower[i..after] == needle[..] {
                spans.push((hay[i].0, hay.get(after).map_or(text.len(), |(b, _)| *b)));
                i = after;
            } else {
                i += 1;
            }
        }
    }
    replace_spans(text, spans)
}

fn replace_spans(text: &str, mut spans: Vec<(usize, usize)>) -> Option<String> {
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        if start >= at {
            out.push_str(&text[at..start]);
            out.push_str("[NAME]");
            at = end;
        }
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// One-to-one lower-casing (characters whose lower case is longer stay).
/// A name as it is looked for: trimmed and lower-cased, with the dotted
/// capital I as a plain `i` (its lower case is `i` and a combining dot,
/// which the text, folded by [`fold`], never holds).
fn lowered_name(name: &str) -> String {
    // Folded a character at a time, as the text is: the string's own
    // lower-casing writes a final sigma (`ΝΙΚΟΣ` -> `νικος`) that a text
    // folded per character (`νικοσ`) never holds.
    name.trim()
        .replace("i\u{307}", "i")
        .replace("I\u{307}", "i")
        .chars()
        .map(fold)
        .collect()
}

/// `text` folded by [`fold`], when every character keeps its width in
/// UTF-8, so a byte offset in the result is one in `text`; None otherwise.
fn fold_same_width(text: &str) -> Option<String> {
    // ASCII text (much chat text) lower-cases a byte at a time.
    if text.is_ascii() {
        return Some(text.to_ascii_lowercase());
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let folded = fold(c);
        if folded.len_utf8() != c.len_utf8() {
            return None;
        }
        out.push(folded);
    }
    Some(out)
}

/// A character of the text as names are compared with it: its lower case
/// when that is one character, and the dotted capital I as `i` (Turkish
/// writes İPEK for İpek).
fn fold(c: char) -> char {
    if c == '\u{130}' {
        return 'i';
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Replaces e-mail addresses, phone numbers and card numbers in `text`.
/// Returns None when there is nothing to replace (the common case, cheap).
pub fn scrub(text: &str, phones: &PhoneRegions) -> Option<String> {
    let bytes = text.as_bytes();
    let has_at = memchr::memchr(b'@', bytes).is_some();
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if !has_at && digits < 7 {
        return None;
    }
    let mut spans: Vec<(usize, usize, &'static str)> = Vec::new();
    if has_at {
        emails(bytes, &mut spans);
    }
    if digits >= 7 {
        numbers(bytes, phones, &mut spans);
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, label) in spans {
        if start < at {
            continue; // overlaps a span already replaced
        }
        out.push_str(&text[at..start]);
        out.push_str(label);
        at = end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

fn emails(b: &[u8], spans: &mut Vec<(usize, usize, &'static str)>) {
    let local = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let domain = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-');
    for at in memchr::memchr_iter(b'@', b) {
        let mut start = at;
        while start > 0 && local(b[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < b.len() && domain(b[end]) {
            end += 1;
        }
        // Trailing dots and dashes are punctuation, not the domain.
        while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let host = &b[at + 1..end];
        let tld_ok = host.iter().rposition(|&c| c == b'.').is_some_and(|dot| {
            dot > 0 && host.len() - dot > 2 && host[dot + 1..].iter().all(u8::is_ascii_alphabetic)
        });
        if start < at && tld_ok {
            spans.push((start, end, "[EMAIL]"));
        }
    }
}

/// Finds runs of digits and phone punctuation, and judges each.
fn numbers(b: &[u8], phones: &PhoneRegions, spans: &mut Vec<(usize, usize, &'static str)>) {
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let starts = c.is_ascii_digit()
            || ((c == b'+' || c == b'(') && b.get(i + 1).is_some_and(|n| n.is_ascii_digit()));
        // Glued to a word or a `#`/`$` it is an id, an order or an amount.
        let glued = i > 0
            && (b[i - 1].is_ascii_alphanumeric()
                || matches!(b[i - 1], b'#' | b'$' | b'/' | b'_' | b'-' | b'.' | b','));
        if !starts || glued {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while end < b.len() {
            let c = b[end];
            let sep = |c: u8| matches!(c, b' ' | b'-' | b'.' | b'(' | b')');
            let digit_at = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
            if c.is_ascii_digit() || (sep(c) && digit_at(end + 1)) {
                end += 1;
            } else if sep(c) && b.get(end + 1).is_some_and(|&n| sep(n)) && digit_at(end + 2) {
                // `) ` or ` - ` between groups
                end += 2;
            } else {
                break;
            }
        }
        let glued_after = b
            .get(end)
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'%' | b'/' | b':'));
        let run = &b[i..end];
        if !glued_after {
            if let Some(label) = judge(run, phones) {
                spans.push((i, end, label));
            }
        }
        i = end.max(i + 1);
    }
}

/// A run of digits and separators: a card number (Luhn-checked, card
/// shaped), a phone number (valid by the telephony metadata, see
/// [`PhoneRegions::is_phone`]), or neither. Amounts grouped by thousands
/// are neither, whatever the metadata would say.
fn judge(run: &[u8], phones: &PhoneRegions) -> Option<&'static str> {
    let digits: Vec<u8> = run
        .iter()
        .filter(|c| c.is_ascii_digit())
        .map(|c| c - b'0')
        .collect();
    let n = digits.len();
    if (13..=19).contains(&n) && luhn(&digits) && card_shaped(run) {
        return Some("[CARD]");
    }
    if !(7..=15).contains(&n) || thousands_grouped(run) {
        return None;
    }
    phones.is_phone(run).then_some("[PHONE]")
}

/// `1.250.000` or `1,250,000`: an amount, not a phone.
fn thousands_grouped(run: &[u8]) -> bool {
    let groups: Vec<&[u8]> = run.split(|c| matches!(c, b'.' | b',')).collect();
    groups.len() >= 3
        && groups[1..]
            .iter()
            .all(|g| g.len() == 3 && g.iter().all(u8::is_ascii_digit))
}

/// Card numbers are written as one block or in groups split by spaces or
/// dashes, never with dots or brackets.
fn card_shaped(run: &[u8]) -> bool {
    run.iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b' ' | b'-'))
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Item;

    fn clean(text: &str) -> String {
        scrub(text, &PhoneRegions::default()).unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn emails_phones_and_cards_are_replaced() {
        let cases = [
            (
                "escríbeme a maria.perez+promo@correo.com.co.",
                "escríbeme a [EMAIL].",
            ),
            ("mi número es 300 123 4567", "mi número es [PHONE]"),
            (
                "llámame al +57 300 123 4567 mañana",
                "llámame al [PHONE] mañana",
            ),
            ("tel 573001234567", "tel [PHONE]"),
            ("fijo (601) 234 5678", "fijo [PHONE]"),
            ("fijo 601-234-5678", "fijo [PHONE]"),
            ("số của em 0912 345 678 nhé", "số của em [PHONE] nhé"),
            ("gọi 0987654321", "gọi [PHONE]"),
            ("+84 912 345 678", "[PHONE]"),
            ("máy bàn 028 3822 1234", "máy bàn [PHONE]"),
            ("tarjeta 4111 1111 1111 1111 vence", "tarjeta [CARD] vence"),
            ("card 5500-0000-0000-0004", "card [CARD]"),
            ("amex 378282246310005", "amex [CARD]"),
            ("a@b.co y 3001234567", "[EMAIL] y [PHONE]"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean(input), expected, "{input}");
        }
    }

    #[test]
    fn look_alikes_are_left_alone() {
        let corpus = [
            "la cita es el 2024-03-05 a las 15:00",
            "fecha 05/03/2024 10:30:00",
            "el plan cuesta $89.900 al mes, total $1.250.000",
            "combo 2 áo là 450.000đ, tổng 1.350.000 đồng",
            "precio 1,250,000.50 COP",
            "pedido #A-1203 y DH-88231 y orden 20240305-7781",
            "factura FE-0012345678 y guía 120045678901",
            "cédula 1020304050",
            "ticket 387229101 ticket_no 7415",
            "conversation 20240301094830-AIVGTIVI-503996",
            "4111 1111 1111 1112 no pasa Luhn",
            "versión 2.10.3, 100% listo, 3x4",
            "son 12 cuotas de 299900",
            "hora 23:59:59 del 31-12-2024",
            "correo sin dominio ana@localhost y @usuario",
            "IP 192.168.100.200",
        ];
        for text in corpus {
            assert_eq!(clean(text), text, "false positive in {text:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(512))]

        /// Names are found as a plain search by character finds them, in
        /// any text: characters whose lower case is wider or narrower
        /// (`Ⱥ`, the Ohm and Kelvin signs, `İ`), a final sigma, scripts
        /// and marks of every kind, and names that are not words.
        #[test]
        fn names_are_found_as_a_search_by_character_finds_them(
            pieces in proptest::collection::vec(
                "(María|MARÍA|maria|Pérez|NGUYỄN|Hoa|\u{212A}im|KIM|\u{130}nci|inci|ΝΙΚΟΣ|νικοσ|ȺȺ|ⱥ|\u{2126}|ω|a-a|[ ,.!éí0-9a-zA-Z]|\\PC)",
                0..24,
            ),
            name in "(María|Pérez|Nguyễn|Hoa|Kim|İnci|Νίκος|ΝΙΚΟΣ|ȺȺȺ|\u{2126}\u{2126}\u{2126}|a-a|\\PC{0,5})",
            other in "\\PC{0,6}",
        ) {
            let text: String = pieces.concat();
            let names = [name.as_str(), other.as_str()];
            proptest::prop_assert_eq!(
                scrub_names(&text, &names),
                reference_scrub(&text, &names),
                "text {:?}", text
            );
        }
    }

    /// The search [`NameSearch::scrub`] must agree with, written as
    /// plainly as possible: every character compared by its simple lower
    /// case, a name matching only as a whole word, the earliest occurrence
    /// winning where two overlap.
    fn reference_scrub(text: &str, names: &[&str]) -> Option<String> {
        let low = |c: char| {
            if c == '\u{130}' {
                return 'i';
            }
            let lower: Vec<char> = c.to_lowercase().collect();
            if lower.len() == 1 {
                lower[0]
            } else {
                c
            }
        };
        let chars: Vec<char> = text.chars().collect();
        let folded: Vec<char> = chars.iter().map(|&c| low(c)).collect();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for name in names {
            let name = name
                .trim()
                .replace("i\u{307}", "i")
                .replace("I\u{307}", "i");
            let needle: Vec<char> = name.chars().map(low).collect();
            if needle.len() < 3 {
                continue;
            }
            let mut i = 0;
            while i + needle.len() <= folded.len() {
                let end = i + needle.len();
                let word_before = i > 0 && folded[i - 1].is_alphanumeric();
                let word_after = end < folded.len() && folded[end].is_alphanumeric();
                if folded[i..end] == needle[..] && !word_before && !word_after {
                    spans.push((i, end));
                    i = end;
                } else {
                    i += 1;
                }
            }
        }
        if spans.is_empty() {
            return None;
        }
        spans.sort();
        let mut out = String::new();
        let mut at = 0;
        for (start, end) in spans {
            if start < at {
                continue;
            }
            out.extend(&chars[at..start]);
            out.push_str("[NAME]");
            at = end;
        }
        out.extend(&chars[at..]);
        Some(out)
    }

    #[test]
    fn texts_whose_lower_case_changes_width_keep_their_offsets() {
        // Lengths that balance out (`Ⱥ` grows, the Ohm and Kelvin signs
        // shrink) once shifted every offset: a panic, or the wrong word.
        assert_eq!(
            scrub_names("ȺȺ maria é \u{2126}\u{2126}", &["María"]).as_deref(),
            None
        );
        assert_eq!(
            scrub_names("ȺȺ maria é \u{2126}\u{2126}", &["Maria"]).as_deref(),
            Some("ȺȺ [NAME] é \u{2126}\u{2126}")
        );
        assert_eq!(
            scrub_names("ȺȺȺȺȺȺ maria llamo ok \u{212A}\u{212A}\u{212A}", &["maria"]).as_deref(),
            Some("ȺȺȺȺȺȺ [NAME] llamo ok \u{212A}\u{212A}\u{212A}")
        );
        assert_eq!(
            scrub_names("soy ΝΙΚΟΣ, νικοσ", &["Νίκος", "ΝΙΚΟΣ"]).as_deref(),
            Some("soy [NAME], [NAME]"),
            "a final sigma in a name is the sigma a text's character folds to"
        );
    }

    #[test]
    fn known_names_leave_the_text() {
        assert_eq!(
            scrub_names("Dạ chị NGUYỄN THỊ HOA ơi, Hoa ơi", &["Nguyễn Thị Hoa"]).as_deref(),
            Some("Dạ chị [NAME] ơi, Hoa ơi")
        );
        assert_eq!(
            scrub_names("Anabel y Ana", &["Ana"]).as_deref(),
            Some("Anabel y [NAME]"),
            "whole words only"
        );
        assert_eq!(scrub_names("hola", &["Al", ""]), None);
        assert_eq!(
            scrub_names("İstanbul'dan AYŞE KAYA yazdı", &["Ayşe Kaya"]).as_deref(),
            Some("İstanbul'dan [NAME] yazdı"),
            "lower-casing that changes lengths takes the slow path"
        );
        // The dotted capital I: İPEK is İpek, and ipek.
        for name in ["İpek", "ipek", "IPEK"] {
            assert_eq!(
                scrub_names("Merhaba, İPEK geldi mi?", &[name]).as_deref(),
                Some("Merhaba, [NAME] geldi mi?"),
                "{name}"
            );
        }
        assert_eq!(
            scrub_names("merhaba ipek", &["İpek"]).as_deref(),
            Some("merhaba [NAME]")
        );
        // The Kelvin sign lower-cases to an ASCII `k`: a name written with
        // it is still found.
        assert_eq!(
            scrub_names("hola \u{212A}ATE, soy Ana", &["Kate"]).as_deref(),
            Some("hola [NAME], soy Ana")
        );
    }

    /// The searches a redactor keeps find what a search made for the text
    /// finds, however lists of names alike and not interleave.
    #[test]
    fn kept_name_searches_find_what_new_ones_find() {
        let redactor = Redactor::new(Mode::Mask, true, None);
        let lists: [&[&str]; 6] = [
            &["Ana María", "Cliente"],
            &["Ana María", "Cliente 2"],
            &["Ana María"],
            &["Cliente", "Ana María"],
            &["Pedro", "Cliente"],
            &[],
        ];
        let texts = [
            "hola Ana María, soy el cliente 2",
            "Pedro y el Cliente hablaron",
            "nada que ver",
            "CLIENTE 2: ana maría",
        ];
        for round in 0..3 {
            for (i, names) in lists.iter().enumerate() {
                for text in texts.iter().skip((i + round) % 2) {
                    assert_eq!(
                        redactor.scrub_names(text, names),
                        NameSearch::new(names).scrub(text),
                        "{names:?} in {text:?}"
                    );
                }
            }
        }
        assert_eq!(
            redactor
                .scrub_names("el cliente 2", &["Cliente 2"])
                .as_deref(),
            Some("el [NAME]")
        );
    }

    /// Pseudonyms are the same whether they come from the last few values,
    /// the cache or the key, however values of a class interleave.
    #[test]
    fn pseudonyms_do_not_depend_on_the_caches() {
        let redactor = Redactor::new(Mode::Hash, true, Some(b"k"));
        let names: Vec<String> = (0..9).map(|n| format!("Cliente {n}")).collect();
        for round in 0..3 {
            for (i, name) in names.iter().enumerate() {
                // A few values repeat often, others rarely.
                for value in [&names[0], name, &names[i % 3]] {
                    assert_eq!(
                        *redactor.cached_pseudonym(value, Class::Name),
                        redactor.pseudonym(value, Class::Name),
                        "round {round}, {value}"
                    );
                    assert_ne!(
                        *redactor.cached_pseudonym(value, Class::Phone),
                        redactor.pseudonym(value, Class::Name)
                    );
                }
            }
        }
    }

    #[test]
    fn inline_images_and_attachments_keep_only_type_and_size() {
        let image = "data:image/png;base64,iVBORw0KGgo3001234567AAAA+/5500000000000004==";
        let text = format!("mi cédula {image} llámame al 3001234567");
        let mut r = Record::Message(Item {
            record: Message {
                attachments: crate::media::in_text(&text)
                    .iter()
                    .cloned()
                    .chain([crate::model::Attachment {
                        origins: vec![crate::model::Origin::Url(
                            "https://cdn.example/Ana Pérez.jpg".into(),
                        )],
                        name: Some("Ana Pérez.jpg".into()),
                        content_type: Some("image/jpeg".into()),
                        bytes: Some(1234),
                        ..Default::default()
                    }])
                    .collect(),
                text: Some(text),
                ..Default::default()
            },
            raw: None,
        });
        Redactor::new(Mode::Mask, false, None).apply(&mut r);
        let m = fields(&r);
        assert_eq!(
            m.text.as_deref(),
            Some("mi cédula [attachment: image/png, 32 bytes] llámame al [PHONE]")
        );
        let mut json = Vec::new();
        crate::model::attachments_json(&m.attachments, &mut json);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"[{"sha256":null,"content_type":"image/png","bytes":32,"name":null,"path":null,"url":null,"status":"redacted"},{"sha256":null,"content_type":"image/jpeg","bytes":1234,"name":null,"path":null,"url":null,"status":"redacted"}]"#
        );
    }

    #[test]
    fn luhn_check() {
        assert!(luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
    }

    fn customer_message() -> Record {
        Record::Message(Item {
            record: Message {
                conversation_id: "c".into(),
                sender: Sender::Customer,
                sender_name: Some("María  Pérez".into()),
                recipient_name: Some("Andrés".into()),
                customer_name: Some("maría pérez".into()),
                customer_phone: Some("+57 300 123 4567".into()),
                customer_id: Some("1020304050".into()),
                agent_name: Some("Andrés".into()),
                text: Some("mi correo es maria@correo.com".into()),
                ..Default::default()
            },
            raw: None,
        })
    }

    fn fields(r: &Record) -> Message {
        match r {
            Record::Message(m) => m.record.clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn hash_is_keyed_stable_and_normalised() {
        let a = Redactor::new(Mode::Hash, false, Some(b"key one"));
        let mut r1 = customer_message();
        let mut r2 = customer_message();
        a.apply(&mut r1);
        a.apply(&mut r2);
        let (m1, m2) = (fields(&r1), fields(&r2));
        assert_eq!(m1.customer_name, m2.customer_name, "stable");
        assert_eq!(
            m1.sender_name, m1.customer_name,
            "same person, same pseudonym"
        );
        assert!(m1.customer_name.as_deref().unwrap().starts_with("name:"));
        assert_eq!(
            m1.customer_name.as_deref().unwrap().len(),
            "name:".len() + 24
        );
        assert_eq!(
            m1.recipient_name.as_deref(),
            Some("Andrés"),
            "the agent stays"
        );
        assert_eq!(m1.agent_name.as_deref(), Some("Andrés"));
        assert_eq!(m1.text.as_deref(), Some("mi correo es [EMAIL]"));
        let phone = Redactor::new(Mode::Hash, false, Some(b"key one"))
            .pseudonym("573001234567", Class::Phone);
        assert_eq!(
            m1.customer_phone.as_deref(),
            Some(phone.as_str()),
            "phones compare by digits"
        );
        let b = Redactor::new(Mode::Hash, false, Some(b"key two"));
        let mut r3 = customer_message();
        b.apply(&mut r3);
        assert_ne!(
            fields(&r3).customer_name,
            m1.customer_name,
            "another key, another pseudonym"
        );
    }

    #[test]
    fn mask_drop_and_agents() {
        let mut r = customer_message();
        Redactor::new(Mode::Mask, true, None).apply(&mut r);
        let m = fields(&r);
        assert_eq!(m.customer_name.as_deref(), Some("[NAME]"));
        assert_eq!(m.customer_phone.as_deref(), Some("[PHONE]"));
        assert_eq!(m.recipient_name.as_deref(), Some("[NAME]"), "agents too");
        assert_eq!(m.agent_name.as_deref(), Some("[NAME]"));
        let mut r = customer_message();
        Redactor::new(Mode::Drop, false, None).apply(&mut r);
        let m = fields(&r);
        assert_eq!(
            (m.customer_name, m.customer_id, m.sender_name),
            (None, None, None)
        );
        assert_eq!(
            m.text.as_deref(),
            Some("mi correo es [EMAIL]"),
            "text rules in every mode"
        );
    }
}
