//! The JSON report: the [`Report`] as serde writes it (the timeline is left out).

use super::Report;
use std::io::Write;

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
        self.write_json(&mut json)
            .expect("a report always serialises");
        String::from_utf8(json).expect("serde_json writes UTF-8")
    }

    /// Pretty JSON, the same as [`to_json`](Self::to_json), written to `out` as it is
    /// made: a report of many findings is tens of megabytes that need never be in
    /// memory at once. `out` should be buffered; only its errors are returned.
    pub fn write_json(&self, out: impl Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(out, self).map_err(std::io::Error::from)
    }
}
