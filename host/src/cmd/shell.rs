//! `hutch shell`: the guest user's login shell on a terminal.

use super::audited::{self, Audited};
use crate::cli::{ExecFlags, ShellArgs};
use crate::error::Error;
use crate::exec;
use crate::target::Target;

/// Finds the user's shell in the guest's passwd (falling back to /bin/sh) and
/// runs it as a login shell.
const LOGIN_SHELL: &str = r#"s=$(awk -F: -v u="$(id -un)" '$1 == u { print $7 }' /etc/passwd 2>/dev/null); [ -x "$s" ] || s=/bin/sh; cd "${HUTCH_CWD:-$HOME}" 2>/dev/null; exec "$s" -l"#;

/// Runs `hutch shell`; returns the shell's exit code.
pub async fn run(args: ShellArgs) -> Result<u8, Error> {
    let result = async {
        let target = Target::vm(args.name.as_ref())?;
        let flags = ExecFlags { tty: true, no_tty: false, cwd: None, env: Vec::new(), timeout: None, json: false, no_stdin: false };
        let mut options = flags.options(vec!["/bin/sh".into(), "-c".into(), LOGIN_SHELL.into()], None);
        if let Some(cwd) = target.default_cwd() {
            options.env.insert("HUTCH_CWD".into(), cwd);
        }
        let secrets = crate::net::exec::real_values_here();
        let audited = Audited { target: &target, secrets: &secrets, refresh_snapshot: Some(true) };
        audited::connect_and_run(&audited, options, None).await
    }
    .await;
    exec::report::report(result, false, Error::exit_code)
}
