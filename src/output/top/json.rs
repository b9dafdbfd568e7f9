//! `hvprof top`'s JSON rendering: one object per frame, one line each (`--format json`).

use super::frame::TopFrame;

/// Renders a frame as one line of JSON (no trailing newline).
pub fn render_json(f: &TopFrame) -> String {
    serde_json::to_string(f).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::top::fixtures::two_frames;

    #[test]
    fn a_frame_is_one_line_of_json() {
        let line = render_json(&two_frames().1);
        assert!(!line.contains('\n'), "{line}");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["frame"], 2);
        assert_eq!(json["vms"][0]["pid"], 10);
        assert_eq!(json["vms"][0]["state"], "running");
        assert_eq!(json["vms"][0]["vcpus"].as_array().map(Vec::len), Some(2));
    }
}
