//! The host project in the guest: which folder it is (`--workspace` or the
//! current directory), asking the agent to set it up at the same path (its
//! `Prepare` call), and undoing on the host what that left there.

use std::path::{Path, PathBuf};

use hutch_proto::v1::{HeavyMethod, PrepareRequest};

use crate::backend::Backend;
use crate::error::Error;
use crate::state::{HeavyLink, VmRecord};
use crate::transport::{self, BearerToken};

/// Shares the workspace at its host path in the guest and redirects heavy
/// dirs; records the symlinks it put into the host project, if any.
pub async fn prepare(backend: &dyn Backend, record: &mut VmRecord) -> Result<(), Error> {
    let (Some(workspace), Some(share)) = (record.workspace.clone(), backend.workspace_share(record)) else {
        return Ok(());
    };
    let addr = record.agent_addr()?;
    let token = match &record.token_file {
        Some(path) => BearerToken::from_file(path)?,
        None => BearerToken::default(),
    };
    let mut client = transport::connect(addr, token).await?;
    let request = PrepareRequest {
        workspace: workspace.display().to_string(),
        share: Some(share),
        heavy_dirs: record.heavy_dirs.clone(),
        heavy_depth: 0,
    };
    let response = client.prepare(request).await.map_err(|status| Error::Prepare(status.message().to_owned()))?.into_inner();
    record.heavy_links = response
        .heavy
        .iter()
        .filter(|h| h.method == HeavyMethod::HeavySymlink as i32)
        .map(|h| HeavyLink { path: h.path.clone().into(), target: h.local_path.clone().into() })
        .collect();
    for skipped in response.heavy.iter().filter(|h| h.method == HeavyMethod::HeavySkipped as i32) {
        eprintln!("hutch: {} stays on the shared folder: {}", skipped.path, skipped.note);
    }
    Ok(())
}

/// Removes the symlinks `prepare` put into the host project (macOS guests),
/// leaving the project as it was. A path that is no longer our symlink is
/// left alone.
pub fn remove_links(record: &mut VmRecord) {
    for link in std::mem::take(&mut record.heavy_links) {
        if std::fs::read_link(&link.path).is_ok_and(|target| target == link.target) {
            let _ = std::fs::remove_file(&link.path);
        }
    }
}

/// The workspace folder for `hutch up`/`run`: `--workspace` or the current
/// directory, absolute and with symlinks resolved (the guest mounts it at
/// this exact path).
pub fn resolve(given: Option<&Path>) -> Result<PathBuf, Error> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_dir().map_err(|e| Error::local("reading the current directory", e))?,
    };
    let resolved = path.canonicalize().map_err(|e| Error::local(&format!("workspace {}", path.display()), e))?;
    if !resolved.is_dir() {
        return Err(Error::Usage(format!("workspace {} is not a directory", resolved.display())));
    }
    Ok(resolved)
}
