//! A VM's machine id: what its guest finds in `/etc/machine-id`.
//!
//! Programs take `/etc/machine-id` for the identity of the machine they run
//! on (systemd, D-Bus, journald, telemetry that counts installations, tools
//! that derive keys or names from it). Two VMs made from one image must not
//! share it, so hutch gives each VM its own when the VM is created and hands
//! it to the guest on the kernel command line at every start.

use std::fmt;

use serde::{Deserialize, Serialize};

/// 128 random bits as 32 lowercase hex digits, never all zeros: the format
/// of `/etc/machine-id` (machine-id(5)).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MachineId(String);

/// Why a text is not a machine id.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a machine id (32 lowercase hex digits, not all zeros)")]
pub struct BadMachineId(String);

impl MachineId {
    /// A fresh random id.
    pub fn random() -> Result<MachineId, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        if bytes == [0; 16] {
            // Astronomically unlikely, and not a valid id: one bit set.
            bytes[15] = 1;
        }
        Ok(MachineId(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// Checks `text`.
    pub fn parse(text: &str) -> Result<MachineId, BadMachineId> {
        let hex = text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex && text.bytes().any(|b| b != b'0') { Ok(MachineId(text.to_owned())) } else { Err(BadMachineId(text.to_owned())) }
    }

    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for MachineId {
    type Error = BadMachineId;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        MachineId::parse(&text)
    }
}

impl From<MachineId> for String {
    fn from(id: MachineId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_valid_and_differ() {
        let (a, b) = (MachineId::random().unwrap(), MachineId::random().unwrap());
        assert_ne!(a, b);
        assert_eq!(MachineId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn only_the_machine_id_format_parses() {
        assert!(MachineId::parse("0123456789abcdef0123456789abcdef").is_ok());
        for bad in
            ["", "0".repeat(32).as_str(), "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcde", "g".repeat(32).as_str()]
        {
            assert!(MachineId::parse(bad).is_err(), "{bad}");
        }
    }
}
