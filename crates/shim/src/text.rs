//! Fixed-size text buffers: the shim allocates nothing, so paths, records and timestamps are
//! built in place.

use crate::sys::{ENAMETOOLONG, Errno};
use core::ffi::CStr;

/// Bytes built up to `N - 1` long (room stays for a NUL); what does not fit marks it full.
pub struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Buf<N> {
    pub const fn new() -> Self {
        Buf {
            bytes: [0; N],
            len: 0,
            overflowed: false,
        }
    }

    pub fn push(&mut self, b: &[u8]) -> &mut Self {
        if self.len + b.len() < N {
            self.bytes[self.len..self.len + b.len()].copy_from_slice(b);
            self.len += b.len();
        } else {
            self.overflowed = true;
        }
        self
    }

    pub fn push_str(&mut self, s: &str) -> &mut Self {
        self.push(s.as_bytes())
    }

    /// Appends a number in decimal.
    pub fn push_u64(&mut self, v: u64) -> &mut Self {
        self.push_padded(v, 1)
    }

    /// Appends a number in decimal, with leading zeros to `width` digits.
    pub fn push_padded(&mut self, mut v: u64, width: usize) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        while v > 0 || digits.len() - i < width {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.push(&digits[i..])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        self.overflowed = false;
    }

    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// The text as a C string, for a system call; fails if it did not fit or holds a NUL.
    pub fn cstr(&mut self) -> Result<&CStr, Errno> {
        if self.overflowed {
            return Err(ENAMETOOLONG);
        }
        self.bytes[self.len] = 0;
        CStr::from_bytes_with_nul(&self.bytes[..=self.len]).map_err(|_| Errno(22))
    }
}

impl<const N: usize> Default for Buf<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A decimal number at the start of `s` (after spaces), and the rest.
pub fn parse_u64(s: &[u8]) -> Option<(u64, &[u8])> {
    let s = trim_start(s);
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let v = s[..digits]
        .iter()
        .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
    Some((v, &s[digits..]))
}

pub fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

/// The whitespace-separated fields of `s`.
pub fn fields(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
}

/// A date and time in UTC, from nanoseconds since the epoch.
pub struct Utc {
    pub year: u64,
    pub month: u64,
    pub day: u64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
    pub nanos: u64,
}

impl Utc {
    pub fn from_nanos(t: u64) -> Utc {
        let secs = t / 1_000_000_000;
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let s = secs % 86_400;
        Utc {
            year: year as u64,
            month,
            day,
            hour: s / 3600,
            minute: s / 60 % 60,
            second: s % 60,
            nanos: t % 1_000_000_000,
        }
    }

    /// Go's `time.RFC3339Nano` in UTC (`2024-01-02T03:04:05.12Z`: the fraction's trailing
    /// zeros trimmed), the format of CRI log timestamps.
    pub fn push_rfc3339_nano<const N: usize>(&self, out: &mut Buf<N>) {
        out.push_padded(self.year, 4)
            .push(b"-")
            .push_padded(self.month, 2)
            .push(b"-")
            .push_padded(self.day, 2)
            .push(b"T")
            .push_padded(self.hour, 2)
            .push(b":")
            .push_padded(self.minute, 2)
            .push(b":")
            .push_padded(self.second, 2);
        if self.nanos > 0 {
            let (mut frac, mut width) = (self.nanos, 9);
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            out.push(b".").push_padded(frac, width);
        }
        out.push(b"Z");
    }

    /// `YYYYmmdd-HHMMSS`, kubelet's suffix for rotated logs.
    pub fn push_compact<const N: usize>(&self, out: &mut Buf<N>) {
        out.push_padded(self.year, 4)
            .push_padded(self.month, 2)
            .push_padded(self.day, 2)
            .push(b"-")
            .push_padded(self.hour, 2)
            .push_padded(self.minute, 2)
            .push_padded(self.second, 2);
    }
}

/// (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc(nanos: u64) -> String {
        let mut b = Buf::<64>::new();
        Utc::from_nanos(nanos).push_rfc3339_nano(&mut b);
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn timestamps_look_like_go() {
        // 2024-01-02T03:04:05Z is 1704164645 s after the epoch.
        let s = 1_704_164_645u64 * 1_000_000_000;
        assert_eq!(rfc(s), "2024-01-02T03:04:05Z");
        assert_eq!(rfc(s + 120_000_000), "2024-01-02T03:04:05.12Z");
        assert_eq!(rfc(s + 1), "2024-01-02T03:04:05.000000001Z");
        assert_eq!(rfc(0), "1970-01-01T00:00:00Z");
        // A leap day, and the last second of a year.
        assert_eq!(rfc(951_782_400 * 1_000_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc(1_735_689_599 * 1_000_000_000), "2024-12-31T23:59:59Z");
        let mut b = Buf::<64>::new();
        Utc::from_nanos(s).push_compact(&mut b);
        assert_eq!(b.as_bytes(), b"20240102-030405");
    }

    #[test]
    fn buffers_refuse_what_does_not_fit() {
        let mut b = Buf::<8>::new();
        b.push(b"abc").push_u64(1234);
        assert_eq!(b.cstr().unwrap().to_bytes(), b"abc1234");
        b.push(b"x");
        assert!(b.cstr().is_err());
        b.truncate(3);
        assert_eq!(b.cstr().unwrap().to_bytes(), b"abc");
        let mut z = Buf::<8>::new();
        z.push_u64(0);
        assert_eq!(z.as_bytes(), b"0");
    }

    #[test]
    fn numbers_and_fields_parse() {
        assert_eq!(parse_u64(b"  42 7"), Some((42, &b" 7"[..])));
        assert_eq!(parse_u64(b"x"), None);
        let f: Vec<&[u8]> = fields(b" 1  2\n3 ").collect();
        assert_eq!(f, vec![&b"1"[..], b"2", b"3"]);
    }
}
