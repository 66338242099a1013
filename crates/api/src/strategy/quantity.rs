//! Just enough of apimachinery's `resource.Quantity` to compare and add quantities.
//!
//! A quantity is held as an integer count of nano-units, rounded up as upstream rounds values
//! that are too precise; that range covers every quantity the API accepts (up to 2^63 units).

use serde_json::Value;

/// A parsed quantity in nano-units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(pub i128);

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity(0);

    /// Parses `1.5Gi`, `100m`, `1e3`, `-2`; `None` when it is not a quantity.
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let (neg, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, suffix) = rest.split_at(num_end);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let digits = format!("{int_part}{frac_part}");
        let mut mantissa: i128 = 0;
        for d in digits.bytes() {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(d - b'0'))?;
        }
        let mut pow10: i32 = 9 - i32::try_from(frac_part.len()).ok()?;
        let mut binary: u32 = 0;
        match suffix {
            "" => {}
            "m" => pow10 -= 3,
            "k" => pow10 += 3,
            "M" => pow10 += 6,
            "G" => pow10 += 9,
            "T" => pow10 += 12,
            "P" => pow10 += 15,
            "E" => pow10 += 18,
            "Ki" => binary = 1,
            "Mi" => binary = 2,
            "Gi" => binary = 3,
            "Ti" => binary = 4,
            "Pi" => binary = 5,
            "Ei" => binary = 6,
            exp if exp.starts_with(['e', 'E']) => {
                let e: i32 = exp[1..].parse().ok()?;
                pow10 = pow10.checked_add(e)?;
            }
            _ => return None,
        }
        mantissa = mantissa.checked_mul(1024i128.checked_pow(binary)?)?;
        let value = if pow10 >= 0 {
            mantissa.checked_mul(10i128.checked_pow(u32::try_from(pow10).ok()?)?)?
        } else {
            let div = 10i128.checked_pow(pow10.unsigned_abs())?;
            // Upstream rounds a too precise value up (0.1m becomes 1m); nano-units are finer still.
            (mantissa + div - 1) / div
        };
        Some(Quantity(if neg { -value } else { value }))
    }

    /// Parses a JSON quantity, which may arrive as a string or a number.
    pub fn from_value(v: &Value) -> Option<Quantity> {
        match v {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_suffix_form() {
        let cases = [
            ("1", Some(1_000_000_000)),
            ("100m", Some(100_000_000)),
            ("0.5", Some(500_000_000)),
            ("1Ki", Some(1024 * 1_000_000_000)),
            ("1.5Gi", Some(1536 * 1024 * 1024 * 1_000_000_000i128)),
            ("1k", Some(1_000_000_000_000)),
            ("1e3", Some(1_000_000_000_000)),
            ("-2", Some(-2_000_000_000)),
            ("abc", None),
            ("1Q", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(Quantity::parse(s).map(|q| q.0), want, "{s}");
        }
        assert_eq!(Quantity::parse("1000m"), Quantity::parse("1"));
    }
}
