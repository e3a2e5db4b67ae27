//! The `nft -i` session confirms each command, and reports a refused one, so a failed
//! lease refresh or ownership change is seen; commands that start with `delete`, or
//! change nothing, are confirmed too (with `--echo` they printed no `# new generation`).

use nlb_linux::netns::{NetNs, require_root, unique_name};
use nlb_linux::nft::{NftSession, SessionError};
use std::time::Duration;

#[test]
fn session_confirms_and_refuses() {
    if !require_root("session_confirms_and_refuses") {
        return;
    }
    let ns = NetNs::create(&unique_name("nlbs")).unwrap();
    ns.nft("table inet t {\n\tset lease {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t}\n}\n")
        .unwrap();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter_current_thread().unwrap();
                let mut session = NftSession::start().unwrap();
                let refresh = "add element inet t lease { 198.18.0.10 timeout 1s expires 1s }\n";
                for _ in 0..3 {
                    session.run(refresh, Duration::from_secs(2)).unwrap();
                }
                let gone = "add element inet gone lease { 198.18.0.10 timeout 1s }\n";
                let err = session.run(gone, Duration::from_secs(2)).unwrap_err();
                assert!(matches!(err, SessionError::Refused { .. }), "{err}");
                assert!(err.to_string().contains("No such file"), "{err}");
                // The session goes on after a refusal.
                session.run(refresh, Duration::from_secs(2)).unwrap();
                let delete = "delete element inet t lease { 198.18.0.10 }\n";
                session.run(delete, Duration::from_secs(2)).unwrap();
                // Deleting it again: refused, and nothing else of the line commits.
                let twice = "add element inet t lease { 198.18.0.11 timeout 1s }; delete element inet t lease { 198.18.0.10 }\n";
                let err = session.run(twice, Duration::from_secs(2)).unwrap_err();
                assert!(matches!(err, SessionError::Refused { .. }), "{err}");
                session.run(refresh, Duration::from_secs(2)).unwrap();
                // Re-adding what is there changes nothing and prints nothing.
                let same = "add element inet t lease { 198.18.0.10 }\n";
                session.run(same, Duration::from_secs(2)).unwrap();
            })
            .join()
            .unwrap();
    });
    let listed = ns
        .exec("nft", &["list", "set", "inet", "t", "lease"], None)
        .unwrap();
    assert!(listed.contains("198.18.0.10"), "{listed}");
    assert!(!listed.contains("198.18.0.11"), "rolled back: {listed}");
}

/// A session whose `nft` misbehaves is never taken to have committed: it dies, hangs,
/// says nothing, or echoes the marker without refusing it (an nft that would accept
/// `nlbsync<N>`, or anything else than the nft 1.0.6 the protocol was checked on).
#[test]
fn a_misbehaving_nft_never_confirms() {
    let dir = std::env::temp_dir().join(format!("nlb-fake-nft-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let command = "add element inet t lease { 198.18.0.10 timeout 1s }\n";
    let timeout = Duration::from_millis(300);
    let cases = [
        ("exits", fake("exits", "exit 0"), "died"),
        ("hangs", fake("hangs", "sleep 5"), "did not confirm"),
        (
            "silent",
            fake("silent", "cat >/dev/null"),
            "did not confirm",
        ),
        (
            "no-marker-error",
            fake(
                "no-marker-error",
                "while read -r line; do case \"$line\" in nlbsync*) echo \"$line\" >&2;; esac; done",
            ),
            "without its syntax error",
        ),
    ];
    for (name, program, expected) in cases {
        let mut session = NftSession::start_program(&program).unwrap();
        let err = session.run(command, timeout).unwrap_err();
        assert!(
            !matches!(err, SessionError::Refused { .. }) && err.to_string().contains(expected),
            "{name}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
