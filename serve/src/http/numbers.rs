//! JSON numbers, flat or nested to any depth, flattened row-major.
//!
//! One parser reads them, correctly rounded, wherever they come from: the
//! V2 fast reader (`v2/fast_json.rs`) calls it on the body directly, which
//! is where the speed is (a number costs about half what serde's visitor
//! did); through serde (V1, Kafka values, unusual V2 bodies) serde_json
//! first checks the value and hands over its text, which costs about what
//! serde's own number parsing did.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A rectangular array of numbers: `values` row-major, `dims` the nesting
/// (`[2, 4]` for `[[..4..], [..4..]]`, `[8]` for a flat list, `[]` for a scalar).
#[derive(Debug, Default)]
pub struct NestedNumbers {
    pub values: Vec<f64>,
    pub dims: Vec<usize>,
}

impl<'de> Deserialize<'de> for NestedNumbers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Boxed (a copy of the text) rather than borrowed, so that any
        // serde_json deserializer works, readers included.
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get().as_bytes();
        match NestedNumbers::parse_at(text, 0) {
            Ok((numbers, end)) if end == text.len() => Ok(numbers),
            Ok(_) => Err(de::Error::custom("invalid JSON after the numbers")),
            Err(e) => Err(de::Error::custom(e)),
        }
    }
}

impl NestedNumbers {
    /// Parses the JSON value starting at `json[at]` (after optional
    /// whitespace); returns it and the offset just past it. Errors on
    /// anything but numbers and arrays of them, and on malformed JSON.
    pub(crate) fn parse_at(json: &[u8], at: usize) -> Result<(NestedNumbers, usize), String> {
        let mut parser = Parser {
            bytes: json,
            at,
            values: Vec::with_capacity(json.len() / 4),
            dims: Vec::new(),
            leaf_depth: None,
        };
        parser.value(0)?;
        let dims = parser.dims.into_iter().map(|d| d.unwrap_or(0)).collect();
        let numbers = NestedNumbers {
            values: parser.values,
            dims,
        };
        Ok((numbers, parser.at))
    }
}

/// serde_json's nesting limit, so that a hostile body cannot overflow the stack.
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
    values: Vec<f64>,
    /// Length seen at each depth; every array at one depth must match it.
    dims: Vec<Option<usize>>,
    /// Depth at which numbers appear; numbers and arrays must not mix.
    leaf_depth: Option<usize>,
}

impl Parser<'_> {
    fn peek(&self) -> u8 {
        self.bytes.get(self.at).copied().unwrap_or(0)
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        self.at = skip_whitespace(self.bytes, self.at);
        let kind = match self.peek() {
            b'[' if depth < MAX_DEPTH => return self.array(depth),
            b'[' => "an array nested too deeply",
            b'-' | b'0'..=b'9' => {
                self.at = self.leaf(depth, self.at)?;
                return Ok(());
            }
            b'"' => "string",
            b't' | b'f' => "boolean",
            b'n' => "null",
            b'{' => "map",
            _ => "invalid JSON",
        };
        Err(format!(
            "invalid type: {kind}, expected a number or an array of numbers"
        ))
    }

    /// Reads the number at `at`, at nesting `depth`; returns where it ends.
    // Inlined into `array`'s loop, with every rare path (the first number,
    // errors, long numbers) out of line: a call per number cost about 23 of
    // its 168 instructions (callgrind, 64-row iris bodies).
    #[inline(always)]
    fn leaf(&mut self, depth: usize, at: usize) -> Result<usize, String> {
        if self.leaf_depth != Some(depth) {
            self.first_leaf(depth)?;
        }
        let (value, end) = number(self.bytes, at)?;
        self.values.push(value);
        Ok(end)
    }

    #[cold]
    fn first_leaf(&mut self, depth: usize) -> Result<(), String> {
        match self.leaf_depth {
            None => {
                self.leaf_depth = Some(depth);
                Ok(())
            }
            Some(_) => Err("numbers and arrays are mixed at the same depth".into()),
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), String> {
        let bytes = self.bytes;
        let mut at = skip_whitespace(bytes, self.at + 1); // past '['
        let mut len = 0;
        if bytes.get(at) == Some(&b']') {
            at += 1;
        } else {
            loop {
                // Numbers are read right here: most elements are numbers,
                // and a call through `value` per number cost a third more.
                at = skip_whitespace(bytes, at);
                if let Some(b'-' | b'0'..=b'9') = bytes.get(at) {
                    at = self.leaf(depth + 1, at)?;
                } else {
                    self.at = at;
                    self.value(depth + 1)?;
                    at = self.at;
                }
                len += 1;
                at = skip_whitespace(bytes, at);
                match bytes.get(at) {
                    Some(b',') => at += 1,
                    Some(b']') => {
                        at += 1;
                        break;
                    }
                    _ => return Err("invalid JSON array".into()),
                }
            }
        }
        self.at = at;
        if self.dims.len() <= depth {
            self.dims.resize(depth + 1, None);
        }
        match self.dims[depth] {
            None => self.dims[depth] = Some(len),
            Some(seen) if seen != len => {
                return Err(format!(
                    "ragged array: arrays at depth {} have {seen} and {len} elements",
                    depth + 1
                ))
            }
            Some(_) => {}
        }
        Ok(())
    }
}

