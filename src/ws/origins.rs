//! The browser-origin allowlist, shared by CORS and the WebSocket handshake, so a
//! hostile page cannot ride a user's browser into the hub.

use std::collections::HashSet;

/// Origins allowed to use the hub from a browser.
#[derive(Debug, Clone)]
pub struct Origins {
    any: bool,
    allowed: HashSet<String>,
}

impl Origins {
    /// From the configured list; `*` allows every origin.
    pub fn new(list: &[String]) -> Self {
        let allowed: HashSet<String> = list
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        Origins {
            any: allowed.contains("*"),
            allowed,
        }
    }

    /// Whether a request carrying this `Origin` header may proceed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        if self.any {
            return true;
        }
        std::str::from_utf8(origin)
            .map(|o| {
                self.allowed
                    .contains(&o.trim_end_matches('/').to_ascii_lowercase())
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_only() {
        let o = Origins::new(&["http://localhost:8080".into()]);
        assert!(o.allows(b"http://localhost:8080"));
        assert!(o.allows(b"HTTP://LOCALHOST:8080"));
        assert!(!o.allows(b"http://localhost:8081"));
        assert!(!o.allows(b"http://evil.example"));
        assert!(!o.allows(b"null"));
    }

    #[test]
    fn star_allows_all() {
        assert!(Origins::new(&["*".into()]).allows(b"http://x"));
    }
}
