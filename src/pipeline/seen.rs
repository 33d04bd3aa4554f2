//! De-duplication: the keys of records met, as 128-bit digests, over the
//! current and the previous window and what a previous run left for the
//! overlap, and how a record was met before.

use crate::model::{sip_digest128, DigestSet};

use super::chats::Met;

/// How the chat memory is to take a message de-duplication met so.
pub(super) fn met(novelty: Novelty) -> Met {
    match novelty {
        Novelty::New => Met::New,
        Novelty::Emitted => Met::Before,
        Novelty::Repeated => Met::Again,
    }
}

/// Keys of the current and the previous window, as 128-bit digests, plus
/// the keys a previous run left for the overlap it knew would be re-fetched.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) current: DigestSet,
    pub(super) previous: DigestSet,
    pub(super) carried: DigestSet,
    /// Keys a version-1 state carried, in that version's digest: matched
    /// by recomputing it, for the one run that migrates the state.
    pub(super) legacy: DigestSet,
}

impl Seen {
    /// True when the key made of `parts` is new; remembers it.
    pub(super) fn insert(&mut self, parts: &[&str]) -> bool {
        let key = self.key(parts);
        self.insert_key(key)
    }

    /// The key of `parts`; one a version-1 state carried counts as carried.
    pub(super) fn key(&mut self, parts: &[&str]) -> u128 {
        self.key_was(parts, parts)
    }

    /// The key of `parts`, where version 1 made the same record's key of
    /// `legacy_parts`.
    pub(super) fn key_was(&mut self, parts: &[&str], legacy_parts: &[&str]) -> u128 {
        let key = digest128(parts);
        if !self.legacy.is_empty() && self.legacy.contains(&sip_digest128(legacy_parts)) {
            self.carried.insert(key);
        }
        key
    }

    pub(super) fn insert_key(&mut self, key: u128) -> bool {
        self.check(key) == Novelty::New
    }

    /// Where `key` was met before, remembering it for this window.
    pub(super) fn check(&mut self, key: u128) -> Novelty {
        // Seen again here: this window now vouches for it too, so the
        // memory handed to the next run keeps it.
        if !self.current.insert(key) {
            return Novelty::Repeated;
        }
        if self.previous.contains(&key) || self.carried.contains(&key) {
            Novelty::Emitted
        } else {
            Novelty::New
        }
    }

    pub(super) fn rotate(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Novelty {
    /// Never met: emit it.
    New,
    /// Emitted by an earlier window or run: not again, but it still counts
    /// for the `seq` of the messages after it.
    Emitted,
    /// Already met in this window (a page or response repeating itself).
    Repeated,
}

/// The first 128 bits of SHA-256 over the length-prefixed parts:
/// collisions are out of reach, the keys cost 16 bytes each instead of a
/// string, and, unlike the standard library's hasher, the same on every
/// toolchain, so keys saved in a state keep their meaning.
pub(super) fn digest128(parts: &[&str]) -> u128 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}
