//! `nlb ip2mac` as a user runs it: the binary, its stdout, stderr and exit code.

use std::process::{Command, Output};

fn nlb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nlb"))
        .args(args)
        .output()
        .expect("run nlb")
}

#[test]
fn json_gives_seed_000_values() {
    let out = nlb(&["ip2mac", "192.168.128.111", "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "ip": "192.168.128.111",
            "unicast": "02:bf:c0:a8:80:6f",
            "multicast": "03:bf:c0:a8:80:6f",
            "igmp": "01:00:5e:7f:80:6f",
            "igmp_group": "239.255.128.111",
        })
    );
}

#[test]
fn text_lists_every_mode_with_a_switch_note() {
    let out = nlb(&["ip2mac", "192.168.20.100"]);
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
}

#[test]
fn bad_addresses_fail_with_one_line() {
    for bad in ["300.1.1.1", "abc", "1.2.3", ""] {
        let out = nlb(&["ip2mac", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(out.stdout.is_empty(), "{bad}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{bad}: {stderr}");
        assert!(stderr.contains("is not an IPv4 address"), "{bad}: {stderr}");
    }
}

#[test]
fn completions_and_man_pages_come_from_the_cli() {
    let bash = nlb(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = String::from_utf8(bash.stdout).unwrap();
    assert!(
        script.contains("drainstop") && script.contains("ip2mac"),
        "{script}"
    );
    let man = nlb(&["man"]);
    assert!(man.status.success());
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(
        page.starts_with(".ie") && page.contains("Network Load Balancing"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = nlb(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    assert!(dir.path().join("nlb-drainstop.1").exists());
}
