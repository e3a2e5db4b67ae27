//! `nlb keygen` as a user runs it, and what the daemon says about the key files it reads.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn nlb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nlb"))
        .args(args)
        .output()
        .expect("run nlb")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn writes_32_random_bytes_as_hex_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nlb/cluster.key");
    let out = nlb(&["keygen", "--out", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("key_file = \"{}\"", path.display())));
    assert_eq!(mode(&path), 0o600);
    let contents = std::fs::read_to_string(&path).unwrap();
    let hex = contents.strip_suffix('\n').expect("ends with a newline");
    assert_eq!(hex.len(), 64, "{contents:?}");
    assert!(
        hex.bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    // The key is never printed.
    assert!(!text(&out.stdout).contains(hex));

    // Two keys differ.
    let other = dir.path().join("other.key");
    assert!(
        nlb(&["keygen", "--out", other.to_str().unwrap()])
            .status
            .success()
    );
    assert_ne!(std::fs::read_to_string(&other).unwrap(), contents);
}

#[test]
fn refuses_to_overwrite_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.key");
    let path_arg = path.to_str().unwrap();
    assert!(nlb(&["keygen", "--out", path_arg]).status.success());
    let first = std::fs::read_to_string(&path).unwrap();

    let out = nlb(&["keygen", "--out", path_arg]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

    // --force replaces it, and a file made too open before becomes 0600.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = nlb(&["keygen", "--out", path_arg, "--force", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"path": path_arg, "bytes": 32, "encoding": "hex", "mode": "0600"})
    );
    assert_ne!(std::fs::read_to_string(&path).unwrap(), first);
    assert_eq!(mode(&path), 0o600);
    // Nothing else is left in the directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn an_unwritable_place_is_an_error_with_a_fix() {
    let out = nlb(&["keygen", "--out", "/proc/nlb-test/cluster.key"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("nlb: cannot "), "{stderr}");
    assert!(stderr.contains("/proc/nlb-test"), "{stderr}");
}

/// Every command reads configurations the secure way: no key and no
/// `insecure_no_key = true` is refused with the file, line, key and both fixes.
#[test]
fn a_configuration_without_a_key_needs_the_explicit_setting() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nlb.toml");
    let base = "[cluster]\ninterface = \"eth0\"\nvips = [\"198.18.0.10\"]\n[host]\nid = 1\n";
    std::fs::write(&config, base).unwrap();
    let out = nlb(&["params", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:1:1: cluster.key_file: ", config.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("nlb keygen") && stderr.contains("insecure_no_key = true"),
        "{stderr}"
    );
    std::fs::write(
        &config,
        base.replace("[host]", "insecure_no_key = true\n[host]"),
    )
    .unwrap();
    let out = nlb(&["params", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The daemon checks the key file before it needs root or touches the network, so these
/// run anywhere: a key others can read is refused with `chmod 600`, a short one with
/// `nlb keygen`.
#[test]
fn the_daemon_refuses_open_or_short_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    let config = dir.path().join("nlb.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\ninterface = \"nlbtest-none0\"\nvips = [\"198.18.0.10\"]\nkey_file = \"{}\"\n[host]\nid = 1\ncontrol_socket = \"{}\"\n",
            key.display(),
            dir.path().join("s.sock").display()
        ),
    )
    .unwrap();
    let run = || {
        nlb(&[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--run-dir",
            dir.path().join("run").to_str().unwrap(),
        ])
    };
    assert!(
        nlb(&["keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = run();
    let stderr = text(&out.stderr);
    if !nix::unistd::geteuid().is_root() {
        // Without root the daemon stops at its root check first.
        assert!(stderr.contains("needs root"), "{stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("mode 0640") && stderr.contains(&format!("chmod 600 {}", key.display())),
        "{stderr}"
    );
    std::fs::write(&key, "0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("8-byte secret") && stderr.contains("nlb keygen"),
        "{stderr}"
    );
}
