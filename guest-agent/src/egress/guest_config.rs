//! What guest programs need to find the egress proxy and trust what the host
//! trusts: a CA bundle (the guest's own store plus the certificates the host
//! sends) and the variables pointing at it, and guest-wide configuration for
//! programs the agent does not start (login shells over SSH, services):
//! `/etc/environment`, `/etc/profile.d`, npm, git and pip.
//!
//! Files the guest owns are edited only inside a block between two marker
//! lines, replaced as a whole each time, so the rest of the file is left as
//! it was; pip's file, whose format does not allow a second `[global]`
//! section, is written only when it is absent or hutch's own.
//!
//! The certificates also go, as such a block, into the guest's system store
//! itself when that is a plain file (Debian's `ca-certificates.crt`), so
//! programs that read only the system store trust them too; PEM readers
//! skip the marker lines. A rebuilt store (`update-ca-certificates`) loses
//! the block until the network process starts again.
//!
//! None of this is a security boundary (the guest may change any of it); it
//! is what makes well-behaved programs work through the proxy.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Where a guest keeps its system trust store, by distribution family
/// (Debian/Ubuntu/Alpine, Fedora/RHEL, macOS and BSDs), relative to `/etc`.
const SYSTEM_STORES: &[&str] = &["ssl/certs/ca-certificates.crt", "pki/tls/certs/ca-bundle.crt", "ssl/cert.pem"];

/// The trust bundle's place under the configuration root.
const BUNDLE: &str = "hutch/ca-bundle.pem";

/// Variables that point common TLS stacks at a CA bundle: OpenSSL (curl,
/// wget, Python's `ssl`, git), Node.js (added to its own roots), Python
/// `requests`, curl, git and pip explicitly.
pub const CA_VARIABLES: &[&str] =
    &["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "PIP_CERT"];

/// First line of a block hutch manages inside a guest file.
const BEGIN: &str = ">>> hutch egress proxy (rewritten by hutch-agent) >>>";
/// Last line of that block.
const END: &str = "<<< hutch egress proxy <<<";

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The environment for every new process: the host's variables plus the
    /// CA variables.
    pub env: Vec<(String, String)>,
    /// Where the trust bundle is, if one was written.
    pub ca_bundle: Option<PathBuf>,
    /// Files written.
    pub configured: Vec<String>,
    /// What could not be done, and why.
    pub problems: Vec<String>,
}

/// Writes the trust bundle (when `ca_pem` is not empty) and the guest-wide
/// configuration under `etc` (the guest's `/etc`), falling back to `home`
/// for the bundle when `etc` is not writable (an agent not running as root).
pub fn apply(etc: &Path, home: Option<&Path>, host_env: &BTreeMap<String, String>, ca_pem: &[u8]) -> Applied {
    let mut applied = Applied { env: host_env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), ..Applied::default() };
    if let Some((store, result)) = add_to_system_store(etc, ca_pem) {
        match result {
            Ok(true) => applied.configured.push(store.display().to_string()),
            Ok(false) => {}
            Err(e) => applied.problems.push(format!("{}: {e}", store.display())),
        }
    }
    if !ca_pem.is_empty() {
        let bundle = bundle_text(etc, ca_pem);
        let mut places = vec![etc.join(BUNDLE)];
        places.extend(home.map(|h| h.join(".local/share").join(BUNDLE)));
        for place in places {
            match write_file(&place, &bundle, 0o644) {
                Ok(()) => {
                    applied.ca_bundle = Some(place);
                    break;
                }
                Err(e) => applied.problems.push(format!("{}: {e}", place.display())),
            }
        }
    }
    if let Some(bundle) = &applied.ca_bundle {
        let shown = bundle.display().to_string();
        applied.env.extend(CA_VARIABLES.iter().map(|var| ((*var).to_owned(), shown.clone())));
    }
    let env: BTreeMap<String, String> = applied.env.iter().cloned().collect();
    for (path, result) in configure(etc, &env, applied.ca_bundle.as_deref()) {
        match result {
            Ok(true) => applied.configured.push(path.display().to_string()),
            Ok(false) => {}
            Err(e) => applied.problems.push(format!("{}: {e}", path.display())),
        }
    }
    applied
}

/// Puts `ca_pem` into hutch's block of the guest's system store (an empty
/// `ca_pem` removes the block), when the store is a plain file: a symbolic
/// link means a tool manages it (Fedora's `update-ca-trust`, macOS), and it
/// is left alone (`Ok(false)`). `None` when the guest has no such store.
fn add_to_system_store(etc: &Path, ca_pem: &[u8]) -> Option<(PathBuf, io::Result<bool>)> {
    let store = SYSTEM_STORES.iter().map(|s| etc.join(s)).find(|p| p.exists())?;
    if !std::fs::symlink_metadata(&store).is_ok_and(|m| m.file_type().is_file()) {
        return Some((store, Ok(false)));
    }
    let lines: Vec<String> = String::from_utf8_lossy(ca_pem).lines().map(str::to_owned).collect();
    if lines.is_empty() && !std::fs::read_to_string(&store).is_ok_and(|text| text.contains(BEGIN)) {
        return Some((store, Ok(false)));
    }
    let result = match replace_block(&store, "#", &lines) {
        Ok(()) => Ok(!lines.is_empty()),
        // An agent not running as root: the bundle and the variables do it.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(false),
        Err(e) => Err(e),
    };
    Some((store, result))
}

