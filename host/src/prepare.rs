//! Asking the agent to set up the workspace (its `Prepare` call), and undoing
//! on the host what it and hutch left there ([`crate::heavy`]).

use hutch_proto::addr::Addr;
use hutch_proto::v1::{HeavyMethod, PrepareRequest};

use crate::backend::Backend;
use crate::error::Error;
use crate::state::{HeavyLink, VmRecord};
use crate::transport::{self, BearerToken};

/// Heavy artifact dirs kept on VM-local disk unless told otherwise.
pub const DEFAULT_HEAVY_DIRS: &[&str] = &["node_modules", ".next", ".svelte-kit", ".venv", "target"];

/// Shares the workspace at its host path in the guest and redirects heavy
/// dirs; records the symlinks it put into the host project, if any.
pub async fn prepare(backend: &dyn Backend, record: &mut VmRecord) -> Result<(), Error> {
    let (Some(workspace), Some(share)) = (record.workspace.clone(), backend.workspace_share(record)) else {
        return Ok(());
    };
    let addr: Addr = record.addr.parse()?;
    let token = match &record.token_file {
        Some(path) => BearerToken::from_file(path)?,
        None => BearerToken::default(),
    };
    let created = crate::heavy::create_mount_points(&workspace, &record.heavy_dirs)
        .map_err(|e| Error::local(&format!("creating heavy-dir mount points in {}", workspace.display()), e))?;
    record.created_dirs.extend(created.into_iter().filter(|c| !record.created_dirs.contains(c)).collect::<Vec<_>>());
    let mut client = transport::connect(&addr, token).await?;
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

/// Removes the symlinks `prepare` put into the host project (macOS guests)
/// and the mount points hutch created that are still empty, leaving the
/// project as it was. A path that is no longer ours is left alone.
pub fn remove_links(record: &mut VmRecord) {
    for link in std::mem::take(&mut record.heavy_links) {
        if std::fs::read_link(&link.path).is_ok_and(|target| target == link.target) {
            let _ = std::fs::remove_file(&link.path);
        }
    }
    crate::heavy::remove_mount_points(&std::mem::take(&mut record.created_dirs));
}
