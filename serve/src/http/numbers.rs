//! JSON numbers, flat or nested to any depth, flattened row-major while
//! parsing (no intermediate `serde_json::Value` tree).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// A rectangular array of numbers: `values` row-major, `dims` the nesting
/// (`[2, 4]` for `[[..4..], [..4..]]`, `[8]` for a flat list, `[]` for a scalar).
#[derive(Debug, Default)]
pub struct NestedNumbers {
    pub values: Vec<f64>,
    pub dims: Vec<usize>,
}

impl<'de> Deserialize<'de> for NestedNumbers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut values = Vec::new();
        let mut dims = Vec::new();
        let mut leaf_depth = None;
        Level {
            values: &mut values,
            dims: &mut dims,
            leaf_depth: &mut leaf_depth,
            depth: 0,
        }
        .deserialize(deserializer)?;
        let dims = dims.into_iter().map(|d| d.unwrap_or(0)).collect();
        Ok(NestedNumbers { values, dims })
    }
}

/// One nesting level being parsed.
struct Level<'a> {
    values: &'a mut Vec<f64>,
    /// Length seen at each depth; every array at one depth must match it.
    dims: &'a mut Vec<Option<usize>>,
    /// Depth at which numbers appear; numbers and arrays must not mix.
    leaf_depth: &'a mut Option<usize>,
    depth: usize,
}

impl Level<'_> {
    fn leaf<E: de::Error>(self, value: f64) -> Result<(), E> {
        match *self.leaf_depth {
            None => *self.leaf_depth = Some(self.depth),
            Some(depth) if depth != self.depth => {
                return Err(E::custom("numbers and arrays are mixed at the same depth"))
            }
            Some(_) => {}
        }
        self.values.push(value);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or an array of numbers")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.leaf(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.leaf(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.leaf(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut len = 0;
        loop {
            let child = Level {
                values: &mut *self.values,
                dims: &mut *self.dims,
                leaf_depth: &mut *self.leaf_depth,
                depth: self.depth + 1,
            };
            if seq.next_element_seed(child)?.is_none() {
                break;
            }
            len += 1;
        }
        if self.dims.len() <= self.depth {
            self.dims.resize(self.depth + 1, None);
        }
        match self.dims[self.depth] {
            None => self.dims[self.depth] = Some(len),
            Some(seen) if seen != len => {
                return Err(de::Error::custom(format!(
                    "ragged array: arrays at depth {} have {seen} and {len} elements",
                    self.depth + 1
                )))
            }
            Some(_) => {}
        }
        Ok(())
    }
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
    }
}
