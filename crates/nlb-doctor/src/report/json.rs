//! The JSON report: the [`Report`] as serde writes it (the timeline is left out), pretty
//! printed exactly as `serde_json::to_writer_pretty` does.

use super::Report;
use serde::Serialize;
use serde_json::ser::Formatter;
use std::io::{self, Write};

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
    pub fn write_json(&self, out: impl Write) -> io::Result<()> {
        let mut serializer = serde_json::Serializer::with_formatter(out, Pretty::default());
        self.serialize(&mut serializer).map_err(io::Error::from)
    }
}

/// A comma, a line break and the indentation of 32 levels.
const BREAK: &[u8; 66] = b",\n                                                                ";

/// serde_json's `PrettyFormatter` (two spaces a level), byte for byte, but each line
/// break goes out with its comma and indentation in one write, not one a level: a sick
/// network's report has millions of lines.
#[derive(Default)]
struct Pretty {
    depth: usize,
    has_value: bool,
}

impl Pretty {
    /// A line break at the current depth, after a comma unless `first`.
    fn line<W: ?Sized + Write>(&self, out: &mut W, first: bool) -> io::Result<()> {
        let from = usize::from(first);
        match BREAK.get(from..2 + 2 * self.depth) {
            Some(bytes) => out.write_all(bytes),
            None => {
                out.write_all(&BREAK[from..2])?;
                (0..self.depth).try_for_each(|_| out.write_all(b"  "))
            }
        }
    }

    /// An array or object opens: one level deeper, nothing in it yet.
    fn begin<W: ?Sized + Write>(&mut self, out: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        out.write_all(bracket)
    }

    /// It closes: its last value ends a line before the bracket, unless it was empty.
    fn end<W: ?Sized + Write>(&mut self, out: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.line(out, true)?;
        }
        out.write_all(bracket)
    }
}

impl Formatter for Pretty {
    fn begin_array<W: ?Sized + Write>(&mut self, out: &mut W) -> io::Result<()> {
        self.begin(out, b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, out: &mut W) -> io::Result<()> {
        self.end(out, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, out: &mut W, first: bool) -> io::Result<()> {
        self.line(out, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _out: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, out: &mut W) -> io::Result<()> {
        self.begin(out, b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, out: &mut W) -> io::Result<()> {
        self.end(out, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, out: &mut W, first: bool) -> io::Result<()> {
        self.line(out, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, out: &mut W) -> io::Result<()> {
        out.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _out: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Pretty;
    use serde::Serialize;

    #[test]
    fn pretty_is_serde_json_pretty() {
        let deep = (0..40).fold(serde_json::json!([]), |inner, i| {
            serde_json::json!({"level": i, "empty": {}, "none": [], "inner": [inner, "x"]})
        });
        let mut ours = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(&mut ours, Pretty::default());
        deep.serialize(&mut serializer).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string_pretty(&deep).unwrap()
        );
    }
}
