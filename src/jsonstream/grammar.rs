//! The outer layer's grammar (the root container, its keys, the records
//! array and the separators between records) and the captures of what the
//! scanner hands on: envelope values, keys and records.

use super::*;

/// What the grammar of the outer layer (the root container and the records
/// array, outside any captured value) allows next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// A value (after `:`, or after `,` in an array).
    Value,
    /// A value or `]` (just after `[`).
    ValueOrClose,
    /// A key (after `,` in an object).
    Key,
    /// A key or `}` (just after `{`).
    KeyOrClose,
    Colon,
    CommaOrClose,
    /// The root closed: only whitespace may follow.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Capture {
    None,
    /// A root member's key string starting at this offset.
    Key(usize),
    /// A root member's value starting at this offset.
    Value(usize),
    /// A record starting at this offset.
    Item(usize),
}

impl Scanner {
    /// One structural byte of the outer layer, checked against the grammar.
    pub(super) fn outer_byte(&mut self, i: usize, b: u8) -> Result<(), String> {
        let unexpected = |what: &str| {
            Err(format!(
                "unexpected {what} at byte {i} of the response (expected {})",
                match self.expect {
                    Expect::Value => "a value",
                    Expect::ValueOrClose => "a value or `]`",
                    Expect::Key => "a key",
                    Expect::KeyOrClose => "a key or `}`",
                    Expect::Colon => "`:`",
                    Expect::CommaOrClose => "`,` or the end of the container",
                    Expect::End => "nothing more",
                }
            ))
        };
        let wants_value = matches!(self.expect, Expect::Value | Expect::ValueOrClose);
        match b {
            b'{' | b'['
                if self.outer.is_empty()
                    && self.depth == 0
                    && self.items == 0
                    && !self.is_done() =>
            {
                self.open_outer(b == b'{');
                if b == b'[' {
                    // A bare array holds the records, whatever the key.
                    self.in_records = true;
                    self.envelope.has_items = true;
                }
            }
            b'{' | b'[' if wants_value => {
                let is_records_key = self.outer.len() == 1
                    && !self.in_records
                    && matches!(self.items_at, ItemsAt::Key(k) if k == self.key);
                if is_records_key {
                    if self.records_seen {
                        return Err(format!("the records key {:?} appears twice", self.key));
                    }
                    self.records_seen = true;
                    self.envelope.has_items = true;
                    if b == b'[' {
                        self.open_outer(false);
                        self.in_records = true;
                        return Ok(());
                    }
                    // A lone object under the records key: one record.
                    self.start_capture(Capture::Item(i), true);
                    return Ok(());
                }
                let capture = if self.in_records {
                    Capture::Item(i)
                } else {
                    Capture::Value(i)
                };
                self.start_capture(capture, true);
            }
            b'}' | b']' => {
                let is_object = b == b'}';
                let allowed = match self.outer.last() {
                    Some(true) => {
                        is_object
                            && matches!(self.expect, Expect::KeyOrClose | Expect::CommaOrClose)
                    }
                    Some(false) => {
                        !is_object
                            && matches!(self.expect, Expect::ValueOrClose | Expect::CommaOrClose)
                    }
                    None => false,
                };
                if !allowed {
                    return unexpected(&format!("{:?}", b as char));
                }
                self.outer.pop();
                self.depth -= 1;
                self.in_records = false;
                self.expect = if self.outer.is_empty() {
                    Expect::End
                } else {
                    Expect::CommaOrClose
                };
            }
            b'"' if matches!(self.expect, Expect::Key | Expect::KeyOrClose) => {
                self.in_string = true;
                self.capture = Capture::Key(i);
                self.capture_is_container = false;
            }
            b':' if self.expect == Expect::Colon => self.expect = Expect::Value,
            b',' if self.expect == Expect::CommaOrClose => {
                self.expect = if self.outer.last() == Some(&true) {
                    Expect::Key
                } else {
                    Expect::Value
                };
            }
            _ if wants_value && (b == b'"' || !is_delimiter(b)) => {
                let capture = if self.in_records {
                    Capture::Item(i)
                } else {
                    Capture::Value(i)
                };
                self.start_capture(capture, false);
                if b == b'"' {
                    self.in_string = true;
                }
            }
            _ if self.is_done() => {
                return Err(format!(
                    "unexpected data after the end of the JSON response at byte {i}"
                ))
            }
            _ => return unexpected(&format!("{:?}", b as char)),
        }
        Ok(())
    }

