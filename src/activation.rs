//! Socket activation (sd_listen_fds(3)): a service manager (systemd with a `.socket` unit,
//! `systemd-socket-activate`, s6, ...) binds the listening sockets and starts plumb with them
//! as descriptors 3, 4, ... and the variables `LISTEN_FDS` (how many), `LISTEN_PID` (for which
//! process: a child that inherits the variables must not take them) and `LISTEN_FDNAMES`
//! (their names, colon-separated). Every server uses them instead of `--listen` when they are
//! meant for it. The variables are removed either way, so programs plumb starts never see
//! them, and the descriptors are made close-on-exec.

use crate::net::Listener;
use crate::usage::usage;

/// The sockets a service manager passed, and their names (empty when it gave none).
pub struct Activated {
    pub listeners: Vec<Listener>,
    pub names: Vec<String>,
}

/// Takes the passed listeners, if any are meant for this process. Call at start-up, before
/// any thread starts.
///
/// # Errors
/// A malformed `LISTEN_FDS`, or a passed descriptor that is not a listening stream socket.
pub fn from_environment() -> anyhow::Result<Option<Activated>> {
    let var = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        if std::env::var_os(name).is_some() {
            plumb_sys::activation::unset_env(name)
                .map_err(|e| anyhow::anyhow!("socket activation: {e}"))?;
        }
    }
    // As sd_listen_fds: without LISTEN_PID, or with another process's, nothing is ours.
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    if pid.trim().parse::<i64>().ok() != Some(i64::from(plumb_sys::getpid())) {
        return Ok(None);
    }
    let count: usize = fds.trim().parse().map_err(|_| {
        usage(format!(
            "socket activation: LISTEN_FDS={fds:?} is not a count"
        ))
    })?;
    if count == 0 {
        return Ok(None);
    }
    if count > 1024 {
        return Err(usage(format!(
            "socket activation: LISTEN_FDS={count} is more sockets than plumb serves"
        )));
    }
    let owned = plumb_sys::activation::take_listen_fds(count)
        .map_err(|e| anyhow::anyhow!("socket activation: {}", crate::net::words(&e)))?;
    let listeners = owned
        .into_iter()
        .enumerate()
        .map(|(i, fd)| {
            Listener::from_inherited(fd).map_err(|e| {
                anyhow::anyhow!(
                    "socket activation: descriptor {}: {}",
                    i + 3,
                    crate::net::words(&e)
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let names = names
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    Ok(Some(Activated { listeners, names }))
}
