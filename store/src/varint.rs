//! LEB128 varints, as the change log and the decision log's blocks (crate `decision-log`) write
//! lengths and counts: seven bits a byte, low first, the high bit set on all but the last. One
//! copy, public for the decision log.

/// Appends `n`.
pub fn put(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Splits a [`put`] number off the front of `rest`; `None` (and `rest` untouched) if it is cut
/// short or does not fit 64 bits, which only corruption makes.
pub fn take(rest: &mut &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for (i, &byte) in rest.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        // The tenth byte holds one bit; anything above it would be shifted out.
        if shift == 63 && bits > 1 {
            return None;
        }
        n |= bits << shift;
        if byte & 0x80 == 0 {
            *rest = &rest[i + 1..];
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_what_is_cut_short_or_too_long() {
        for n in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put(&mut out, n);
            out.push(0xaa);
            let mut rest = &out[..];
            assert_eq!(take(&mut rest), Some(n));
            assert_eq!(rest, [0xaa]);
        }
        let mut one = vec![0x80];
        let mut rest = &one[..];
        assert_eq!(take(&mut rest), None);
        assert_eq!(rest, [0x80], "a refused varint leaves its input");
        assert_eq!(take(&mut &[0x80u8; 11][..]), None);
        one = vec![0xff; 9];
        one.push(0x02);
        assert_eq!(take(&mut &one[..]), None, "bit 64 set");
    }
}
