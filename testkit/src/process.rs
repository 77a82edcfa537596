//! Processes started on this machine by the bench, the drills and the
//! autoscale lab's local workers, one way: a program with its arguments and
//! environment, started (and started again after it stopped), stopped as
//! Kubernetes stops a pod (SIGTERM, then SIGKILL after a grace period), or
//! killed outright. A process still running when its handle is dropped is
//! killed, so a failed run leaves nothing behind.
//!
//! Readiness is the caller's to wait for ([`crate::wait_ready`] for an HTTP
//! probe): what "ready" means differs by program.

use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// How long a stopped process may take to exit before it is killed, unless
/// set otherwise: Kubernetes' default termination grace period, so a
/// process stops here as its pod would.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// Where a process' output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// This program's standard output and error.
    Inherit,
    /// Standard output discarded (a server's logs), standard error kept.
    DiscardStdout,
    /// Both appended to this file, kept across restarts.
    AppendTo(PathBuf),
}

/// A program that can be started, stopped and started again.
#[derive(Debug)]
pub struct Process {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    output: Output,
    grace: Duration,
    child: Option<Child>,
}

impl Process {
    /// `program`, not started yet; `name` is what errors call it.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Process {
        Process {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            output: Output::Inherit,
            grace: STOP_GRACE,
            child: None,
        }
    }

    /// Adds command-line arguments.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Process {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds environment variables (on top of this program's own).
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Process {
        self.env
            .extend(env.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sends the output to `output` instead of this program's own.
    pub fn output(mut self, output: Output) -> Process {
        self.output = output;
        self
    }

    /// How long [`Process::terminate`] waits before killing.
    pub fn grace(mut self, grace: Duration) -> Process {
        self.grace = grace;
        self
    }

    /// Starts it (again, if it ran before); a running one is killed first.
    pub fn start(&mut self) -> io::Result<()> {
        if let Some(mut old) = self.child.take() {
            old.start_kill()?;
        }
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match &self.output {
            Output::Inherit => {}
            Output::DiscardStdout => {
                command.stdout(Stdio::null());
            }
            Output::AppendTo(path) => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                command.stdout(log.try_clone()?).stderr(log);
            }
        }
        let child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("starting {} ({}): {e}", self.name, self.program.display()),
            )
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// Its process id while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether it was started and has not exited.
    pub fn is_running(&mut self) -> io::Result<bool> {
        match &mut self.child {
            Some(child) => Ok(child.try_wait()?.is_none()),
            None => Ok(false),
        }
    }

    /// SIGTERM, and waits for it to exit: SIGKILL once the grace period is
    /// over. Nothing to do when it is not running.
    pub async fn terminate(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            // The `kill` command: sending a signal from Rust needs `unsafe`
            // or another dependency.
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
        }
        if tokio::time::timeout(self.grace, child.wait())
            .await
            .is_err()
        {
            child.kill().await?;
        }
        Ok(())
    }

    /// SIGKILL: no goodbye.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper() -> Process {
        Process::new("sleep", "sleep").args(["30"])
    }

    #[tokio::test]
    async fn a_process_starts_stops_on_sigterm_and_starts_again() {
        let mut p = sleeper();
        assert!(!p.is_running().unwrap());
        p.start().unwrap();
        assert!(p.is_running().unwrap());
        assert!(p.id().is_some());
        let started = std::time::Instant::now();
        p.terminate().await.unwrap();
        assert!(
            started.elapsed() < STOP_GRACE,
            "sleep exits on SIGTERM, before the grace period"
        );
        assert!(!p.is_running().unwrap());
        assert_eq!(p.id(), None);
        p.start().unwrap();
        assert!(p.is_running().unwrap());
        p.kill().await;
        assert!(!p.is_running().unwrap());
    }

    #[tokio::test]
    async fn a_process_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let mut p = Process::new("stubborn", "sh")
            .args(["-c", "trap '' TERM; sleep 30"])
            .grace(Duration::from_millis(300));
        p.start().unwrap();
        // Let the shell set its trap before the signal comes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        p.terminate().await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "waited the grace period: {took:?}"
        );
        assert!(took < Duration::from_secs(10), "then killed it: {took:?}");
    }

    #[tokio::test]
    async fn output_is_appended_to_the_log_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("echo.log");
        let mut p = Process::new("echo", "sh")
            .args(["-c", "echo out; echo err >&2"])
            .output(Output::AppendTo(log.clone()));
        for _ in 0..2 {
            p.start().unwrap();
            tokio::time::timeout(Duration::from_secs(10), async {
                while p.is_running().unwrap() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap();
        }
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.matches("out").count(), 2, "{text}");
        assert_eq!(text.matches("err").count(), 2, "{text}");
    }

    #[tokio::test]
    async fn a_missing_program_is_named_in_the_error() {
        let err = Process::new("ghost", "/nonexistent/fanout-ghost")
            .start()
            .unwrap_err();
        assert!(err.to_string().contains("starting ghost"), "{err}");
    }
}
