//! A Debian root file system as an ext4 disk image, built without root where
//! the machine allows it: the one builder behind `cargo xtask image` (the
//! default guest) and `cargo xtask base-image` (the systemd base that
//! `hutch image prepare` is tested with).
//!
//! `mmdebstrap` installs the packages into a folder and runs the recipe's
//! script in it (chrooted, as root, with the network), then `mke2fs -d` makes
//! the ext4 image from the folder without mounting anything. How it gets the
//! right to create root-owned files, in order of preference:
//!
//! - **unshare** (not root): mmdebstrap's user-namespace mode; the folder is
//!   owned by the user's subordinate ids, so `mke2fs` runs in the same
//!   namespace (`mmdebstrap --unshare-helper`), where they read as root. Needs
//!   `newuidmap` (uidmap) and an `/etc/subuid` + `/etc/subgid` range;
//! - **root**: run as root, mmdebstrap chroots directly;
//! - **sudo**: not root and no namespaces, but passwordless `sudo -n`.
//!
//! Otherwise the build stops before doing anything and says which of those to
//! set up. The folder lives under `$TMPDIR` (mode 0755): the namespace's root
//! is another user and must be able to reach it, which a home folder of mode
//! 0700 would forbid.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::workspace::Result;

/// Where the recipe's files are uploaded inside the root file system while it
/// is built (removed before the image is made).
pub const BUILD_DIR: &str = "/tmp/hutch-build";