/// Where the whitespace at `bytes[at..]` ends.
#[inline(always)]
fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(at) {
        at += 1;
    }
    at
}

/// Powers of ten that f64 holds exactly.
const EXACT_POWERS: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The JSON number at `bytes[start..]` (which starts with `-` or a digit),
/// correctly rounded, and where it ends. The usual request number, digits
/// with an optional fraction and at most 15 digits in all, is read here:
/// its mantissa is below 2^53 and its divisor an exact power of ten, so one
/// division rounds correctly (Clinger's fast path). Everything else,
/// exponents and malformed numbers included, goes to [`any_number`]; this
/// took the usual number from about 146 to 128 instructions.
#[inline(always)]
fn number(bytes: &[u8], start: usize) -> Result<(f64, usize), String> {
    let negative = bytes.get(start) == Some(&b'-');
    let integer_start = start + usize::from(negative);
    let mut mantissa: u64 = 0;
    let mut at = read_digits(bytes, integer_start, &mut mantissa);
    let integer_digits = at - integer_start;
    let point = bytes.get(at) == Some(&b'.');
    let mut fraction_digits = 0;
    if point {
        let fraction_start = at + 1;
        at = read_digits(bytes, fraction_start, &mut mantissa);
        fraction_digits = at - fraction_start;
    }
    let plain = integer_part_valid(bytes, integer_start, integer_digits)
        && (!point || fraction_digits > 0)
        && integer_digits + fraction_digits <= 15
        && !matches!(bytes.get(at), Some(b'e' | b'E'));
    if !plain {
        return any_number(bytes, start);
    }
    let magnitude = mantissa as f64 / EXACT_POWERS[fraction_digits];
    Ok((if negative { -magnitude } else { magnitude }, at))
}

/// Any JSON number, correctly rounded, and where it ends. Those with few
/// digits and a small exponent take Clinger's fast path; the rest go to the
/// standard library's parser.
#[cold]
#[inline(never)]
fn any_number(bytes: &[u8], start: usize) -> Result<(f64, usize), String> {
    let mut at = start;
    let negative = bytes.get(at) == Some(&b'-');
    at += usize::from(negative);
    let mut mantissa: u64 = 0;
    let integer_start = at;
    at = read_digits(bytes, at, &mut mantissa);
    let mut digits = at - integer_start;
    // JSON's grammar: an integer part (see `integer_part_valid`), digits
    // after the point and in the exponent.
    let mut well_formed = integer_part_valid(bytes, integer_start, digits);
    let mut exponent: i64 = 0;
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        let fraction_start = at;
        at = read_digits(bytes, at, &mut mantissa);
        digits += at - fraction_start;
        exponent = -((at - fraction_start) as i64);
        well_formed &= at > fraction_start;
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        let negative_exponent = bytes.get(at) == Some(&b'-');
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        let mut e: i64 = 0;
        let exponent_start = at;
        while let Some(digit) = bytes
            .get(at)
            .map(|c| c.wrapping_sub(b'0'))
            .filter(|d| *d < 10)
        {
            e = (e * 10 + i64::from(digit)).min(1 << 32);
            at += 1;
        }
        exponent += if negative_exponent { -e } else { e };
        well_formed &= at > exponent_start;
    }
    // 19 digits always fit a u64 (no wrap happened); 2^53 is exact in f64.
    if well_formed && digits <= 19 && mantissa <= 1 << 53 && (-22..=22).contains(&exponent) {
        let power = EXACT_POWERS[exponent.unsigned_abs() as usize];
        let magnitude = if exponent < 0 {
            mantissa as f64 / power
        } else {
            mantissa as f64 * power
        };
        return Ok((if negative { -magnitude } else { magnitude }, at));
    }
    let text = std::str::from_utf8(&bytes[start..at]).unwrap_or("");
    if !well_formed {
        return Err(format!("invalid number `{text}`"));
    }
    text.parse::<f64>()
        .map(|value| (value, at))
        .map_err(|e| format!("invalid number `{text}`: {e}"))
}

