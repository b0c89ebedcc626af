//! Stream entry ids (`<ms>-<seq>`), the versions of a site's state: typed and ordered as Redis
//! orders them (numerically, milliseconds first), so no code compares version strings.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of a Redis Stream entry: milliseconds, then a sequence number within that
/// millisecond. `0-0` is "before everything": the version of a site never changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds since the epoch, by the Redis primary's clock.
    pub ms: u64,
    /// Sequence number within `ms`.
    pub seq: u64,
}

/// A text that is not a stream id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidStreamId(pub String);

impl std::fmt::Display for InvalidStreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a stream id such as 1700000000000-0, or 0", self.0)
    }
}

impl std::error::Error for InvalidStreamId {}

/// The longest text a stream id can have: two 20-digit numbers and a dash.
const STREAM_ID_CHARS_MAX: usize = 41;

impl StreamId {
    /// `0-0`.
    pub const ZERO: Self = Self { ms: 0, seq: 0 };

    /// An id from its parts.
    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// Parses `<ms>-<seq>`, or `<ms>` (sequence 0), as Redis accepts them.
    pub fn parse(text: &str) -> Result<Self, InvalidStreamId> {
        let invalid = || InvalidStreamId(text.chars().take(STREAM_ID_CHARS_MAX + 1).collect());
        if text.len() > STREAM_ID_CHARS_MAX {
            return Err(invalid());
        }
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse::<u64>().ok()
        };
        match (number(ms), number(seq)) {
            (Some(ms), Some(seq)) => Ok(Self { ms, seq }),
            _ => Err(invalid()),
        }
    }

    /// Whether this is `0-0`.
    pub fn is_zero(self) -> bool {
        self == Self::ZERO
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for StreamId {
    type Err = InvalidStreamId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_orders_like_redis() {
        assert_eq!(StreamId::parse("0"), Ok(StreamId::ZERO));
        assert_eq!(StreamId::parse("0-0"), Ok(StreamId::ZERO));
        assert_eq!(StreamId::parse("1700000000000-5"), Ok(StreamId::new(1_700_000_000_000, 5)));
        assert!(StreamId::new(9, 0) < StreamId::new(10, 0), "numeric, not lexicographic");
        assert!(StreamId::parse("9-0").expect("id") < StreamId::parse("10-0").expect("id"));
        assert!(StreamId::new(10, 1) > StreamId::new(10, 0));
        for bad in ["yesterday", "1-", "-1", "", "1-2-3", "+1-0", " 1-0", "99999999999999999999999-0"] {
            assert!(StreamId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_is_the_text_form() {
        let id = StreamId::new(12, 3);
        assert_eq!(serde_json::to_string(&id).expect("json"), "\"12-3\"");
        assert_eq!(serde_json::from_str::<StreamId>("\"12-3\"").expect("json"), id);
        assert!(serde_json::from_str::<StreamId>("\"later\"").is_err());
    }

    proptest! {
        #[test]
        fn text_round_trips_and_keeps_order(a in any::<(u64, u64)>(), b in any::<(u64, u64)>()) {
            let (x, y) = (StreamId::new(a.0, a.1), StreamId::new(b.0, b.1));
            prop_assert_eq!(StreamId::parse(&x.to_string()), Ok(x));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }
    }
}
