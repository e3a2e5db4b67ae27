//! 48-bit IEEE 802 MAC addresses.
//!
//! Displayed lowercase and colon-separated (`02:bf:c0:a8:80:6f`), the form `ip neigh`
//! and tcpdump print. Parsing also takes the dash form Windows prints (`02-BF-C0-A8-80-6F`).

use std::fmt;
use std::str::FromStr;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`, the "unknown" target hardware address of ARP requests.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Group bit set: multicast or broadcast. A switch never learns such a source.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// All ones.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// All zeros.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// Locally administered bit set (`x2`, `x3`, `x6`, ... in the first octet).
    pub const fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMacError(String);

impl fmt::Display for ParseMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a MAC address: expected six hex octets such as 02:bf:c0:a8:80:6f",
            self.0
        )
    }
}

impl std::error::Error for ParseMacError {}

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_owned());
        let separator = if s.contains('-') { '-' } else { ':' };
        let mut octets = [0u8; 6];
        let mut parts = s.split(separator);
        for octet in &mut octets {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(octets))
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_colon_separated() {
        let mac = MacAddr([0x02, 0xBF, 0xC0, 0xA8, 0x80, 0x6F]);
        assert_eq!(mac.to_string(), "02:bf:c0:a8:80:6f");
    }

    #[test]
    fn parses_colon_and_windows_dash_forms() {
        let want = MacAddr([0x03, 0xbf, 0xc0, 0xa8, 0x14, 0x64]);
        assert_eq!("03:bf:c0:a8:14:64".parse::<MacAddr>().unwrap(), want);
        assert_eq!("03-BF-C0-A8-14-64".parse::<MacAddr>().unwrap(), want);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "02:bf",
            "02:bf:c0:a8:80:6f:00",
            "0g:00:00:00:00:00",
            "002:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn group_and_local_bits() {
        assert!(MacAddr([0x03, 0xbf, 0, 0, 0, 0]).is_multicast());
        assert!(!MacAddr([0x02, 0xbf, 0, 0, 0, 0]).is_multicast());
        assert!(MacAddr([0x02, 0xbf, 0, 0, 0, 0]).is_locally_administered());
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
    }
}
