//! A VM's disk size (`--disk`, `disk = "…"`) as each VM manager takes it,
//! and the one refusal every backend gives for a size it cannot honour: a
//! disk is only ever grown from its base's size, never shrunk (QEMU's
//! overlay, `tart set --disk-size` and Lima's `disk:` all refuse that).

use crate::backend::BackendError;

/// Bytes in one of Tart's gigabytes (Tart counts in decimal units).
const TART_GB: u64 = 1_000_000_000;

/// `--disk SIZE` for Tart: `tart set --disk-size` takes whole decimal
/// gigabytes, at most 65535; a size between two is rounded up, so the guest
/// never gets less than asked for.
pub fn tart_gigabytes(bytes: u64) -> Result<u16, BackendError> {
    let gb = bytes.div_ceil(TART_GB);
    u16::try_from(gb).map_err(|_| {
        BackendError::DiskSize(format!("a disk of {} is more than Tart takes (`tart set --disk-size` goes up to 65535 GB)", human(bytes)))
    })
}

/// `--disk SIZE` for Lima's `disk:` field: binary units, as Lima writes
/// them (`"20GiB"`), or plain bytes when the size is no whole number of MiB.
pub fn lima_size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{}GiB", bytes / GIB)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{}MiB", bytes / MIB)
    } else {
        bytes.to_string()
    }
}

/// The refusal of a disk smaller than its base's: `base` is what the image
/// has, `asked` what the user asked for.
pub fn smaller_than_base(what: &str, base: u64, asked: u64) -> BackendError {
    BackendError::DiskSize(format!(
        "{what} has a disk of {} and a VM's disk can only be as big or bigger, not {}: ask for at least {} \
         (--disk, `disk` in the configuration), or leave it out to keep the image's size",
        human(base),
        human(asked),
        human(base)
    ))
}

/// A size for people, in GiB (`20 GiB`, `1.5 GiB`), or MiB below one GiB.
pub fn human(bytes: u64) -> String {
    let gib = bytes as f64 / f64::from(1u32 << 30);
    if gib < 1.0 {
        let mib = bytes as f64 / f64::from(1u32 << 20);
        return if mib.fract() == 0.0 { format!("{mib:.0} MiB") } else { format!("{mib:.1} MiB") };
    }
    if gib.fract() == 0.0 { format!("{gib:.0} GiB") } else { format!("{gib:.1} GiB") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tart_rounds_up_to_whole_gigabytes_and_has_a_ceiling() {
        assert_eq!(tart_gigabytes(50_000_000_000).unwrap(), 50);
        assert_eq!(tart_gigabytes(20 << 30).unwrap(), 22, "20 GiB is 21.47 GB");
        assert_eq!(tart_gigabytes(1).unwrap(), 1);
        let err = tart_gigabytes(65_536 * TART_GB).unwrap_err().to_string();
        assert!(err.contains("65535 GB"), "{err}");
    }

    #[test]
    fn lima_sizes_read_as_lima_writes_them() {
        assert_eq!(lima_size(20 << 30), "20GiB");
        assert_eq!(lima_size(1536 << 20), "1536MiB");
        assert_eq!(lima_size(512 << 20), "512MiB");
        assert_eq!(lima_size(1000), "1000");
    }

    #[test]
    fn the_refusal_names_both_sizes() {
        let err = smaller_than_base("base", 100 << 30, 20 << 30).to_string();
        assert!(err.starts_with("base has a disk of 100 GiB") && err.contains("not 20 GiB") && err.contains("at least 100 GiB"), "{err}");
        assert_eq!(human(1536 << 20), "1.5 GiB");
        assert_eq!(human(512 << 20), "512 MiB");
    }
}