/// The Debian mirror, `HUTCH_DEBIAN_MIRROR` overriding Debian's CDN.
pub fn mirror() -> String {
    std::env::var("HUTCH_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

/// What goes into an image.
pub struct Recipe {
    /// Debian release (`bookworm`).
    pub suite: String,
    /// mmdebstrap's package set (`minbase`).
    pub variant: String,
    /// Packages on top of the variant.
    pub include: Vec<String>,
    /// Also take packages from `SUITE-updates` and `SUITE-security`.
    pub updates: bool,
    /// Files put into the image before any package is installed, so apt and
    /// dpkg see them (apt preferences): (absolute path in the image, contents).
    pub setup_files: Vec<(String, Vec<u8>)>,
    /// Files copied to [`BUILD_DIR`] before the script runs: (name there, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// Files of the build machine copied there too, which do not decide what
    /// the image holds (not part of the key): (name there, path here).
    pub build_files: Vec<(String, PathBuf)>,
    /// A POSIX shell script run as root in the chroot once the packages are in
    /// (`set -eu`; the network works; [`BUILD_DIR`] holds `files`).
    pub script: String,
    /// The file system's size in bytes (a sparse file: only used blocks take space).
    pub size: u64,
    /// The file system's label.
    pub label: String,
}

impl Recipe {
    /// A short hex key of everything that decides the image's contents, so a
    /// cached image is reused exactly when its recipe did not change.
    pub fn key(&self) -> String {
        let mut hash = Fnv::default();
        for part in [&self.suite, &self.variant, &self.script, &self.label, &mirror()] {
            hash.write(part.as_bytes());
        }
        hash.write(&self.size.to_le_bytes());
        hash.write(&[u8::from(self.updates)]);
        for package in &self.include {
            hash.write(package.as_bytes());
        }
        for (name, contents) in self.setup_files.iter().chain(&self.files) {
            hash.write(name.as_bytes());
            hash.write(contents);
        }
        format!("{:016x}", hash.0)
    }

    /// The apt sources: the suite, plus its updates and security suites.
    fn sources(&self) -> Vec<String> {
        let main = mirror();
        let mut sources = vec![format!("deb {main} {} main", self.suite)];
        if self.updates {
            sources.push(format!("deb {main} {}-updates main", self.suite));
            let security = std::env::var("HUTCH_DEBIAN_SECURITY_MIRROR").unwrap_or_else(|_| main.replace("/debian", "/debian-security"));
            sources.push(format!("deb {security} {}-security main", self.suite));
        }
        sources
    }
}

/// FNV-1a, 64 bits: a stable cache key (not a security boundary).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        // The length first, so ("ab", "c") and ("a", "bc") differ.
        for &b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// How this machine lets mmdebstrap create root-owned files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// User namespaces with subordinate ids: no root at all.
    Unshare,
    /// Running as root.
    Root,
    /// Passwordless `sudo -n`.
    Sudo,
}

impl Privilege {
    /// Picks the first that works here, or says what to set up.
    pub fn detect() -> Result<Privilege> {
        let found = Command::new("mmdebstrap").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if found.is_err() {
            return Err("mmdebstrap is not installed: run scripts/install-deps (or `apt-get install mmdebstrap uidmap`)".into());
        }
        if nix::unistd::geteuid().is_root() {
            return Ok(Privilege::Root);
        }
        let unshare = Command::new("mmdebstrap").args(["--unshare-helper", "true"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if unshare.is_ok_and(|s| s.success()) {
            return Ok(Privilege::Unshare);
        }
        if Command::new("sudo").args(["-n", "true"]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
            return Ok(Privilege::Sudo);
        }
        let user = std::env::var("USER").unwrap_or_else(|_| "$USER".into());
        Err(format!(
            "building a Debian image needs one of: user namespaces with subordinate ids for {user} (without root: \
             `sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` and `apt-get install uidmap`; \
             on Ubuntu 24.04 and later also `sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0`), \
             passwordless sudo, or running as root. `mmdebstrap --unshare-helper true` shows why namespaces fail."
        )
        .into())
    }

    /// mmdebstrap's `--mode`.
    fn mode(self) -> &'static str {
        match self {
            Privilege::Unshare => "unshare",
            Privilege::Root | Privilege::Sudo => "root",
        }
    }

    /// `program` with the rights to read and write the root file system's
    /// folder (inside the namespace for unshare).
    fn command(self, program: &str) -> Command {
        match self {
            Privilege::Root => Command::new(program),
            Privilege::Sudo => {
                let mut cmd = Command::new("sudo");
                cmd.args(["-n", program]);
                cmd
            }
            Privilege::Unshare => {
                let mut cmd = Command::new("mmdebstrap");
                cmd.args(["--unshare-helper", program]);
                cmd
            }
        }
    }
}

/// The temporary folder that holds the root file system while it is built,
/// removed (with the rights that created it) however the build ends.
struct Workdir {
    dir: tempfile::TempDir,
    privilege: Privilege,
}

impl Workdir {
    fn new(privilege: Privilege) -> Result<Workdir> {
        let dir = tempfile::Builder::new().prefix("hutch-rootfs-").tempdir_in(std::env::temp_dir())?;
        // The namespace's root (another uid) must reach the folder inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        Ok(Workdir { dir, privilege })
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let rootfs = self.rootfs();
        match self.privilege {
            Privilege::Root => {} // TempDir removes everything
            Privilege::Sudo if rootfs.exists() => {
                let _ = self.privilege.command("rm").arg("-rf").arg(&rootfs).status();
            }
            // The namespace's root may empty the folder but not remove it
            // from ours; TempDir removes the empty folder and the rest.
            Privilege::Unshare if rootfs.exists() => {
                let _ = self.privilege.command("find").arg(&rootfs).args(["-mindepth", "1", "-delete"]).status();
            }
            Privilege::Sudo | Privilege::Unshare => {}
        }
    }
}

/// Builds `recipe` into the raw ext4 image `out` (replaced at the end, so a
/// failed build leaves the previous one as it was).
pub fn build(recipe: &Recipe, out: &Path) -> Result<()> {
    let privilege = Privilege::detect()?;
    let work = Workdir::new(privilege)?;
    std::fs::create_dir(work.files())?;
    let mut hooks: Vec<OsString> = Vec::new();
    for (name, contents) in &recipe.files {
        let path = work.files().join(name);
        std::fs::write(&path, contents)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    for (name, from) in &recipe.build_files {
        let path = work.files().join(name);
        std::fs::copy(from, &path).map_err(|e| format!("{}: {e}", from.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    for (i, (path, contents)) in recipe.setup_files.iter().enumerate() {
        let local = work.files().join(format!("setup-{i}"));
        std::fs::write(&local, contents)?;
        std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o644))?;
        let dir = Path::new(path).parent().ok_or_else(|| format!("setup file {path:?} has no folder"))?;
        hooks.push(format!("--setup-hook=mkdir -p \"$1{}\"", dir.display()).into());
        hooks.push(format!("--setup-hook=upload {} {path}", local.display()).into());
    }
    let script = work.files().join("customize.sh");
    std::fs::write(&script, &recipe.script)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644))?;
    hooks.push(format!("--customize-hook=mkdir -p \"$1{BUILD_DIR}\"").into());
    let names = recipe.files.iter().map(|(name, _)| name).chain(recipe.build_files.iter().map(|(name, _)| name));
    for name in names.map(String::as_str).chain(["customize.sh"]) {
        hooks.push(format!("--customize-hook=upload {} {BUILD_DIR}/{name}", work.files().join(name).display()).into());
    }
    hooks.push(format!("--customize-hook=chroot \"$1\" /bin/sh -eu {BUILD_DIR}/customize.sh").into());
    hooks.push(format!("--customize-hook=rm -rf \"$1{BUILD_DIR}\"").into());

    let started = std::time::Instant::now();
    eprintln!(
        "xtask: mmdebstrap {} ({}, {} mode) into {}: a few minutes",
        recipe.suite,
        recipe.variant,
        privilege.mode(),
        work.rootfs().display()
    );
    let mut cmd = match privilege {
        Privilege::Sudo => {
            let mut cmd = Command::new("sudo");
            cmd.args(["-n", "mmdebstrap"]);
            cmd
        }
        Privilege::Root | Privilege::Unshare => Command::new("mmdebstrap"),
    };
    cmd.arg(format!("--mode={}", privilege.mode()))
        .arg(format!("--variant={}", recipe.variant))
        .arg("--quiet")
        // dpkg's fsync of every file it unpacks is most of the time on a slow
        // disk (350 s → 125 s here), and a half-built folder is thrown away anyway.
        .arg("--dpkgopt=force-unsafe-io")
        .args((!recipe.include.is_empty()).then(|| format!("--include={}", recipe.include.join(","))))
        .args(&hooks)
        .arg(&recipe.suite)
        .arg(work.rootfs())
        .args(recipe.sources());
    run(&mut cmd, "mmdebstrap")?;
    eprintln!("xtask: packages in after {:.0?}; mke2fs -d → {}", started.elapsed(), out.display());
    make_ext4(privilege, &work.rootfs(), recipe, out)?;
    Ok(())
}

/// `mke2fs -d ROOTFS` into `out`, through a temporary file beside it.
fn make_ext4(privilege: Privilege, rootfs: &Path, recipe: &Recipe, out: &Path) -> Result<()> {
    let tmp = out.with_extension("img.tmp");
    let _ = std::fs::remove_file(&tmp);
    let file = std::fs::File::create(&tmp)?;
    file.set_len(recipe.size)?;
    let mut cmd = privilege.command(&sbin_tool("mke2fs")?);
    cmd.args(["-q", "-F", "-t", "ext4", "-L", &recipe.label, "-d"]).arg(rootfs);
    match privilege {
        Privilege::Unshare => {
            // The namespace's root cannot reach a file under the user's
            // (maybe private) home, so mke2fs writes through an inherited
            // descriptor; the file is writable by "others" only meanwhile.
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666))?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            cmd.arg("/dev/fd/3");
            // SAFETY: dup2 and fcntl are async-signal-safe; the closure touches nothing else.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    // dup2 onto itself would keep close-on-exec: clear it instead.
                    let done = if fd == 3 { nix::libc::fcntl(3, nix::libc::F_SETFD, 0) } else { nix::libc::dup2(fd, 3) };
                    if done < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Privilege::Root | Privilege::Sudo => {
            cmd.arg(&tmp);
        }
    }
    let result = run(&mut cmd, "mke2fs");
    drop(file);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if privilege == Privilege::Sudo {
        let me = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
        run(Command::new("sudo").args(["-n", "chown", &me]).arg(&tmp), "chown")?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}

/// A tool from e2fsprogs by its full path: /sbin is not in a user's PATH on Debian.
fn sbin_tool(name: &str) -> Result<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .ok_or_else(|| format!("{name} is not installed: run scripts/install-deps (or `apt-get install e2fsprogs`)").into())
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.stdin(Stdio::null()).status().map_err(|e| format!("{what}: {e}"))?;
    if !status.success() {
        return Err(format!("{what} failed ({status})").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> Recipe {
        Recipe {
            suite: "bookworm".into(),
            variant: "minbase".into(),
            include: vec!["git".into()],
            updates: true,
            setup_files: vec![("/etc/apt/preferences.d/x".into(), b"p".to_vec())],
            files: vec![("a".into(), b"1".to_vec())],
            build_files: Vec::new(),
            script: "true\n".into(),
            size: 1 << 30,
            label: "x".into(),
        }
    }

    /// A real build with whatever this machine allows (run it as root and as
    /// a user with subordinate ids to try both modes): the recipe's file and
    /// script end up in an ext4 image, owned by root.
    #[test]
    #[ignore = "downloads Debian's essential packages (a minute): `cargo test -p xtask -- --ignored`"]
    fn builds_a_small_image_with_the_privilege_this_machine_has() {
        let out = tempfile::tempdir().unwrap();
        let image = out.path().join("small.img");
        let recipe = Recipe {
            suite: "bookworm".into(),
            variant: "essential".into(),
            include: Vec::new(),
            updates: false,
            setup_files: vec![("/etc/hutch-setup/early".into(), b"before the packages\n".to_vec())],
            files: vec![("hello".into(), b"hi from the recipe\n".to_vec())],
            build_files: Vec::new(),
            script: format!("cp {BUILD_DIR}/hello /etc/hutch-hello\necho \"script ran as $(id -u)\" >> /etc/hutch-hello\n"),
            size: 512 << 20,
            label: "small".into(),
        };
        build(&recipe, &image).unwrap();
        let debugfs = |request: &str| {
            let out = Command::new(sbin_tool("debugfs").unwrap()).args(["-R", request]).arg(&image).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(debugfs("cat /etc/hutch-hello"), "hi from the recipe\nscript ran as 0\n");
        assert_eq!(debugfs("cat /etc/hutch-setup/early"), "before the packages\n");
        assert!(debugfs("stat /etc/hutch-hello").contains("User:     0   Group:     0"), "{}", debugfs("stat /etc/hutch-hello"));
        assert!(!debugfs("ls /tmp").contains("hutch-build"), "the build's files were left in the image");
        assert_eq!(std::fs::metadata(&image).unwrap().len(), 512 << 20);
    }

    #[test]
    fn the_key_changes_with_every_part_of_the_recipe() {
        let base = recipe().key();
        assert_eq!(base, recipe().key());
        let changed = [
            Recipe { include: vec!["git".into(), "curl".into()], ..recipe() },
            Recipe { script: "false\n".into(), ..recipe() },
            Recipe { files: vec![("a".into(), b"2".to_vec())], ..recipe() },
            Recipe { setup_files: vec![("/etc/apt/preferences.d/x".into(), b"q".to_vec())], ..recipe() },
            Recipe { size: 2 << 30, ..recipe() },
            Recipe { updates: false, ..recipe() },
        ];
        for other in changed {
            assert_ne!(other.key(), base);
        }
    }
}
