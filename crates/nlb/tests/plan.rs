//! `nlb plan` as a user runs it.

use std::io::Write;
use std::process::{Command, Output};

fn nlb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nlb"))
        .args(args)
        .output()
        .expect("run nlb")
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

const CONFIG: &str = "[cluster]\ninterface = \"eth0\"\nvips = [\"198.18.0.10\"]\ninsecure_no_key = true\n[host]\nid = 1\n";

#[test]
fn remove_moves_exactly_the_departed_share() {
    let file = config_file(CONFIG);
    let path = file.path().to_str().unwrap();
    let out = nlb(&[
        "plan",
        "--config",
        path,
        "--members",
        "1,2,3",
        "--remove",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rule = &plan["rules"][0];
    assert_eq!(rule["before"]["2"], 85);
    assert_eq!(rule["moved"], rule["ideal_moved"]);
    assert_eq!(rule["after"], serde_json::json!({"1": 128, "3": 128}));
}

#[test]
fn add_with_weights_takes_a_proportional_share() {
    let file = config_file(CONFIG);
    let path = file.path().to_str().unwrap();
    let out = nlb(&[
        "plan",
        "--config",
        path,
        "--members",
        "1,2",
        "--add",
        "3",
        "--weight",
        "3=50",
        "--json",
    ]);
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rule = &plan["rules"][0];
    // Weights 100, 100, 50: host 3 gets a fifth of 256, rounded.
    assert_eq!(rule["after"]["3"], 51);
    assert_eq!(rule["moved"], 51);
    assert_eq!(rule["ideal_moved"], 51);
    let text = nlb(&["plan", "--config", path, "--members", "1,2", "--add", "3"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("moved 85 buckets (ideal 85)"), "{text}");
}

#[test]
fn config_errors_name_file_line_and_key() {
    let file = config_file(&CONFIG.replace("id = 1", "id = 1\nweigth = 3"));
    let path = file.path().to_str().unwrap();
    let out = nlb(&["plan", "--config", path, "--members", "1,2"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("{path}:7:1: host.weigth: unknown field")),
        "{stderr}"
    );
    assert!(
        stderr.contains("Fix: remove the key or correct its spelling"),
        "{stderr}"
    );
}

#[test]
fn bad_member_lists_are_refused() {
    let file = config_file(CONFIG);
    let path = file.path().to_str().unwrap();
    for (args, expect) in [
        (vec!["--members", "1,99"], "not a host id"),
        (vec!["--members", "1,1"], "twice"),
        (
            vec!["--members", "1,2", "--remove", "3"],
            "not in --members",
        ),
        (
            vec!["--members", "1,2", "--add", "2"],
            "already in --members",
        ),
        (vec!["--members", "1,2", "--weight", "2"], "not N=W"),
    ] {
        let mut full = vec!["plan", "--config", path];
        full.extend(args);
        let out = nlb(&full);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(expect), "{stderr}");
    }
}

#[test]
fn params_shows_the_defaults_filled_in() {
    let file = config_file(CONFIG);
    let path = file.path().to_str().unwrap();
    let text = nlb(&["params", "--config", path]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    for want in [
        "mode = multicast",
        "heartbeat_ms = 10",
        "tolerance = 15  # a member is dead after 150 ms",
        "affinity = single",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let json = nlb(&["params", "--config", path, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["cluster"]["mode"], "multicast");
    assert_eq!(json["rules"][0]["protocol"], "both");
}
