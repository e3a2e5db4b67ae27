//! The last events of the daemon, kept for the status page.
//!
//! A [`tracing`] layer copies every event that carries an `event` field (the daemon's
//! named events: `nlb.joined`, `nlb.stalled`, `nlb.check_down`, …) into a ring of the
//! last [`KEPT`] entries. The daemon rate-limits what a flood can log, so the ring holds
//! what an operator wants to see, not one line per hostile frame; and its size is fixed,
//! so no input can grow it. Each field is cut to [`FIELD_LEN`] bytes.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// Entries kept.
pub(crate) const KEPT: usize = 64;
/// Longest text kept per field, in bytes.
pub(crate) const FIELD_LEN: usize = 200;

/// One event, as the status page shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Event {
    /// Unix time, in seconds.
    pub at: f64,
    /// `error`, `warn`, `info`, ….
    pub level: String,
    /// The `event` field: `nlb.joined`.
    pub name: String,
    /// The other fields, `key=value` separated by spaces, as the text log has them.
    pub fields: String,
}

/// The ring the layer writes and the status page reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventLog(Arc<Mutex<VecDeque<Event>>>);

impl EventLog {
    /// The kept events, oldest first.
    pub(crate) fn recent(&self) -> Vec<Event> {
        self.0
            .lock()
            .map(|ring| ring.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn push(&self, event: Event) {
        if let Ok(mut ring) = self.0.lock() {
            if ring.len() == KEPT {
                ring.pop_front();
            }
            ring.push_back(event);
        }
    }

    /// A layer that fills this log.
    pub(crate) fn layer(&self) -> EventLayer {
        EventLayer(self.clone())
    }
}

/// The [`tracing_subscriber::Layer`] of an [`EventLog`].
pub(crate) struct EventLayer(EventLog);

#[derive(Default)]
struct Fields {
    name: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "event" {
            self.name = Some(cut(value.to_string()));
        } else {
            self.add(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "event" {
            self.name = Some(cut(text.trim_matches('"').to_string()));
        } else {
            self.add(field, &text);
        }
    }
}

impl Fields {
    fn add(&mut self, field: &Field, value: &str) {
        if self.rest.len() >= 4 * FIELD_LEN {
            return;
        }
        if !self.rest.is_empty() {
            self.rest.push(' ');
        }
        let _ = write!(self.rest, "{}={}", field.name(), cut(value.to_string()));
    }
}

fn cut(mut text: String) -> String {
    if text.len() > FIELD_LEN {
        let mut end = FIELD_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EventLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(name) = fields.name else {
            return;
        };
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        self.0.push(Event {
            at,
            level: event.metadata().level().as_str().to_ascii_lowercase(),
            name,
            fields: fields.rest,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_named_events_only_the_last_few_and_cut() {
        let log = EventLog::default();
        let subscriber = tracing_subscriber::registry().with(log.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("no event field: not kept");
            for i in 0..KEPT + 10 {
                tracing::warn!(event = "nlb.test", i, peer = "x".repeat(1000));
            }
            tracing::error!(event = "nlb.last", reason = %"bad tag");
        });
        let recent = log.recent();
        assert_eq!(recent.len(), KEPT);
        let last = recent.last().unwrap();
        assert_eq!(
            (last.name.as_str(), last.level.as_str()),
            ("nlb.last", "error")
        );
        assert_eq!(last.fields, "reason=bad tag");
        let first = &recent[0];
        assert!(
            first.fields.starts_with("i=11 peer=xxx"),
            "{}",
            first.fields
        );
        assert!(first.fields.len() < 3 * FIELD_LEN, "{}", first.fields.len());
    }
}