/// The guest's own system store (when it has one, without hutch's block)
/// followed by `extra`.
fn bundle_text(etc: &Path, extra: &[u8]) -> Vec<u8> {
    let own = SYSTEM_STORES.iter().find_map(|store| std::fs::read(etc.join(store)).ok()).unwrap_or_default();
    let mut bundle = without_block(&String::from_utf8_lossy(&own), "#").into_bytes();
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(extra);
    bundle
}

/// Writes each guest-wide file; `Ok(false)` means "not applicable here".
fn configure(etc: &Path, env: &BTreeMap<String, String>, bundle: Option<&Path>) -> Vec<(PathBuf, io::Result<bool>)> {
    let proxy = env.get("HTTPS_PROXY").or_else(|| env.get("https_proxy"));
    let no_proxy = env.get("NO_PROXY").or_else(|| env.get("no_proxy"));
    let bundle = bundle.map(|b| b.display().to_string());
    let mut done = Vec::new();

    // pam_env's format: KEY=VALUE, no quoting rules worth trusting, so only
    // plain values (URLs, paths, placeholders) go there.
    let plain: Vec<String> = env
        .iter()
        .filter(|(_, v)| !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\'' && c != '\\'))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let path = etc.join("environment");
    done.push((path.clone(), replace_block(&path, "#", &plain).map(|()| true)));

    let profile = etc.join("profile.d");
    if profile.is_dir() {
        let exports: Vec<String> = env.iter().map(|(k, v)| format!("export {k}='{}'", v.replace('\'', r"'\''"))).collect();
        let path = profile.join("hutch-egress.sh");
        let text = format!("# {BEGIN}\n{}\n# {END}\n", exports.join("\n"));
        done.push((path.clone(), write_file(&path, text.as_bytes(), 0o644).map(|()| true)));
    }

    let mut npm = Vec::new();
    if let Some(proxy) = proxy {
        npm.extend([format!("proxy={proxy}"), format!("https-proxy={proxy}")]);
    }
    if let Some(no_proxy) = no_proxy {
        npm.push(format!("noproxy={no_proxy}"));
    }
    if let Some(bundle) = &bundle {
        npm.push(format!("cafile={bundle}"));
    }
    let path = etc.join("npmrc");
    done.push((path.clone(), replace_block(&path, "#", &npm).map(|()| true)));

    let mut git = Vec::new();
    if proxy.is_some() || bundle.is_some() {
        git.push("[http]".to_owned());
        git.extend(proxy.map(|p| format!("\tproxy = {p}")));
        git.extend(bundle.as_ref().map(|b| format!("\tsslCAInfo = {b}")));
    }
    let path = etc.join("gitconfig");
    done.push((path.clone(), replace_block(&path, "#", &git).map(|()| true)));

    let path = etc.join("pip.conf");
    let ours = std::fs::read_to_string(&path).map_or(true, |text| text.starts_with(&format!("# {BEGIN}")));
    if ours {
        let mut pip = vec!["[global]".to_owned()];
        pip.extend(proxy.map(|p| format!("proxy = {p}")));
        pip.extend(bundle.as_ref().map(|b| format!("cert = {b}")));
        let text = format!("# {BEGIN}\n{}\n# {END}\n", pip.join("\n"));
        done.push((path.clone(), write_file(&path, text.as_bytes(), 0o644).map(|()| true)));
    } else {
        done.push((path, Err(io::Error::other("has settings of its own: left alone (set `proxy` and `cert` there by hand)"))));
    }
    done
}

/// Puts `lines` (the routes' names) into hutch's block of `/etc/hosts`, or
/// removes the block when there are none; `Ok(None)` when there was nothing
/// to do.
pub fn hosts(etc: &Path, lines: &[String]) -> io::Result<Option<PathBuf>> {
    let path = etc.join("hosts");
    if lines.is_empty() && !std::fs::read_to_string(&path).is_ok_and(|text| text.contains(BEGIN)) {
        return Ok(None);
    }
    replace_block(&path, "#", lines).map(|()| Some(path))
}

/// Replaces hutch's block in `path` (created if missing) by `lines`; an empty
/// `lines` removes the block. Text outside the block is kept as it was.
fn replace_block(path: &Path, comment: &str, lines: &[String]) -> io::Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let (begin, end) = (format!("{comment} {BEGIN}"), format!("{comment} {END}"));
    let mut text = without_block(&old, comment);
    if !lines.is_empty() {
        text.push_str(&format!("{begin}\n{}\n{end}\n", lines.join("\n")));
    }
    if text == old {
        return Ok(());
    }
    write_file(path, text.as_bytes(), 0o644)
}

