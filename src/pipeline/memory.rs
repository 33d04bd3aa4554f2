//! What outlives one output file: the de-duplication keys of recent
//! windows (and what a previous run left for its overlap), the open
//! conversations, and the elements to read again; taken from a state and
//! handed back to the next one.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, Utc};

use super::chats::{self, Chats};
use super::seen::Seen;
use crate::state::Awaiting;

/// What outlives one output file: de-duplication keys, the open
/// conversations (their `seq` and details), and the keys of recent windows
/// that a later run will fetch again.
#[derive(Default)]
pub struct Memory {
    pub(super) seen: Seen,
    pub(super) chats: Chats,
    /// Keys by the end of the window that saw them, oldest first.
    pub(super) recent: VecDeque<(DateTime<Utc>, Vec<u128>)>,
    /// Whether a later run will want `recent` (there is a state file):
    /// without one, copying every window's keys would only cost memory.
    pub(super) remember: bool,
    /// Elements to read again (their data was not there yet).
    pub awaiting: Vec<Awaiting>,
}

impl Memory {
    /// Memory for a run with a state file, knowing the keys a previous
    /// run left there.
    /// `legacy`: the keys are a version-1 state's (see `legacy_digest128`);
    /// they only recognise records again, and are not handed on.
    pub fn carrying(
        recent: Vec<(DateTime<Utc>, Vec<u128>)>,
        legacy: bool,
        awaiting: Vec<Awaiting>,
        open: &[crate::state::OpenChat],
    ) -> Memory {
        let mut memory = Memory {
            remember: true,
            awaiting,
            chats: Chats::from_state(open),
            ..Memory::default()
        };
        if legacy {
            memory.seen.legacy = recent.iter().flat_map(|(_, k)| k.iter().copied()).collect();
            return memory;
        }
        memory.seen.carried = recent.iter().flat_map(|(_, k)| k.iter().copied()).collect();
        memory.recent = recent.into();
        memory
    }

    /// The conversations to hand to the next run as open: those seen in a
    /// window ending within a day of `checkpoint`.
    pub fn open_chats(&self, checkpoint: DateTime<Utc>) -> Vec<crate::state::OpenChat> {
        self.chats.to_state(checkpoint - chats::OPEN_FOR)
    }

    /// What to hand to the next run: the keys of windows ending after
    /// `since`, each key once, filed under the newest window that saw it.
    pub fn recent_since(&self, since: DateTime<Utc>) -> Vec<(DateTime<Utc>, Vec<u128>)> {
        let mut taken: HashSet<u128> = HashSet::new();
        let mut out: Vec<(DateTime<Utc>, Vec<u128>)> = Vec::new();
        for (seen_until, keys) in self.recent.iter().rev().filter(|(t, _)| *t > since) {
            let fresh: Vec<u128> = keys.iter().copied().filter(|k| taken.insert(*k)).collect();
            if !fresh.is_empty() {
                out.push((*seen_until, fresh));
            }
        }
        out.reverse();
        out
    }
}
