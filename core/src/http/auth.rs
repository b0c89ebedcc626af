//! Who may call the coordinator: the admin bearer token, the edge's HMAC signature, or anyone
//! in dev mode (no secret configured, loopback only; `main` refuses other addresses).

use allot_shared::{ProblemKind, signature};
use http::{HeaderMap, Method, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The credentials the coordinator accepts.
#[derive(Clone, Default)]
pub struct Auth {
    admin_token_digest: Option<[u8; 32]>,
    edge_secret: Option<std::sync::Arc<[u8]>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("admin_token", &self.admin_token_digest.is_some())
            .field("edge_secret", &self.edge_secret.is_some())
            .finish()
    }
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Only the admin bearer (capacity changes).
    Admin,
    /// The admin bearer or the edge's signature (public and client endpoints).
    Client,
}

/// Who is calling, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The admin bearer token.
    Admin,
    /// A request signed with the edge secret.
    Edge,
    /// Dev mode: no secrets configured.
    Dev,
}

impl Auth {
    /// Credentials from the configured secrets; empty strings count as unset.
    pub fn new(admin_token: Option<&str>, edge_secret: Option<&str>) -> Self {
        Self {
            admin_token_digest: admin_token.filter(|t| !t.is_empty()).map(|t| Sha256::digest(t.as_bytes()).into()),
            edge_secret: edge_secret.filter(|s| !s.is_empty()).map(|s| std::sync::Arc::from(s.as_bytes())),
        }
    }

    /// Dev mode: no secret at all, so every request is let in (loopback only).
    pub fn is_dev_mode(&self) -> bool {
        self.admin_token_digest.is_none() && self.edge_secret.is_none()
    }

    /// Checks a request's credentials for an endpoint that needs `need`.
    pub fn check(
        &self,
        need: Need,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now_seconds: u64,
    ) -> Result<Caller, ApiError> {
        if self.is_dev_mode() {
            return Ok(Caller::Dev);
        }
        let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        });
        if let Some(token) = bearer {
            let expected = self.admin_token_digest.ok_or_else(|| unauthorized("no admin token is configured"))?;
            let given: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
            return if bool::from(given.ct_eq(&expected)) {
                Ok(Caller::Admin)
            } else {
                Err(unauthorized("the bearer token is not valid"))
            };
        }
        let signature_header = headers.get(signature::SIGNATURE_HEADER);
        let timestamp_header = headers.get(signature::TIMESTAMP_HEADER);
        let (Some(signature_header), Some(timestamp_header)) = (signature_header, timestamp_header) else {
            return Err(unauthorized("credentials are required: an admin bearer token or the edge's signature"));
        };
        let secret = self.edge_secret.as_deref().ok_or_else(|| unauthorized("no edge secret is configured"))?;
        let (Ok(signature_value), Ok(timestamp_value)) = (signature_header.to_str(), timestamp_header.to_str()) else {
            return Err(unauthorized("signature headers must be ASCII"));
        };
        signature::verify(secret, method.as_str(), path_and_query, timestamp_value, signature_value, body, now_seconds)
            .map_err(|e| unauthorized(e.to_string()))?;
        match need {
            Need::Client => Ok(Caller::Edge),
            Need::Admin => Err(ApiError::new(ProblemKind::Forbidden, "the edge may not change capacity")),
        }
    }
}

fn unauthorized(detail: impl Into<String>) -> ApiError {
    ApiError::new(ProblemKind::Unauthorized, detail)
}
