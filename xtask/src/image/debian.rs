//! The default guest: Debian 12 on a disk image, a real userland for coding
//! agents, booted by hutch's own init (the agent from the initramfs, as PID 1:
//! no systemd).
//!
//! Built by [`crate::rootfs`] (mmdebstrap, rootless where the machine allows)
//! from [`PACKAGES`], plus what the user's configuration adds (`[image]
//! packages` and `npm`, `hooks.setup`), and cached under
//! `target/hutch-image/disks/` by the recipe's key: a second build from the
//! same recipe is a no-op.
//!
//! Inside: the user `hutch` (uid/gid 1000 here; hutch's init gives it the
//! host user's ids at boot), passwordless sudo for it, Node.js from its
//! official binaries ([`super::node`]: Debian 12's is 18, end of life, and is
//! kept out), npm from npm's own release (Debian's npm package drags in ~330
//! others and took half the build), host name `hutch-guest`, no apt lists.
//!
//! The build runs on the build machine's network: the recipe's script and
//! the user's `hooks.setup` reach Debian's mirrors (apt's lists are there
//! until the end of the build, so a hook may `apt-get install`) and npm's
//! registry. The guest's own network is another matter (hutch's proxy).

use std::path::{Path, PathBuf};

use hutch::config::NodeVersion;

use super::node::{self, REGISTRY};
use crate::rootfs::{BUILD_DIR, Recipe};
use crate::workspace::{Result, target_dir};

/// Debian release.
pub const SUITE: &str = "bookworm";
/// What every default image has (on top of Debian's `minbase`).
pub const PACKAGES: &[&str] = &[
    "bash",
    "coreutils",
    "git",
    "curl",
    "ca-certificates",
    "openssh-client",
    "procps",
    "less",
    "python3",
    "python3-venv",
    "python3-pip",
    "build-essential",
    "sudo",
    "e2fsprogs",
    "iproute2",
    "netbase",
    "xz-utils",
    "unzip",
    "jq",
    "ripgrep",
    "patch",
];
/// npm's release, from npm's registry, and its published sha512 (npm 10
/// runs on every Node.js line from 18.17 on, so it does not follow `node`).
const NPM_VERSION: &str = "10.9.9";
const NPM_SHA512: &str =
    "d60fba8cb42f688b81e33c2f1cbef2ad7b977166700ec0ad057f1b6d60ea6ef2524abf673e20c35931cd8305d1dbb8887134d6eefdc0e7b8435bd458bf65b862";
/// The file system's size: each VM's disk is at least this big (sparse).
pub const SIZE: u64 = 20 << 30;
/// The unprivileged user commands run as (when the host user is not root).
pub const USER: &str = "hutch";
/// How many cached disks to keep (e.g. the user's and the e2e suite's).
const KEEP_DISKS: usize = 3;
/// The build machine's CA bundle: the build may reach npm's registry
/// through a TLS-inspecting proxy whose CA only that bundle has. Used while
/// building, never left in the image.
const BUILD_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What a user adds to the default image.
#[derive(Clone, Debug)]
pub struct Extras {
    /// The Node.js release (`[image] node`).
    pub node: NodeVersion,
    /// Debian packages.
    pub packages: Vec<String>,
    /// npm packages installed globally.
    pub npm: Vec<String>,
    /// A setup script run as root in the image (`hooks.setup`): its name, for
    /// messages, and its text.
    pub setup: Option<(PathBuf, String)>,
}

impl Extras {
    /// From the user's configuration (`~/.config/hutch/config.toml`).
    pub fn from_user_config() -> Result<Extras> {
        let config = hutch::config::Config::load_user()?;
        let setup = match config.setup_hook.value {
            Some(path) => {
                let path = hutch::config::expand_home(&path);
                let text = std::fs::read_to_string(&path).map_err(|e| format!("hooks.setup {}: {e}", path.display()))?;
                Some((path, text))
            }
            None => None,
        };
        let extras = Extras { node: config.image_node.value, packages: config.image_packages.value, npm: config.image_npm.value, setup };
        extras.check()?;
        Ok(extras)
    }

    /// What the end-to-end suite tests: a coding-agent CLI from npm, and a
    /// setup hook that installs a Debian package with apt and an npm
    /// package whose `engines` asks for Node.js 22 (npm refuses it on an
    /// older one: `--engine-strict`), when the image is built.
    pub fn e2e() -> Extras {
        Extras {
            node: NodeVersion::Major(node::DEFAULT_MAJOR),
            packages: Vec::new(),
            npm: vec!["@anthropic-ai/claude-code".into()],
            setup: Some(("e2e-setup.sh".into(), E2E_HOOK.to_owned())),
        }
    }

