//! Where a run of plain string text ends: the one loop every byte of every
//! JSON string read or written goes through, with an SSE2 version on
//! x86_64 (16 bytes a step) and a portable one elsewhere.

/// The offset of the first byte from `from` on that cannot stand for itself
/// inside a JSON string: `"`, `\\`, or a control character below 0x20. The
/// writer must escape these, and a reader's run of plain text ends at one.
/// Every byte of every string read or written passes through here.
pub fn plain_run_end(bytes: &[u8], from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 processor
    // has it (and the function reads only through bounds-checked slices).
    return unsafe { plain_run_end_sse2(bytes, from) };
    #[cfg(not(target_arch = "x86_64"))]
    plain_run_end_portable(bytes, from)
}

/// [`plain_run_end`] sixteen bytes at a time with SSE2. The last bytes
/// are looked at as one block too (the last sixteen of the text, or the
/// rest padded with spaces), since most strings are short and would
/// otherwise be mostly such a remainder.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn plain_run_end_sse2(bytes: &[u8], from: usize) -> Option<usize> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x,
    };
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let below_space = _mm_set1_epi8(0x1f);
    // Bit n set: byte n of the block is a stop.
    let stops = |block: &[u8]| {
        let half = |at: usize| i64::from_le_bytes(block[at..at + 8].try_into().expect("8"));
        let v = _mm_set_epi64x(half(8), half(0));
        // A control character: the larger of it and 0x1f (unsigned) is 0x1f.
        let control = _mm_cmpeq_epi8(_mm_max_epu8(v, below_space), below_space);
        let stop = _mm_or_si128(
            control,
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
        );
        _mm_movemask_epi8(stop) as u32
    };
    let mut i = from;
    while let Some(block) = bytes.get(i..i + 16) {
        let mask = stops(block);
        if mask != 0 {
            return Some(i + mask.trailing_zeros() as usize);
        }
        i += 16;
    }
    let rest = bytes.get(i..).filter(|rest| !rest.is_empty())?;
    if bytes.len() >= 16 {
        // The last sixteen bytes; those before `i` were already looked at.
        let start = bytes.len() - 16;
        let mask = stops(&bytes[start..]) >> (i - start);
        return (mask != 0).then(|| i + mask.trailing_zeros() as usize);
    }
    let mut block = [b' '; 16];
    block[..rest.len()].copy_from_slice(rest);
    let mask = stops(&block);
    (mask != 0).then(|| i + mask.trailing_zeros() as usize)
}

/// [`plain_run_end`] eight bytes at a time in a machine word, where SSE2
/// is not there.
#[cfg(any(test, not(target_arch = "x86_64")))]
pub(super) fn plain_run_end_portable(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(word) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        // The usual "has a zero byte" test, for each of the three: its
        // lowest flagged byte is exactly the first match (flags above a
        // match can be false, below one never).
        let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v;
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
        let flags = (control | quote | backslash) & HIGH;
        if flags != 0 {
            return Some(i + (flags.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let tail = bytes.get(i..)?;
    tail.iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|p| i + p)
}