    pub(super) fn open_outer(&mut self, object: bool) {
        self.outer.push(object);
        self.depth += 1;
        self.expect = if object {
            Expect::KeyOrClose
        } else {
            Expect::ValueOrClose
        };
    }

    pub(super) fn start_capture(&mut self, capture: Capture, container: bool) {
        self.capture = capture;
        self.capture_is_container = container;
        if container {
            self.capture_depth = self.depth;
            self.depth += 1;
            if matches!(capture, Capture::Item(_)) && matches!(self.held, Held::Text { .. }) {
                self.lead_when = Some(self.lead_at_least);
            }
        }
    }

    /// Offers the record starting at `start` to be read in place, once
    /// `when` bytes of it on are held (or the input has ended).
    pub(super) fn offer(
        &mut self,
        start: usize,
        when: usize,
        force: bool,
        on_element: &mut dyn FnMut(Element<'_>) -> Lead,
    ) -> Result<Offered, String> {
        let held = self.held.len() - start;
        if held < when && !force {
            return Ok(Offered::Wait);
        }
        let Some(text) = self.held.text_from(start) else {
            self.lead_when = None;
            return Ok(Offered::Walk);
        };
        let closing = match text.as_bytes().first() {
            Some(b'[') => b']',
            _ => b'}',
        };
        match on_element(Element::Leading(text)) {
            Lead::Read(n) => {
                // Read, so it cannot be walked and handed over again: a
                // length that is not the record's is the reader's fault.
                if n == 0 || n > held || text.as_bytes()[n - 1] != closing {
                    return Err(format!(
                        "the record at byte {} was read as {n} bytes, which do not end it",
                        self.dropped + start
                    ));
                }
                self.lead_when = None;
                self.capture = Capture::None;
                self.depth = self.capture_depth;
                self.expect = Expect::CommaOrClose;
                self.items += 1;
                Ok(Offered::Read(start + n))
            }
            Lead::Short if !force => {
                self.lead_when = Some(held.saturating_mul(2));
                Ok(Offered::Wait)
            }
            // Declined, or the input ended inside it: walked, so what is
            // wrong with it is said the usual way.
            Lead::Short | Lead::Declined => {
                self.lead_when = None;
                Ok(Offered::Walk)
            }
        }
    }

    /// A string just closed at `end` (the quote's offset).
    pub(super) fn string_closed(
        &mut self,
        end: usize,
        on_element: &mut dyn FnMut(Element<'_>) -> Lead,
    ) -> Result<(), String> {
        match self.capture {
            Capture::Key(start) => {
                self.key = serde_json::from_slice::<String>(&self.held.bytes()[start..=end])
                    .map_err(|e| format!("unreadable key in the response: {e}"))?;
                self.capture = Capture::None;
                self.expect = Expect::Colon;
            }
            Capture::Value(_) | Capture::Item(_) if !self.capture_is_container => {
                self.end_capture(end + 1, on_element)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A captured value ends before `end`: a record goes to `on_item`, an
    /// envelope member is checked and kept.
    pub(super) fn end_capture(
        &mut self,
        end: usize,
        on_element: &mut dyn FnMut(Element<'_>) -> Lead,
    ) -> Result<(), String> {
        let capture = std::mem::replace(&mut self.capture, Capture::None);
        self.expect = Expect::CommaOrClose;
        match capture {
            Capture::Item(start) => {
                self.items += 1;
                on_element(Element::Whole(&self.held.bytes()[start..end]));
            }
            Capture::Value(start) => {
                let bytes = &self.held.bytes()[start..end];
                if bytes == b"null" && matches!(self.items_at, ItemsAt::Key(k) if k == self.key) {
                    // `"data": null` says "no records" outright; any other
                    // scalar there leaves the records missing.
                    self.envelope.has_items = true;
                }
                if bytes.len() <= MAX_ENVELOPE_VALUE {
                    let text = std::str::from_utf8(bytes)
                        .ok()
                        .filter(|t| serde_json::from_str::<serde_json::Value>(t).is_ok())
                        .ok_or_else(|| {
                            format!(
                                "the member {:?} of the response is not valid JSON",
                                self.key
                            )
                        })?;
                    self.envelope
                        .fields
                        .push((std::mem::take(&mut self.key), text.to_string()));
                } else {
                    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| {
                        format!(
                            "the member {:?} of the response is not valid JSON: {e}",
                            self.key
                        )
                    })?;
                }
            }
            Capture::Key(_) | Capture::None => {}
        }
        Ok(())
    }
}
