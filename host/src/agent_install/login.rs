//! Who logs in where: the SSH destination (`--user`, else the backend's usual
//! user, else the local user) and the credentials (`--identity`,
//! `--password`, else ssh-agent), for `hutch agent install` and `hutch image
//! prepare` alike.

use std::path::PathBuf;

use super::InstallError;
use super::known_hosts::KnownHosts;
use super::password;
use super::ssh::{Credentials, Dest, Session};
use crate::state::StateDir;

/// How to log in, as the flags say.
#[derive(Clone, Debug, Default)]
pub struct Login {
    /// `--user`.
    pub user: Option<String>,
    /// `--identity`: a private key file.
    pub identity: Option<PathBuf>,
    /// `--password`: read one (HUTCH_SSH_PASSWORD or the terminal).
    pub password: bool,
}

impl Login {
    /// Where to log in: `--user`, else `usual_user` (the backend's), else
    /// the local user.
    pub fn destination(&self, host: String, port: u16, usual_user: Option<&str>) -> Result<Dest, InstallError> {
        let user = match (&self.user, usual_user) {
            (Some(user), _) => user.clone(),
            (None, Some(user)) => user.to_owned(),
            (None, None) => local_user()?,
        };
        Ok(Dest { host, port, user, known_as: None })
    }

    /// Connects to `dest` and logs in, pinning its host key in `state`'s
    /// known hosts.
    pub async fn connect(&self, state: &StateDir, dest: &Dest) -> Result<Session, InstallError> {
        let known = KnownHosts::at(state.known_hosts());
        let credentials = if self.password {
            Credentials::Password(password::read(&dest.user, &dest.host)?)
        } else if let Some(key) = &self.identity {
            Credentials::Identity(key.clone())
        } else {
            Credentials::Agent
        };
        Session::connect(dest, &known, &credentials).await
    }
}

fn local_user() -> Result<String, InstallError> {
    if let Ok(user) = std::env::var("USER")
        && !user.is_empty()
    {
        return Ok(user);
    }
    match nix::unistd::User::from_uid(nix::unistd::getuid()) {
        Ok(Some(user)) => Ok(user.name),
        _ => Err(InstallError::NoLocalUser),
    }
}
