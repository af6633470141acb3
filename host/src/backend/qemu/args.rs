//! The qemu-system command line for a hutch VM.
//!
//! Shape (verified under TCG on the project's CI machine): q35 without the
//! legacy devices, no default devices, memory in a shareable memfd (required
//! by vhost-user), vsock (kernel or vhost-user), the workspace over virtio-fs
//! or 9p, the serial console to a file, QMP on a Unix socket for a clean stop.

use std::ffi::OsString;
use std::path::Path;

use super::accel::Accel;
use super::image::GuestImage;
use super::vsock::{self, Device};
use crate::net::link::addresses as link;

/// The mount tag (virtio-fs or 9p) under which the guest finds the workspace.
pub const WORKSPACE_TAG: &str = "hutch-ws";
/// The QMP socket's file name in the VM folder.
pub const QMP_SOCKET: &str = "qmp.sock";
/// The serial console log's file name in the VM folder.
pub const CONSOLE_LOG: &str = "console.log";

/// Everything that varies between VMs.
pub struct Machine<'a> {
    /// The accelerator.
    pub accel: Accel,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// The VM's own copy of its image.
    pub image: &'a GuestImage,
    /// The VM's state folder.
    pub vm_dir: &'a Path,
    /// The vsock device.
    pub vsock: &'a Device,
    /// The host folder shared into the guest, and how.
    pub workspace: Option<Workspace<'a>>,
    /// The host's TSC rate: under TCG the guest TSC runs at it, and telling
    /// the kernel saves its calibration (~0.7 s of boot).
    pub tsc_khz: Option<u64>,
    /// Disk images: the VM's overlay (virtio-blk) and, for images whose own
    /// init runs sshd, the host port on 127.0.0.1 forwarded to the guest's
    /// SSH server (user-mode network, restricted: no egress).
    pub disk: Option<DiskAttachment<'a>>,
    /// Appended to the image's kernel command line (`hutch.uid=…` for hutch's init).
    pub cmdline_extra: String,
}

/// How the workspace reaches the guest.
pub enum Workspace<'a> {
    /// virtio-fs, through virtiofsd listening on this socket.
    Virtiofs {
        /// virtiofsd's vhost-user socket.
        socket: &'a Path,
    },
    /// QEMU's own 9p server, on this host folder.
    NineP {
        /// The host folder.
        path: &'a Path,
    },
}

/// The root disk of a disk-image VM and its network.
pub struct DiskAttachment<'a> {
    /// The VM's qcow2 overlay.
    pub overlay: &'a Path,
    /// Host port forwarded to the guest's port 22, with a network device to
    /// carry it; `None`: no network device (hutch's init).
    pub ssh_port: Option<u16>,
}

