//! The live status page, served next to `/metrics`: `/` (the page), `/status.js`,
//! `/status.css` and `/status.json` (what the page draws).
//!
//! Self-contained: the three assets are compiled into the binary, so the page works on a
//! network with no way out, and the page loads nothing from elsewhere (its
//! Content-Security-Policy forbids it). The script sets every value as text, never as
//! HTML: member MACs, check errors and event fields come from the network or the checked
//! service.

/// The page.
pub(crate) const PAGE: &str = include_str!("page.html");
/// Its script.
pub(crate) const SCRIPT: &str = include_str!("status.js");
/// Its style.
pub(crate) const STYLE: &str = include_str!("status.css");

/// What the page may load: its own script, style and data, nothing else.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Whether a request for the page or its data names this host by an IP address or as
/// `localhost` (with or without a port). A page elsewhere in an operator's browser could
/// otherwise read `/status.json` through DNS rebinding (a name it controls, pointed at
/// this listener): the browser sends that name as `Host`. `/metrics` is not held to this,
/// so that Prometheus may scrape by name.
pub(crate) fn host_allowed(host: Option<&hyper::header::HeaderValue>) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// The asset at `path`, with its content type, if it is one of the page's.
pub(crate) fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", PAGE)),
        "/status.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "/status.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}

/// What the page draws: the status `nlb query --json` gives, each rule's bucket owners,
/// and the recent events.
pub(crate) fn status_json(
    snapshot: &crate::control::Snapshot,
    events: &[crate::events::Event],
) -> serde_json::Value {
    let node = &snapshot.node;
    let config = node.config();
    let mut status =
        serde_json::to_value(crate::control::Status::of_snapshot(snapshot)).unwrap_or_default();
    let rules: Vec<serde_json::Value> = (0..=config.rules.len())
        .filter_map(|slot| Some((slot, nlb_core::filter::RuleRef::from_slot(config, slot)?)))
        .map(|(slot, rule)| {
            let spec = rule.rule(config);
            let label = match rule {
                nlb_core::filter::RuleRef::Configured(index) => {
                    let vip = spec
                        .vip
                        .map_or("all VIPs".to_owned(), |vip| vip.to_string());
                    let (first, last) = (spec.ports.start(), spec.ports.end());
                    let ports = if first == last {
                        first.to_string()
                    } else {
                        format!("{first}-{last}")
                    };
                    format!("rule {}: {vip} port {ports} {:?}", index + 1, spec.protocol)
                        .to_lowercase()
                }
                nlb_core::filter::RuleRef::Fallback => "fallback rule".to_owned(),
            };
            serde_json::json!({
                "label": label,
                "mode": spec.mode,
                "affinity": spec.affinity,
                "owners": node.bucket_owners(slot),
            })
        })
        .collect();
    if let Some(object) = status.as_object_mut() {
        object.insert("rules".into(), rules.into());
        object.insert(
            "events".into(),
            serde_json::to_value(events).unwrap_or_default(),
        );
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_and_localhost_may_name_the_page() {
        let allowed =
            |host: &str| host_allowed(Some(&hyper::header::HeaderValue::from_str(host).unwrap()));
        for host in [
            "127.0.0.1:9102",
            "198.18.0.1",
            "[2001:db8::1]:9102",
            "localhost:9102",
            "LOCALHOST",
        ] {
            assert!(allowed(host), "{host}");
        }
        for host in ["attacker.example:9102", "127.0.0.1.example", "x"] {
            assert!(!allowed(host), "{host}");
        }
        assert!(!host_allowed(None));
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for (tag, attr) in [("script", "src"), ("link", "href")] {
            for part in PAGE.split(&format!("<{tag} ")).skip(1) {
                let value = part
                    .split(&format!("{attr}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_else(|| panic!("a <{tag}> without {attr}"));
                assert!(
                    asset(value).is_some(),
                    "<{tag} {attr}={value:?}> is not served"
                );
            }
        }
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        assert!(!SCRIPT.contains("innerHTML"), "data must be set as text");
    }
}
