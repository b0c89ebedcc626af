//! Identifiers that have been checked against the contract's patterns. Once a value has one
//! of these types, no inner code needs to look at its characters again.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{ID_LEN_MAX, IDEMPOTENCY_KEY_LEN_MAX, SLOT_LEN_MAX};

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId {
    /// Which kind of identifier was expected (`site`, `slot`, ...).
    pub kind: &'static str,
    /// What the pattern is, for the error message.
    pub pattern: &'static str,
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} must match {}", self.kind, self.pattern)
    }
}

impl std::error::Error for InvalidId {}

const ID_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";
const SLOT_PATTERN: &str = "^[0-9A-Za-z:._+-]{1,40}$";

fn is_id(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= ID_LEN_MAX
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

fn is_slot(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= SLOT_LEN_MAX
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'+' | b'-'))
}

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr, $pattern:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `value` against the pattern.
            pub fn parse(value: &str) -> Result<Self, InvalidId> {
                Self::try_from(value.to_owned())
            }

            /// The checked string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                if $check(&value) {
                    Ok(Self(value))
                } else {
                    Err(InvalidId { kind: $kind, pattern: $pattern })
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

checked_string!(
    /// A site: one partition of capacity (a hub, a hotel, a venue).
    SiteId, "site", is_id, ID_PATTERN
);
checked_string!(
    /// One kind of capacity at a site (`vans`, `room-deluxe`).
    ResourceId, "resource", is_id, ID_PATTERN
);
checked_string!(
    /// A zone of an allow-list (an address restriction).
    ZoneId, "zone", is_id, ID_PATTERN
);
checked_string!(
    /// A time bucket token; sorts lexicographically.
    Slot, "slot", is_slot, SLOT_PATTERN
);
checked_string!(
    /// A reservation id: a lowercase hyphenated UUIDv4 (122 random bits).
    ReservationId, "reservation id", is_uuid_v4, "a lowercase hyphenated UUIDv4"
);
checked_string!(
    /// A client's `Idempotency-Key`: 1..=255 printable ASCII characters.
    IdempotencyKey, "Idempotency-Key", is_idempotency_key, "1..=255 printable ASCII characters"
);

fn is_uuid_v4(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            14 => *b == b'4',
            19 => matches!(b, b'8' | b'9' | b'a' | b'b'),
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
}

fn is_idempotency_key(s: &str) -> bool {
    !s.is_empty() && s.len() <= IDEMPOTENCY_KEY_LEN_MAX && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

impl ReservationId {
    /// Builds an id from 16 random bytes, setting the version and variant bits of a UUIDv4.
    pub fn from_random_bytes(mut bytes: [u8; 16]) -> Self {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex = hex::encode(bytes);
        Self(format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_contract_pattern() {
        for ok in ["a", "0", "hub-1", "room_deluxe", &"a".repeat(64)] {
            assert!(SiteId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "a b", "a.b", "é", &"a".repeat(65)] {
            assert!(SiteId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slots_follow_the_contract_pattern() {
        for ok in ["2026-12-01T10:00Z", "2026-12-01", "a+b.c_d", &"9".repeat(40)] {
            assert!(Slot::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a#b", &"9".repeat(41)] {
            assert!(Slot::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reservation_ids_are_v4_uuids() {
        let id = ReservationId::from_random_bytes([0xff; 16]);
        assert!(ReservationId::parse(id.as_str()).is_ok(), "{id}");
        let id = ReservationId::from_random_bytes([0; 16]);
        assert!(ReservationId::parse(id.as_str()).is_ok(), "{id}");
        assert!(ReservationId::parse("not-a-uuid").is_err());
        assert!(ReservationId::parse("6F9619FF-8B86-4011-B42D-00C04FC964FF").is_err());
    }

    #[test]
    fn idempotency_keys_are_printable_ascii() {
        assert!(IdempotencyKey::parse("a b~").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("tab\there").is_err());
        assert!(IdempotencyKey::parse("ü").is_err());
    }
}