impl Machine<'_> {
    /// The arguments after the program name.
    pub fn args(&self) -> Vec<OsString> {
        let dir = self.vm_dir;
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        let mem = format!("memory-backend-memfd,id=mem,size={}M,share=on", self.memory_mib);
        push(&["-accel", self.accel.as_str(), "-machine", "q35,memory-backend=mem,sata=off,smbus=off"]);
        push(&["-cpu", if self.accel == Accel::Kvm { "host" } else { "max" }]);
        push(&["-smp", &self.cpus.to_string(), "-m", &format!("{}M", self.memory_mib), "-object", &mem]);
        push(&["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]);
        // The host's entropy for the guest kernel's RNG, from its first
        // moments and at every reseed (each VM boots its own kernel, so no
        // two share an RNG state; this keeps even an early one unpredictable).
        push(&["-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0"]);
        match self.vsock {
            Device::Kernel { cid } => push(&["-device", &format!("vhost-vsock-pci,guest-cid={cid}")]),
            Device::UserSpace => {
                let chardev = format!("socket,id=vsock0,path={}", dir.join(vsock::VHOST_SOCKET).display());
                push(&["-chardev", &chardev, "-device", "vhost-user-vsock-pci,chardev=vsock0"]);
            }
        }
        // The link to the network process's proxy (crate::net::link): QEMU
        // listens, the network process connects when it starts (again after
        // a restart). host_mtu lets the guest's driver take 64 KiB frames.
        // Only under hutch's init: a disk image with a network of its own
        // (ssh_port) runs its own network set-up, which could wait for an
        // address on the link that nobody hands out.
        if self.disk.as_ref().is_none_or(|d| d.ssh_port.is_none()) {
            let netdev = format!(
                "stream,id=link0,server=on,addr.type=unix,addr.path={}",
                escape_commas(&dir.join(link::SOCKET).display().to_string())
            );
            let nic = format!("virtio-net-pci,netdev=link0,mac={},host_mtu={}", link::GUEST_MAC, link::MTU);
            push(&["-netdev", &netdev, "-device", &nic]);
        }
        match self.workspace {
            Some(Workspace::Virtiofs { socket }) => {
                let chardev = format!("socket,id=ws0,path={}", escape_commas(&socket.display().to_string()));
                // 1024 entries, as virtiofsd's README advises (QEMU's default is 128).
                push(&["-chardev", &chardev, "-device", &format!("vhost-user-fs-pci,queue-size=1024,chardev=ws0,tag={WORKSPACE_TAG}")]);
            }
            Some(Workspace::NineP { path }) => {
                let fsdev = format!("local,id=ws0,path={},security_model=none", escape_commas(&path.display().to_string()));
                push(&["-fsdev", &fsdev, "-device", &format!("virtio-9p-pci,fsdev=ws0,mount_tag={WORKSPACE_TAG}")]);
            }
            None => {}
        }
        if let Some(disk) = &self.disk {
            let drive = format!("file={},if=none,id=disk0,format=qcow2,discard=unmap", escape_commas(&disk.overlay.display().to_string()));
            push(&["-drive", &drive, "-device", "virtio-blk-pci,drive=disk0"]);
            if let Some(port) = disk.ssh_port {
                // restrict=on: the guest reaches nothing through this NIC (no
                // route to the host or beyond); only the forwarded SSH port
                // comes in. Its way out is the agent's egress pipe to hutch's proxy.
                let net = format!("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22");
                push(&["-netdev", &net, "-device", "virtio-net-pci,netdev=net0"]);
            }
        }
        push(&["-serial", &format!("file:{}", dir.join(CONSOLE_LOG).display())]);
        push(&["-qmp", &format!("unix:{},server=on,wait=off", dir.join(QMP_SOCKET).display())]);
        let kernel = self.image.kernel();
        let initrd = self.image.initrd();
        push(&["-kernel", &kernel.display().to_string(), "-initrd", &initrd.display().to_string()]);
        let mut cmdline = self.image.spec.cmdline.clone();
        if let Some(khz) = self.tsc_khz {
            cmdline.push_str(&format!(" tsc_early_khz={khz}"));
        }
        if !self.cmdline_extra.is_empty() {
            cmdline.push(' ');
            cmdline.push_str(&self.cmdline_extra);
        }
        push(&["-append", &cmdline]);
        args
    }
}

/// QEMU option values separate keys with commas; a literal comma is doubled.
fn escape_commas(s: &str) -> String {
    s.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::qemu::image::ImageSpec;

    #[test]
    fn command_line_has_the_verified_shape() {
        let image = GuestImage {
            dir: "/vm/image".into(),
            spec: ImageSpec {
                format: 1,
                kernel: "vmlinuz".into(),
                initrd: "initramfs.cpio".into(),
                cmdline: "console=ttyS0".into(),
                agent_port: 8080,
                disk: None,
                init: Default::default(),
            },
        };
        let machine = Machine {
            accel: Accel::Tcg,
            cpus: 2,
            memory_mib: 512,
            image: &image,
            vm_dir: Path::new("/vm"),
            vsock: &Device::UserSpace,
            workspace: Some(Workspace::NineP { path: Path::new("/home/me/a,b") }),
            tsc_khz: None,
            disk: None,
            cmdline_extra: String::new(),
        };
        let args: Vec<String> = machine.args().into_iter().map(|a| a.into_string().unwrap()).collect();
        let joined = args.join(" ");
        assert!(joined.contains("-accel tcg"));
        assert!(joined.contains("memory-backend-memfd,id=mem,size=512M,share=on"));
        assert!(joined.contains("-device vhost-user-vsock-pci,chardev=vsock0"));
        assert!(joined.contains("path=/home/me/a,,b,security_model=none"));
        assert!(joined.contains("-serial file:/vm/console.log"));
        assert!(joined.contains("-object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0"), "{joined}");
        assert_eq!(args.last().unwrap(), "console=ttyS0");
        assert!(!joined.contains("-drive") && !joined.contains("-netdev user"));
        let link = "-netdev stream,id=link0,server=on,addr.type=unix,addr.path=/vm/link.sock \
                    -device virtio-net-pci,netdev=link0,mac=52:54:00:68:75:01,host_mtu=65520";
        assert!(joined.contains(link), "{joined}");

        assert!(joined.contains("-device virtio-9p-pci,fsdev=ws0,mount_tag=hutch-ws"));
        assert!(!joined.contains("vhost-user-fs"));

        let socket = Path::new("/vm/virtiofs.sock");
        let overlay = Path::new("/vm/disk.qcow2");
        let joined = |m: &Machine| m.args().into_iter().map(|a| a.into_string().unwrap()).collect::<Vec<_>>().join(" ");
        let machine = Machine {
            disk: Some(DiskAttachment { overlay, ssh_port: Some(40022) }),
            workspace: Some(Workspace::Virtiofs { socket }),
            ..machine
        };
        let with_ssh = joined(&machine);
        assert!(
            with_ssh.contains(
                "-chardev socket,id=ws0,path=/vm/virtiofs.sock -device vhost-user-fs-pci,queue-size=1024,chardev=ws0,tag=hutch-ws"
            )
        );
        assert!(!with_ssh.contains("-fsdev"));
        assert!(with_ssh.contains("-drive file=/vm/disk.qcow2,if=none,id=disk0,format=qcow2"), "{with_ssh}");
        assert!(with_ssh.contains("-device virtio-blk-pci,drive=disk0"));
        assert!(with_ssh.contains("-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22 -device virtio-net-pci,netdev=net0"));
        assert!(!with_ssh.contains("link0"), "{with_ssh}");
        // hutch's init: the disk, the link as its only network device, the host's ids for the guest user.
        let machine = Machine { disk: Some(DiskAttachment { overlay, ssh_port: None }), cmdline_extra: "hutch.uid=1000".into(), ..machine };
        let hutch_init = joined(&machine);
        assert!(hutch_init.contains("-device virtio-blk-pci,drive=disk0") && !hutch_init.contains("-netdev user"), "{hutch_init}");
        assert!(hutch_init.contains(link), "{hutch_init}");
        assert!(hutch_init.ends_with("console=ttyS0 hutch.uid=1000"), "{hutch_init}");
    }
}