    /// Refuses what would put Debian's Node.js beside the image's own.
    fn check(&self) -> Result<()> {
        if let Some(package) = self.packages.iter().find(|p| node::DEBIAN_NODE.contains(&p.as_str())) {
            return Err(format!(
                "[image] packages names {package:?}: the default image has Node.js {} and npm from their official releases; \
                 choose Node's version with `[image] node` instead",
                self.node
            )
            .into());
        }
        Ok(())
    }
}

/// The end-to-end suite's setup hook (see [`Extras::e2e`]): apt from the
/// image's mirror, and a small CLI that needs Node.js 22 (`Array.fromAsync`,
/// `fs.globSync`, `require` of an ES module) packed and installed with npm.
const E2E_HOOK: &str = r#"echo "setup hook ran as $(id -un)" > /etc/hutch-e2e-setup
apt-get install -y --no-install-recommends hello
pkg=$(mktemp -d)
cat > "$pkg/package.json" <<'END'
{"name": "hutch-e2e-node22", "version": "1.0.0", "engines": {"node": ">=22"}, "bin": {"node22-check": "cli.js"}}
END
cat > "$pkg/sum.mjs" <<'END'
export const sum = async (numbers) => (await Array.fromAsync(numbers)).reduce((a, b) => a + b, 0);
END
cat > "$pkg/cli.js" <<'END'
#!/usr/bin/env node
// Counts the JSON files under the current folder and sums their "n" fields.
const fs = require("node:fs");
const { sum } = require("./sum.mjs");
const files = fs.globSync("**/*.json", { exclude: (name) => name === "node_modules" }).sort();
async function* numbers() { for (const f of files) yield JSON.parse(fs.readFileSync(f, "utf8")).n ?? 0; }
sum(numbers()).then((total) => console.log(`${files.length} files, n = ${total} (node ${process.versions.node})`));
END
tarball=$(cd /tmp && npm pack --silent "$pkg")
npm install --global --engine-strict --no-audit --no-fund "/tmp/$tarball"
rm -r "$pkg" "/tmp/$tarball"
"#;

/// The recipe for `extras`.
pub fn recipe(extras: &Extras) -> Recipe {
    let mut include: Vec<String> = PACKAGES.iter().map(|p| (*p).to_owned()).collect();
    let node_script = node::script(extras.node);
    include.extend(extras.packages.iter().filter(|p| !include.contains(p)).cloned().collect::<Vec<_>>());
    let mut files = Vec::new();
    let mut script = format!(
        r#"# hutch's default image: run as root in the chroot by `cargo xtask image`.
B={BUILD_DIR}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 HOME=/root
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Only while building: the build machine's CA bundle (see BUILD_CA in debian.rs).
export NODE_EXTRA_CA_CERTS=$B/ca.crt CURL_CA_BUNDLE=$B/ca.crt SSL_CERT_FILE=$B/ca.crt
export PIP_CERT=$B/ca.crt REQUESTS_CA_BUNDLE=$B/ca.crt npm_config_cafile=$B/ca.crt
echo hutch-guest > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\thutch-guest\n::1\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
groupadd --gid 1000 {USER}
useradd --uid 1000 --gid {USER} --create-home --shell /bin/bash --comment 'hutch guest user' {USER}
printf '{USER} ALL=(ALL:ALL) NOPASSWD: ALL\n' > /etc/sudoers.d/{USER}
chmod 0440 /etc/sudoers.d/{USER}
# Debian's Node.js stays out (the apt pin), and so none of it came in.
[ "$(apt-cache policy nodejs | awk '/Candidate:/ {{ print $2 }}')" = "(none)" ] || {{ echo "xtask: apt would install Debian's nodejs" >&2; exit 1; }}
{node_script}# npm's own release: no dependencies to fetch.
curl -fsSL -o $B/npm.tgz {REGISTRY}/npm/-/npm-{NPM_VERSION}.tgz
echo "{NPM_SHA512}  $B/npm.tgz" | sha512sum -c --quiet
mkdir -p /usr/local/lib/node_modules/npm
tar -xzf $B/npm.tgz -C /usr/local/lib/node_modules/npm --strip-components=1 --no-same-owner
# nodedir: native addons build against the image's own Node headers, not ones node-gyp would download.
printf 'prefix=/usr/local\nupdate-notifier=false\nfund=false\naudit=false\nnodedir=/usr/local\n' > /usr/local/lib/node_modules/npm/npmrc
ln -sf ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
ln -sf ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
rm $B/npm.tgz
echo "xtask: node $(node --version), npm $(npm --version)"
"#
    );
    if !extras.npm.is_empty() {
        let list: Vec<String> = extras.npm.iter().map(|p| shell_quote(p)).collect();
        script
            .push_str(&format!("echo 'xtask: npm install --global {0}'\nnpm install --global --no-audit --no-fund {0}\n", list.join(" ")));
    }
    if let Some((path, text)) = &extras.setup {
        files.push(("setup.sh".to_owned(), text.clone().into_bytes()));
        script.push_str(&format!(
            "echo {}\n(cd /root && sh -e $B/setup.sh)\n",
            shell_quote(&format!("xtask: hooks.setup {}", path.display()))
        ));
    }
    script.push_str(
        r#"# Leave nothing of the build behind.
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /root/.npm /root/.cache
find /tmp -mindepth 1 -maxdepth 1 ! -name hutch-build -exec rm -rf {} +
rm -f /etc/resolv.conf
"#,
    );
    Recipe {
        suite: SUITE.into(),
        variant: "minbase".into(),
        include,
        updates: true,
        setup_files: vec![("/etc/apt/preferences.d/hutch-node".into(), node::APT_PIN.as_bytes().to_vec())],
        files,
        build_files: vec![("ca.crt".into(), PathBuf::from(BUILD_CA))],
        script,
        size: SIZE,
        label: "hutch-root".into(),
    }
}

