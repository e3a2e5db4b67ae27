//! The cluster key file: made by `nlb keygen`, read by `nlb run`.
//!
//! # Format
//!
//! `nlb keygen` writes 32 bytes from the kernel's random source (`/dev/urandom`, which
//! blocks until the kernel's generator is seeded) as 64 lowercase hexadecimal digits and
//! a newline, in a file of mode 0600. Hex text survives copying between hosts (`scp`,
//! configuration management, a clipboard) without losing a byte.
//!
//! When the daemon reads a key file, a file of hexadecimal digits only (with trailing
//! whitespace ignored) is decoded, and any other file is taken byte for byte, so that a
//! key made with `head -c 32 /dev/urandom > FILE` still works. Either way the secret must
//! be at least [`MIN_SECRET_BYTES`] bytes. The heartbeat key is derived from the secret
//! ([`HeartbeatKey::derive`]); the hex and the raw form of the same 32 bytes give the same
//! key.
//!
//! # What the daemon refuses
//!
//! - a key file that group or others may read, write or execute (the fix is
//!   `chmod 600 FILE`): anyone who can read it can forge heartbeats;
//! - a key file owned by someone other than root or the daemon's own user (the fix is
//!   `chown root FILE`): its owner could replace the key;
//! - something other than a regular file, an empty file, or a secret shorter than
//!   [`MIN_SECRET_BYTES`] (the fix is `nlb keygen --out FILE --force`).

use crate::CliError;
use nlb_core::config::Config;
use nlb_wire::heartbeat::HeartbeatKey;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How many random bytes `nlb keygen` writes.
pub(crate) const KEY_BYTES: usize = 32;
/// The shortest secret the daemon accepts.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// `KEY_BYTES` fresh random bytes from the kernel.
pub(crate) fn random_secret() -> io::Result<[u8; KEY_BYTES]> {
    let mut secret = [0u8; KEY_BYTES];
    File::open("/dev/urandom")?.read_exact(&mut secret)?;
    Ok(secret)
}

/// The key file's text for `secret`: lowercase hex and a newline.
pub(crate) fn encode(secret: &[u8]) -> String {
    let mut text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    text
}

/// The secret in a key file's contents: decoded hex, or the bytes as they are.
pub(crate) fn decode(contents: &[u8]) -> Vec<u8> {
    let trimmed = contents.trim_ascii_end();
    let is_hex = !trimmed.is_empty()
        && trimmed.len().is_multiple_of(2)
        && trimmed.iter().all(u8::is_ascii_hexdigit);
    if !is_hex {
        return contents.to_vec();
    }
    trimmed
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            digit(pair[0]) << 4 | digit(pair[1])
        })
        .collect()
}

/// Writes a new key file at `path` (mode 0600) holding [`encode`]`(secret)`, atomically:
/// the key is written and synced under a temporary name created with `O_CREAT|O_EXCL`
/// and mode 0600 in the same directory, then linked to `path` (which fails if `path`
/// exists) or, with `force`, renamed over it. Nobody ever sees a partial key, or a key
/// with a wider mode.
pub(crate) fn write_new(path: &Path, secret: &[u8], force: bool) -> Result<(), CliError> {
    let shown = path.display();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        CliError::bad_input(format!(
            "{shown} is not a file name; give the key file's path, such as /etc/nlb/cluster.key"
        ))
    })?;
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(CliError::bad_input(format!(
            "{shown} already exists; keep it (every host needs the same key), or pass --force \
             to replace it (then copy the new key to every host)"
        )));
    }
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|err| {
            CliError::failed(format!(
                "cannot create the directory {}: {err}; create it, or choose another --out",
                dir.display()
            ))
        })?;
    }
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        // The umask can only narrow 0600, but say it outright.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(encode(secret).as_bytes())?;
        file.sync_all()?;
        if force {
            std::fs::rename(&temp, path)?;
        } else {
            std::fs::hard_link(&temp, path)?;
            std::fs::remove_file(&temp)?;
        }
        File::open(&dir)?.sync_all()
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(if err.kind() == io::ErrorKind::AlreadyExists {
            CliError::bad_input(format!(
                "{shown} already exists; keep it, or pass --force to replace it"
            ))
        } else {
            CliError::failed(format!(
                "cannot write the key file {shown}: {err}; check that {} is writable (run as \
                 root for /etc/nlb)",
                dir.display()
            ))
        });
    }
    Ok(())
}

/// Reads and checks the cluster key file (see the module docs for what is refused).
pub(crate) fn read(path: &Path) -> Result<HeartbeatKey, CliError> {
    let shown = path.display();
    // One open file for the checks and the read, so that what is checked is what is read.
    // O_NONBLOCK: a FIFO at the path must not hang the daemon (it is refused below).
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| {
            CliError::bad_input(format!(
                "cannot read the cluster key {shown}: {err}. Make one with `nlb keygen --out \
             {shown}` and copy it to every host, or fix cluster.key_file"
            ))
        })?;
    let metadata = file.metadata().map_err(|err| {
        CliError::failed(format!("cannot inspect the cluster key {shown}: {err}"))
    })?;
    if !metadata.is_file() {
        return Err(CliError::bad_input(format!(
            "the cluster key {shown} is not a regular file; point cluster.key_file at the file \
             `nlb keygen` wrote"
        )));
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CliError::bad_input(format!(
            "the cluster key {shown} has mode {mode:04o}: group or others may use it, and \
             whoever can read it can forge heartbeats. Fix: chmod 600 {shown}"
        )));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if metadata.uid() != 0 && metadata.uid() != euid {
        return Err(CliError::bad_input(format!(
            "the cluster key {shown} belongs to uid {}, who could replace it. Fix: chown \
             root {shown}",
            metadata.uid()
        )));
    }
    let mut contents = Vec::new();
    file.read_to_end(&mut contents).map_err(|err| {
        CliError::bad_input(format!(
            "cannot read the cluster key {shown}: {err}; run the daemon as root"
        ))
    })?;
    let secret = decode(&contents);
    if secret.len() < MIN_SECRET_BYTES {
        let what = if contents.is_empty() {
            "is empty".to_owned()
        } else {
            format!(
                "holds a {}-byte secret, fewer than {MIN_SECRET_BYTES}",
                secret.len()
            )
        };
        return Err(CliError::bad_input(format!(
            "the cluster key {shown} {what}. Fix: `nlb keygen --out {shown} --force`, then \
             copy it to every host"
        )));
    }
    Ok(HeartbeatKey::derive(&secret))
}

