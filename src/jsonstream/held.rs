//! The response bytes a [`Scanner`](super::Scanner) holds: as they came,
//! or checked to be UTF-8 as they came (reading records in place), with
//! the front dropped once no record needs it.

/// The response bytes held: as they came, or (reading in place) checked to
/// be UTF-8 as they came.
pub(super) enum Held {
    Bytes(Vec<u8>),
    Text {
        text: String,
        /// The first bytes of a character the next chunk completes.
        cut: Vec<u8>,
    },
}

impl Held {
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Held::Bytes(b) => b,
            Held::Text { text, .. } => text.as_bytes(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Appends `chunk`; the error is the offset in it of a byte that is not
    /// UTF-8, when text is held.
    pub(super) fn append(&mut self, mut chunk: &[u8]) -> Result<(), usize> {
        let (text, cut) = match self {
            Held::Bytes(b) => {
                b.extend_from_slice(chunk);
                return Ok(());
            }
            Held::Text { text, cut } => (text, cut),
        };
        let mut offset = 0;
        if !cut.is_empty() {
            // Complete the character the last chunk cut, a byte at a time
            // (at most three).
            while !chunk.is_empty() {
                cut.push(chunk[0]);
                chunk = &chunk[1..];
                offset += 1;
                match std::str::from_utf8(cut) {
                    Ok(c) => {
                        text.push_str(c);
                        cut.clear();
                        break;
                    }
                    Err(e) if e.error_len().is_some() => return Err(0),
                    Err(_) => {}
                }
            }
            if !cut.is_empty() {
                return Ok(());
            }
        }
        // A character cut off at the chunk's end waits for the next chunk;
        // the rest is checked in one call, with SIMD: text with accents
        // every few words keeps the standard library's check off its ASCII
        // fast path (5% of an export's time, where this takes 0.5%).
        let whole = chunk.len() - cut_off_at_end(chunk);
        match simdutf8::compat::from_utf8(&chunk[..whole]) {
            Ok(valid) => text.push_str(valid),
            Err(e) => return Err(offset + e.valid_up_to()),
        }
        cut.extend_from_slice(&chunk[whole..]);
        Ok(())
    }

    /// Drops the first `n` bytes, unless that would cut a character.
    pub(super) fn drop_front(&mut self, n: usize) -> bool {
        match self {
            Held::Bytes(b) => {
                b.drain(..n);
                true
            }
            Held::Text { text, .. } if text.is_char_boundary(n) => {
                text.drain(..n);
                true
            }
            Held::Text { .. } => false,
        }
    }

    pub(super) fn text_from(&self, start: usize) -> Option<&str> {
        match self {
            Held::Bytes(_) => None,
            Held::Text { text, .. } => text.get(start..),
        }
    }

    /// Whether a cut character is still waiting for its end.
    pub(super) fn is_cut(&self) -> bool {
        matches!(self, Held::Text { cut, .. } if !cut.is_empty())
    }
}

/// How many bytes at the end of `bytes` begin a UTF-8 character that does
/// not end there (0 to 3).
pub(super) fn cut_off_at_end(bytes: &[u8]) -> usize {
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    let Some(lead) = (1..=bytes.len().min(4))
        .map(|back| bytes.len() - back)
        .find(|&at| !is_continuation(bytes[at]))
    else {
        return 0;
    };
    let width = match bytes[lead] {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        // ASCII, or no lead byte at all: the check says what is wrong.
        _ => 1,
    };
    let held = bytes.len() - lead;
    if held < width {
        held
    } else {
        0
    }
}
