//! The JSON report: the [`Report`] as serde writes it (the timeline is left out).

use super::Report;

impl Report {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }
}