/// The warning a keyless daemon logs at start, if `config` runs without a key.
pub(crate) fn keyless_warning(config: &Config) -> Option<&'static str> {
    config.cluster.key_file.is_none().then_some(
        "heartbeats are not authenticated (cluster.insecure_no_key = true): anyone on the \
         segment can forge them, take buckets or stop the cluster. Make a key with `nlb \
         keygen`, copy it to every host and set cluster.key_file",
    )
}

/// Logs [`keyless_warning`], for the daemon to call once at start, after logging is set
/// up.
pub(crate) fn warn_if_keyless(config: &Config) {
    if let Some(warning) = keyless_warning(config) {
        tracing::warn!(event = "nlb.insecure_no_key", "{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &Path, contents: &[u8], mode: u32) -> PathBuf {
        let path = dir.join("cluster.key");
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn hex_and_raw_forms_of_one_secret_give_one_key() {
        let secret = random_secret().unwrap();
        assert_ne!(secret, [0; KEY_BYTES]);
        assert_eq!(decode(encode(&secret).as_bytes()), secret);
        assert_eq!(decode(&secret), secret);
        assert_eq!(
            decode(b"ABCDEF0123456789\r\n"),
            b"\xab\xcd\xef\x01\x23\x45\x67\x89"
        );
        // Odd length or other characters: bytes as they are.
        assert_eq!(decode(b"abc"), b"abc");
        assert_eq!(decode(b"cluster secret\n"), b"cluster secret\n");
    }

    #[test]
    fn write_new_is_0600_and_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cluster.key");
        write_new(&path, &[7; KEY_BYTES], false).unwrap();
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "07".repeat(32) + "\n"
        );
        let err = write_new(&path, &[8; KEY_BYTES], false).unwrap_err();
        assert!(err.message().contains("--force"), "{}", err.message());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "07".repeat(32) + "\n"
        );
        write_new(&path, &[8; KEY_BYTES], true).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "08".repeat(32) + "\n"
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cluster.key")]);
        read(&path).unwrap();
    }

    #[test]
    fn read_refuses_wide_modes_short_and_empty_keys() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode(&[9; KEY_BYTES]);
        for mode in [0o640, 0o604, 0o620, 0o602, 0o644, 0o666, 0o610] {
            let path = key_file(dir.path(), good.as_bytes(), mode);
            let err = read(&path).unwrap_err();
            assert!(
                err.message()
                    .contains(&format!("chmod 600 {}", path.display())),
                "{mode:o}: {}",
                err.message()
            );
        }
        for mode in [0o600, 0o400] {
            read(&key_file(dir.path(), good.as_bytes(), mode)).unwrap();
        }
        let err = read(&key_file(dir.path(), b"", 0o600)).unwrap_err();
        assert!(err.message().contains("is empty"), "{}", err.message());
        assert!(err.message().contains("nlb keygen"), "{}", err.message());
        let err = read(&key_file(dir.path(), b"cluster secret", 0o600)).unwrap_err();
        assert!(
            err.message().contains("14-byte secret"),
            "{}",
            err.message()
        );
        let err = read(&key_file(dir.path(), "ab".repeat(31).as_bytes(), 0o600)).unwrap_err();
        assert!(
            err.message().contains("31-byte secret"),
            "{}",
            err.message()
        );
        let err = read(&dir.path().join("missing.key")).unwrap_err();
        assert!(err.message().contains("nlb keygen"), "{}", err.message());
        let err = read(dir.path()).unwrap_err();
        assert!(
            err.message().contains("not a regular file"),
            "{}",
            err.message()
        );
        // A FIFO is refused at once, not waited on.
        let fifo = dir.path().join("fifo.key");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = read(&fifo).unwrap_err();
        assert!(
            err.message().contains("not a regular file"),
            "{}",
            err.message()
        );
        // Raw bytes still work when there are enough of them.
        read(&key_file(dir.path(), &[0xff; 32], 0o600)).unwrap();
    }

    #[test]
    fn keyless_configurations_get_the_warning() {
        let text =
            "[cluster]\ninterface = \"eth0\"\nvips = [\"198.18.0.10\"]\n{}\n[host]\nid = 1\n";
        let keyless =
            Config::parse_secure(&text.replace("{}", "insecure_no_key = true"), "t").unwrap();
        assert!(keyless_warning(&keyless).unwrap().contains("nlb keygen"));
        let keyed = Config::parse_secure(&text.replace("{}", "key_file = \"/k\""), "t").unwrap();
        assert_eq!(keyless_warning(&keyed), None);
    }
}
