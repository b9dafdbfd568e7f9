//! JSON rendering of a [`Profile`] (schema in `docs/formats.md`).

use crate::report::Profile;

/// Renders the profile as pretty-printed JSON.
pub fn render(p: &Profile) -> String {
    serde_json::to_string_pretty(p)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}
