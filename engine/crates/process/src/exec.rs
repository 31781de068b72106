//! Child-process mechanics: spawning in a new process group, reader threads for captured
//! streams, waiting with timeout/cancellation, graceful termination of the whole group and
//! reaping (no zombies on any path).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Poll interval while waiting for the child.
const TICK: Duration = Duration::from_millis(10);
/// How long SIGKILL is given before we stop waiting (the reference waits 5s too).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// After the leader is gone and the group was killed, how long we still wait for pipe EOF
/// (only matters when a process outside the group keeps a pipe open).
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Bound of the line channel between the reader threads and the caller's thread.
const CHANNEL_BOUND: usize = 4096;

/// Which standard stream a captured line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Stdout,
    Stderr,
}

enum Msg {
    Line(StreamKind, Vec<u8>),
    Eof,
}

/// How an attempt's wait ended.
#[derive(Debug)]
pub(crate) enum WaitOutcome {
    /// The leader exited and all captured streams reached EOF. The value is the Python-style
    /// return code (negative signal number when killed by a signal).
    Exited(i64),
    TimedOut,
    Cancelled,
}

/// A spawned child (leader of its own process group) plus its reader threads.
pub(crate) struct Running {
    child: Option<Child>,
    pid: libc::pid_t,
    rx: Receiver<Msg>,
    readers: Vec<JoinHandle<()>>,
    open: usize,
    exited: bool,
}

fn return_code(st: ExitStatus) -> i64 {
    match (st.code(), st.signal()) {
        (Some(c), _) => i64::from(c),
        (None, Some(s)) => -i64::from(s),
        (None, None) => -1,
    }
}

