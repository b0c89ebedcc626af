//! The booking page's files, embedded in the worker: `/` (pick a site), `/s/{site}` (the same
//! page, opened on that site) and its script and style sheet. No framework and no CDN: the page
//! must work where nothing outside the machine is reachable.

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFile {
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

/// The page loads only its own files and talks only to this origin, so event data can never
/// run as code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The HTML of both `/` and `/s/{site}`: the script reads the site from the path.
pub const BOOKING_HTML: PageFile =
    PageFile { content_type: "text/html; charset=utf-8", body: include_str!("../assets/booking.html") };

/// The page's script and style sheet, by path.
pub fn asset(path: &str) -> Option<PageFile> {
    match path {
        "/assets/booking.js" => Some(PageFile {
            content_type: "text/javascript; charset=utf-8",
            body: include_str!("../assets/booking.js"),
        }),
        "/assets/booking.css" => {
            Some(PageFile { content_type: "text/css; charset=utf-8", body: include_str!("../assets/booking.css") })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_files_the_worker_serves() {
        for path in ["/assets/booking.js", "/assets/booking.css"] {
            assert!(BOOKING_HTML.body.contains(path), "{path} is linked from the page");
            assert!(asset(path).is_some(), "{path} is served");
        }
        assert_eq!(asset("/assets/other.js"), None);
    }

    #[test]
    fn nothing_inline_that_the_policy_would_block() {
        assert!(!BOOKING_HTML.body.contains("<style"), "no inline style sheet");
        assert!(!BOOKING_HTML.body.contains("style="), "no inline style attribute");
        assert!(!BOOKING_HTML.body.contains(" onclick"), "no inline handlers");
        assert_eq!(BOOKING_HTML.body.matches("<script").count(), 1, "one script, from a file");
    }
}