/// The disk for `extras`: the cached one when its recipe is unchanged (and
/// `rebuild` is false), else a new build. Returns its path.
pub fn disk(extras: &Extras, rebuild: bool) -> Result<PathBuf> {
    let recipe = recipe(extras);
    let dir = target_dir().join("hutch-image").join("disks");
    std::fs::create_dir_all(&dir)?;
    let disk = dir.join(format!("debian-{}.img", recipe.key()));
    if disk.is_file() && !rebuild {
        eprintln!("xtask: Debian disk {} is up to date (same recipe)", disk.display());
        touch(&disk);
        return Ok(disk);
    }
    let started = std::time::Instant::now();
    crate::rootfs::build(&recipe, &disk)?;
    eprintln!("xtask: Debian disk {} built in {:.0?}", disk.display(), started.elapsed());
    prune(&dir, &disk);
    Ok(disk)
}

/// Marks a cached disk as just used, so pruning keeps it.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Deletes all but the [`KEEP_DISKS`] most recently used disks.
fn prune(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut disks: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "img") && p != keep)
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    disks.sort();
    let excess = (disks.len() + 1).saturating_sub(KEEP_DISKS);
    for (_, old) in disks.into_iter().take(excess) {
        eprintln!("xtask: removing the older cached disk {}", old.display());
        let _ = std::fs::remove_file(old);
    }
}

/// `'text'` for sh, with embedded quotes escaped.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Extras {
        Extras { node: NodeVersion::Major(node::DEFAULT_MAJOR), packages: Vec::new(), npm: Vec::new(), setup: None }
    }

    #[test]
    fn extras_are_in_the_recipe_and_its_key() {
        let plain_recipe = recipe(&plain());
        let more = Extras { packages: vec!["tmux".into(), "git".into()], npm: vec!["@openai/codex".into(), "it's".into()], ..plain() };
        let with = recipe(&more);
        assert_ne!(plain_recipe.key(), with.key());
        assert_eq!(with.include.iter().filter(|p| *p == "git").count(), 1);
        assert!(with.include.contains(&"tmux".to_owned()));
        assert!(with.script.contains("npm install --global --no-audit --no-fund '@openai/codex' 'it'\\''s'"), "{}", with.script);
        let hook = Extras { setup: Some(("s.sh".into(), "touch /x\n".into())), ..plain() };
        let hooked = recipe(&hook);
        assert_eq!(hooked.files, [("setup.sh".to_owned(), b"touch /x\n".to_vec())]);
        assert_ne!(hooked.key(), plain_recipe.key());
        let newer = recipe(&Extras { node: NodeVersion::Major(24), ..plain() });
        assert_ne!(newer.key(), plain_recipe.key());
        assert!(newer.script.contains("--arg want 24 "), "{}", newer.script);
    }

    #[test]
    fn debians_nodejs_is_kept_out() {
        let recipe = recipe(&plain());
        assert!(!recipe.include.iter().any(|p| node::DEBIAN_NODE.contains(&p.as_str())), "{:?}", recipe.include);
        assert_eq!(recipe.setup_files, [("/etc/apt/preferences.d/hutch-node".to_owned(), node::APT_PIN.as_bytes().to_vec())]);
        let err = Extras { packages: vec!["tmux".into(), "nodejs".into()], ..plain() }.check().unwrap_err().to_string();
        assert!(err.contains("\"nodejs\"") && err.contains("[image] node"), "{err}");
        assert!(Extras { packages: vec!["tmux".into()], ..plain() }.check().is_ok());
    }
}