/// `text` without hutch's block (lines between the markers, commented with
/// `comment`), each kept line ending in a newline.
fn without_block(text: &str, comment: &str) -> String {
    let (begin, end) = (format!("{comment} {BEGIN}"), format!("{comment} {END}"));
    let mut kept = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line == begin {
            inside = true;
        } else if line == end && inside {
            inside = false;
        } else if !inside {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// Writes `path` whole (a temporary file renamed into place), creating its folder.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().ok_or_else(|| io::Error::other("no parent folder"))?;
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.hutch-{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    let written = file.write_all(contents).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("HTTPS_PROXY", "http://127.0.0.1:3128"), ("NO_PROXY", "localhost,127.0.0.1"), ("KEY", "hutch-placeholder-1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn the_bundle_is_the_guest_store_plus_the_host_certificates() {
        let etc = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(etc.path().join("ssl/certs")).unwrap();
        std::fs::write(etc.path().join("ssl/certs/ca-certificates.crt"), "GUEST STORE").unwrap();
        let applied = apply(etc.path(), None, &env(), b"HOST CA\n");
        let bundle = applied.ca_bundle.clone().unwrap();
        assert_eq!(std::fs::read_to_string(&bundle).unwrap(), "GUEST STORE\nHOST CA\n");
        let vars: BTreeMap<_, _> = applied.env.into_iter().collect();
        for var in CA_VARIABLES {
            assert_eq!(vars[*var], bundle.display().to_string());
        }
        assert_eq!(vars["KEY"], "hutch-placeholder-1");
        assert!(applied.problems.is_empty(), "{:?}", applied.problems);
        // The system store itself gets them too, in a block.
        let store = etc.path().join("ssl/certs/ca-certificates.crt");
        let with_block = format!("GUEST STORE\n# {BEGIN}\nHOST CA\n# {END}\n");
        assert_eq!(std::fs::read_to_string(&store).unwrap(), with_block);
        // A second call rewrites, never appends.
        apply(etc.path(), None, &env(), b"HOST CA\n");
        assert_eq!(std::fs::read_to_string(&bundle).unwrap(), "GUEST STORE\nHOST CA\n");
        assert_eq!(std::fs::read_to_string(&store).unwrap(), with_block);
        // No certificates: the store is the guest's own again.
        apply(etc.path(), None, &env(), b"");
        assert_eq!(std::fs::read_to_string(&store).unwrap(), "GUEST STORE\n");
    }

    #[test]
    fn a_system_store_behind_a_link_is_left_to_its_tool() {
        let etc = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(etc.path().join("pki/tls/certs")).unwrap();
        std::fs::write(etc.path().join("extracted.pem"), "MANAGED\n").unwrap();
        std::os::unix::fs::symlink(etc.path().join("extracted.pem"), etc.path().join("pki/tls/certs/ca-bundle.crt")).unwrap();
        let applied = apply(etc.path(), None, &env(), b"HOST CA\n");
        assert_eq!(std::fs::read_to_string(etc.path().join("extracted.pem")).unwrap(), "MANAGED\n");
        assert!(applied.problems.is_empty(), "{:?}", applied.problems);
        assert_eq!(std::fs::read_to_string(applied.ca_bundle.unwrap()).unwrap(), "MANAGED\nHOST CA\n");
    }

    #[test]
    fn guest_files_keep_their_own_lines_and_get_one_block() {
        let etc = tempfile::tempdir().unwrap();
        std::fs::write(etc.path().join("environment"), "LANG=C\n").unwrap();
        std::fs::write(etc.path().join("pip.conf"), "[global]\nindex-url = https://mirror\n").unwrap();
        let applied = apply(etc.path(), None, &env(), b"CA\n");
        apply(etc.path(), None, &env(), b"CA\n");
        let environment = std::fs::read_to_string(etc.path().join("environment")).unwrap();
        assert!(environment.starts_with("LANG=C\n# >>> hutch"), "{environment}");
        assert_eq!(environment.matches("HTTPS_PROXY=http://127.0.0.1:3128").count(), 1, "{environment}");
        assert!(environment.contains("SSL_CERT_FILE="), "{environment}");
        let npmrc = std::fs::read_to_string(etc.path().join("npmrc")).unwrap();
        assert!(npmrc.contains("https-proxy=http://127.0.0.1:3128\n") && npmrc.contains("cafile="), "{npmrc}");
        let git = std::fs::read_to_string(etc.path().join("gitconfig")).unwrap();
        assert!(git.contains("[http]\n\tproxy = http://127.0.0.1:3128\n\tsslCAInfo = "), "{git}");
        // The user's own pip.conf is left alone, and said so.
        assert_eq!(std::fs::read_to_string(etc.path().join("pip.conf")).unwrap(), "[global]\nindex-url = https://mirror\n");
        assert!(applied.problems.iter().any(|p| p.contains("pip.conf")), "{:?}", applied.problems);

        // An empty environment removes the blocks again.
        apply(etc.path(), None, &BTreeMap::new(), b"");
        assert_eq!(std::fs::read_to_string(etc.path().join("environment")).unwrap(), "LANG=C\n");
    }
}
