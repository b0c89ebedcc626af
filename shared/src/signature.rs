//! The edge's request signature, which the coordinator checks: HMAC-SHA256 over the method,
//! the path with its query, a Unix timestamp and the SHA-256 of the body. The edge signs with
//! this module and the coordinator verifies with it, so the two cannot drift apart.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::limits::SIGNATURE_CLOCK_SKEW_SECONDS_MAX;

/// Header with the signer's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-allot-timestamp";
/// Header with `v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "x-allot-signature";
/// The scheme's version prefix inside the signature header.
const SCHEME_PREFIX: &str = "v1=";

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The timestamp or signature header is not in the expected form.
    Malformed,
    /// The timestamp is further than the allowed skew from now.
    OutsideClockWindow,
    /// The signature does not match.
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "signature headers are malformed",
            Self::OutsideClockWindow => "signature timestamp is outside the allowed clock window",
            Self::Mismatch => "signature does not match",
        })
    }
}

impl std::error::Error for SignatureError {}

fn mac(secret: &[u8], method: &str, path_and_query: &str, timestamp_seconds: u64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    let body_digest = hex::encode(Sha256::digest(body));
    for part in ["v1", &method.to_ascii_uppercase(), path_and_query, &timestamp_seconds.to_string(), &body_digest] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    mac
}

/// The signature header value for a request.
pub fn sign(secret: &[u8], method: &str, path_and_query: &str, timestamp_seconds: u64, body: &[u8]) -> String {
    let tag = mac(secret, method, path_and_query, timestamp_seconds, body).finalize().into_bytes();
    format!("{SCHEME_PREFIX}{}", hex::encode(tag))
}

/// Checks a request's signature headers against the secret, in constant time.
pub fn verify(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_seconds: u64,
) -> Result<(), SignatureError> {
    let timestamp_seconds: u64 = timestamp_header.trim().parse().map_err(|_| SignatureError::Malformed)?;
    let tag = signature_header
        .trim()
        .strip_prefix(SCHEME_PREFIX)
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Malformed)?;
    if now_seconds.abs_diff(timestamp_seconds) > SIGNATURE_CLOCK_SKEW_SECONDS_MAX {
        return Err(SignatureError::OutsideClockWindow);
    }
    mac(secret, method, path_and_query, timestamp_seconds, body)
        .verify_slice(&tag)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let sig = sign(b"k", "POST", "/v1/sites/a/reservations", NOW, b"{}");
        let ts = NOW.to_string();
        assert_eq!(verify(b"k", "POST", "/v1/sites/a/reservations", &ts, &sig, b"{}", NOW), Ok(()));
        assert_eq!(verify(b"k", "post", "/v1/sites/a/reservations", &ts, &sig, b"{}", NOW + 300), Ok(()));
        let mismatch = Err(SignatureError::Mismatch);
        assert_eq!(verify(b"x", "POST", "/v1/sites/a/reservations", &ts, &sig, b"{}", NOW), mismatch);
        assert_eq!(verify(b"k", "PUT", "/v1/sites/a/reservations", &ts, &sig, b"{}", NOW), mismatch);
        assert_eq!(verify(b"k", "POST", "/v1/sites/b/reservations", &ts, &sig, b"{}", NOW), mismatch);
        assert_eq!(verify(b"k", "POST", "/v1/sites/a/reservations", &ts, &sig, b"{ }", NOW), mismatch);
        let other_ts = (NOW + 1).to_string();
        assert_eq!(verify(b"k", "POST", "/v1/sites/a/reservations", &other_ts, &sig, b"{}", NOW), mismatch);
    }

    #[test]
    fn stale_or_malformed_signatures_are_refused() {
        let sig = sign(b"k", "GET", "/x", NOW, b"");
        let ts = NOW.to_string();
        assert_eq!(verify(b"k", "GET", "/x", &ts, &sig, b"", NOW + 301), Err(SignatureError::OutsideClockWindow));
        assert_eq!(verify(b"k", "GET", "/x", &ts, &sig, b"", NOW - 301), Err(SignatureError::OutsideClockWindow));
        assert_eq!(verify(b"k", "GET", "/x", "soon", &sig, b"", NOW), Err(SignatureError::Malformed));
        assert_eq!(verify(b"k", "GET", "/x", &ts, "v2=00", b"", NOW), Err(SignatureError::Malformed));
        assert_eq!(verify(b"k", "GET", "/x", &ts, "v1=zz", b"", NOW), Err(SignatureError::Malformed));
    }
}
