//! Telling what a take of the guest's git work brought: the lines on
//! stderr and the events in the audit log. Apart from [`super::report`],
//! whose reports the audit log records, so that neither names the other.

use std::path::Path;

use super::report::RepoReport;
use crate::audit;
use crate::untrusted::text;

/// Prints `reports` on stderr (escaped: a name that failed `refname`'s
/// checks is the guest's words) and writes them into the audit log, when
/// there is anything to say.
pub fn tell(reports: &[RepoReport], workspace: &Path, log: Option<&audit::Log>) {
    for report in reports.iter().filter(|r| !r.is_empty()) {
        for line in report.lines(workspace) {
            eprintln!("hutch: {}", text::shown(&line));
        }
        if let Some(log) = log {
            log.append(audit::What::Git(report.clone()));
        }
    }
}
