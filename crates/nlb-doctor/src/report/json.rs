//! The JSON report: the [`Report`] as serde writes it (the timeline is left out).

use super::Report;

/// Bytes of pretty JSON a finding takes besides its message and advice, about: its
/// fields, and up to 16 MACs and 16 askers in its details.
const FINDING_JSON: usize = 2048;

impl Report {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Sized once: a report of many findings is tens of megabytes, and growing it by
        // doubling copies it about twice over.
        let size: usize = self
            .findings
            .iter()
            .map(|f| f.message.len() + f.advice.len() + FINDING_JSON)
            .sum();
        let mut json = Vec::with_capacity(size + 4096);
        serde_json::to_writer_pretty(&mut json, self).expect("a report always serialises");
        String::from_utf8(json).expect("serde_json writes UTF-8")
    }
}