/// Whether the `digits` digits at `bytes[start..]` are a JSON number's
/// integer part: at least one, and no leading zero.
#[inline(always)]
fn integer_part_valid(bytes: &[u8], start: usize, digits: usize) -> bool {
    digits == 1 || (digits > 1 && bytes[start] != b'0')
}

/// Appends the ASCII digits at `bytes[at..]` to `mantissa` (wrapping: the
/// caller counts digits); returns where they end.
#[inline]
fn read_digits(bytes: &[u8], mut at: usize, mantissa: &mut u64) -> usize {
    while let Some(digit) = bytes
        .get(at)
        .map(|c| c.wrapping_sub(b'0'))
        .filter(|d| *d < 10)
    {
        *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(digit));
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<NestedNumbers, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn nested_rows_flatten_row_major() {
        let n = parse("[[1, 2.5], [3, -4e2]]").unwrap();
        assert_eq!(n.values, vec![1.0, 2.5, 3.0, -400.0]);
        assert_eq!(n.dims, vec![2, 2]);
    }

    #[test]
    fn numbers_are_correctly_rounded() {
        let cases = [
            "0",
            "-0",
            "6.3",
            "0.1",
            "-2.5e-3",
            "1E5",
            "123456789012345678",
            "9007199254740993",
            "1.7976931348623157e308",
            "5e-324",
            "0.30000000000000004",
            "3.4028235e38",
            "12345678901234567890123",
            "1e-30",
            "2.2250738585072011e-308",
            "4.35",
            "1e22",
            "1e23",
        ];
        for text in cases {
            let n = parse(&format!("[{text}]")).unwrap();
            let expected: f64 = text.parse().unwrap();
            assert_eq!(n.values[0].to_bits(), expected.to_bits(), "{text}");
        }
        assert!(parse("[1e400]").unwrap().values[0].is_infinite());
    }

    #[test]
    fn flat_and_scalar() {
        assert_eq!(parse("[1, 2, 3]").unwrap().dims, vec![3]);
        let s = parse("7").unwrap();
        assert_eq!((s.values, s.dims), (vec![7.0], vec![]));
    }

    #[test]
    fn ragged_mixed_and_non_numbers_are_rejected() {
        assert!(parse("[[1, 2], [3]]")
            .unwrap_err()
            .to_string()
            .contains("ragged"));
        assert!(parse("[[1, 2], 3]")
            .unwrap_err()
            .to_string()
            .contains("mixed"));
        assert!(parse(r#"[1, "a"]"#)
            .unwrap_err()
            .to_string()
            .contains("expected a number"));
        assert!(parse("[true]").is_err());
        assert!(parse("[[1, 2], {}]").is_err());
        assert!(parse("[]").unwrap().values.is_empty());
        for bad in ["[1.]", "[01]", "[-]", "[1e]", "[.5]", "[1,]", "[1 2]"] {
            assert!(NestedNumbers::parse_at(bad.as_bytes(), 0).is_err(), "{bad}");
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(NestedNumbers::parse_at(deep.as_bytes(), 0).is_err());
    }
}