fn reader<R: Read>(pipe: R, kind: StreamKind, tx: SyncSender<Msg>) {
    let mut r = BufReader::with_capacity(64 * 1024, pipe);
    loop {
        let mut buf = Vec::new();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                if tx.send(Msg::Line(kind, buf)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = tx.send(Msg::Eof);
}

impl Running {
    /// Spawns `cmd` as the leader of a new process group. Captured pipes (if `cmd` was given
    /// `Stdio::piped()`) are read by one thread each.
    pub(crate) fn spawn(mut cmd: Command) -> std::io::Result<Running> {
        cmd.process_group(0);
        // The engine ignores SIGXFSZ (a write beyond RLIMIT_FSIZE is then an error it can
        // report); a child gets the default disposition back, as if started from a shell.
        // SAFETY: `signal` is async-signal-safe, which is all `pre_exec` allows.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pid = libc::pid_t::try_from(child.id()).unwrap_or(libc::pid_t::MAX);
        let (tx, rx) = sync_channel(CHANNEL_BOUND);
        let mut readers = Vec::new();
        let mut running = Running {
            child: None,
            pid,
            rx,
            readers: Vec::new(),
            open: 0,
            exited: false,
        };
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            let h = std::thread::Builder::new()
                .name("af-proc-stdout".into())
                .spawn(move || reader(out, StreamKind::Stdout, tx));
            match h {
                Ok(h) => readers.push(h),
                Err(e) => {
                    running.child = Some(child);
                    return Err(e); // Drop kills and reaps the child.
                }
            }
            running.open += 1;
        }
        if let Some(err) = child.stderr.take() {
            let tx = tx.clone();
            let h = std::thread::Builder::new()
                .name("af-proc-stderr".into())
                .spawn(move || reader(err, StreamKind::Stderr, tx));
            match h {
                Ok(h) => readers.push(h),
                Err(e) => {
                    running.child = Some(child);
                    running.readers = readers;
                    return Err(e);
                }
            }
            running.open += 1;
        }
        running.child = Some(child);
        running.readers = readers;
        Ok(running)
    }

    fn signal_group(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with a negative pid signals the process group we created; the leader
        // is not reaped yet (we only observe its exit with WNOWAIT), so the id cannot have been
        // reused. Errors (ESRCH) are harmless and ignored.
        unsafe {
            libc::kill(-self.pid, sig);
        }
    }

    /// Non-reaping check whether the leader has exited (waitid with WNOWAIT).
    fn poll_exited(&mut self) -> bool {
        if self.exited {
            return true;
        }
        loop {
            // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid(2).
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: plain syscall on our own child's pid with a valid out-pointer.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            if rc == 0 {
                // SAFETY: waitid filled `info` (or left it zeroed when nothing changed).
                let pid = unsafe { info.si_pid() };
                self.exited = pid != 0;
                return self.exited;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // ECHILD or anything else: there is nothing left to wait for.
            self.exited = true;
            return true;
        }
    }

    /// Receives lines for up to `wait` and hands them to `on_line`.
    fn pump(&mut self, wait: Duration, on_line: &mut dyn FnMut(StreamKind, &[u8])) {
        if self.open == 0 {
            std::thread::sleep(wait);
            return;
        }
        let first = match self.rx.recv_timeout(wait) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => return,
            Err(RecvTimeoutError::Disconnected) => {
                self.open = 0;
                return;
            }
        };
        self.handle(first, on_line);
        // Drain whatever is already queued, boundedly, before going back to the checks.
        for _ in 0..CHANNEL_BOUND {
            match self.rx.try_recv() {
                Ok(m) => self.handle(m, on_line),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.open = 0;
                    break;
                }
            }
        }
    }

    fn handle(&mut self, m: Msg, on_line: &mut dyn FnMut(StreamKind, &[u8])) {
        match m {
            Msg::Line(k, b) => on_line(k, &b),
            Msg::Eof => self.open = self.open.saturating_sub(1),
        }
    }

    /// Waits for the leader to exit and the captured streams to reach EOF, honouring the
    /// timeout and the cancellation flag. On timeout or cancellation the whole process group
    /// gets SIGTERM, then after `grace` SIGKILL.
    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        grace: Duration,
        cancel: &AtomicBool,
        on_line: &mut dyn FnMut(StreamKind, &[u8]),
    ) -> std::io::Result<WaitOutcome> {
        let start = Instant::now();
        let deadline = timeout.and_then(|t| start.checked_add(t));
        loop {
            self.pump(TICK, on_line);
            self.poll_exited();
            if self.exited && self.open == 0 {
                let rc = self.reap()?;
                self.join_readers();
                return Ok(WaitOutcome::Exited(rc));
            }
            if cancel.load(Ordering::SeqCst) {
                self.terminate(grace, on_line);
                return Ok(WaitOutcome::Cancelled);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.terminate(grace, on_line);
                return Ok(WaitOutcome::TimedOut);
            }
        }
    }

    fn wait_exit_for(&mut self, dur: Duration, on_line: &mut dyn FnMut(StreamKind, &[u8])) {
        let end = Instant::now().checked_add(dur);
        while !self.poll_exited() {
            if end.is_some_and(|e| Instant::now() >= e) {
                return;
            }
            self.pump(TICK, on_line);
        }
    }

    /// SIGTERM the group, wait `grace`, SIGKILL, wait up to 5s, SIGKILL stragglers, reap.
    fn terminate(&mut self, grace: Duration, on_line: &mut dyn FnMut(StreamKind, &[u8])) {
        self.signal_group(libc::SIGTERM);
        self.wait_exit_for(grace, on_line);
        if !self.exited {
            self.signal_group(libc::SIGKILL);
            self.wait_exit_for(KILL_WAIT, on_line);
        }
        // Grandchildren that outlived the leader (or ignored SIGTERM) die with it.
        self.signal_group(libc::SIGKILL);
        if self.exited {
            let _ = self.reap();
        } else {
            self.reap_in_background();
        }
        let end = Instant::now() + DRAIN_LIMIT;
        while self.open > 0 && Instant::now() < end {
            self.pump(TICK, on_line);
        }
        self.join_readers();
    }

    fn reap(&mut self) -> std::io::Result<i64> {
        match self.child.take() {
            Some(mut c) => c.wait().map(return_code),
            None => Ok(-1),
        }
    }

    /// Last resort for a child that did not die within the kill wait (e.g. stuck in
    /// uninterruptible sleep): a detached thread reaps it once it finally exits.
    fn reap_in_background(&mut self) {
        if let Some(mut c) = self.child.take() {
            let spawned = std::thread::Builder::new()
                .name("af-proc-reaper".into())
                .spawn(move || {
                    let _ = c.wait();
                });
            if let Err(e) = spawned {
                // Could not spawn a thread: nothing else to do than to drop it; report on stderr
                // is not our channel, so the error is silently ignored.
                let _ = e;
            }
        }
    }

    /// Joins reader threads that have finished; threads still blocked on a pipe held open by
    /// an escaped process are detached (they end when that pipe closes).
    fn join_readers(&mut self) {
        for h in std::mem::take(&mut self.readers) {
            if h.is_finished() || self.open == 0 {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal_group(libc::SIGKILL);
            if self.poll_exited() {
                let _ = self.reap();
            } else {
                self.reap_in_background();
            }
        }
    }
}
