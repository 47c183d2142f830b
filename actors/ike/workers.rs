//! The IKE workers (`[system] ike-workers`): threads, each an actix arbiter, that the router
//! starts peer actors on, so that the exponentiations of many exchanges run on every core. The
//! router itself stays on its own arbiter: routing by cookies keeps one owner and O(1) work per
//! datagram; each peer actor stays the one owner of its session, on the worker it started on.
//!
//! A new peer goes to the worker with the fewest live peer actors (ties in turn), so a burst of
//! new exchanges is spread evenly and a worker whose spokes left takes the next ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use actix::prelude::*;

/// One worker: its arbiter, its live peer actors, and its thread (for its CPU time).
struct Worker {
    arbiter: ArbiterHandle,
    peers: u64,
    /// The worker thread's id (`gettid`), set by the thread itself once it runs; 0 until then.
    tid: Arc<AtomicI32>,
}

pub struct IkeWorkers {
    workers: Vec<Worker>,
    /// Where the search for the least-loaded worker starts (ties go round-robin).
    next: usize,
}

/// What `show counters` prints per worker.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WorkerLoad {
    /// Live peer actors on the worker now.
    pub peers: u64,
    /// CPU time the worker's thread used so far (user + system), in milliseconds.
    pub cpu_ms: u64,
}

impl IkeWorkers {
    /// Starts `n` worker threads. They run until the actix system stops.
    ///
    /// With one worker (`ike-workers = 1`, or 0 on a one-core host), the peer actors run on the
    /// caller's arbiter, the router's: a thread of their own would add a hand-off from the
    /// router to the peer to every datagram, which on one core is a context switch each.
    /// Measured, 3,000 spokes, group 14, hub pinned to one core: 24 context switches per tunnel
    /// with a worker thread, 6.5 without.
    pub fn start(n: usize) -> Self {
        if n <= 1 {
            // SAFETY: gettid(2) has no arguments and cannot fail.
            let tid = Arc::new(AtomicI32::new(unsafe { libc::gettid() }));
            return IkeWorkers {
                workers: vec![Worker {
                    arbiter: Arbiter::current(),
                    peers: 0,
                    tid,
                }],
                next: 0,
            };
        }
        let workers = (0..n)
            .map(|_| {
                let arbiter = Arbiter::new().handle();
                let tid = Arc::new(AtomicI32::new(0));
                let t = tid.clone();
                arbiter.spawn_fn(move || {
                    // SAFETY: gettid(2) has no arguments and cannot fail.
                    t.store(unsafe { libc::gettid() }, Ordering::Release);
                });
                Worker {
                    arbiter,
                    peers: 0,
                    tid,
                }
            })
            .collect();
        IkeWorkers { workers, next: 0 }
    }

    /// The worker a new peer actor goes to (counted as one more peer there), and its arbiter.
    pub fn assign(&mut self) -> (usize, &ArbiterHandle) {
        let n = self.workers.len();
        let mut best = self.next % n;
        for k in (0..n).map(|i| (self.next + i) % n) {
            if self.workers[k].peers < self.workers[best].peers {
                best = k;
            }
        }
        self.next = (best + 1) % n;
        let w = &mut self.workers[best];
        w.peers = w.peers.saturating_add(1);
        (best, &w.arbiter)
    }

    /// A peer actor of worker `k` is gone.
    pub fn release(&mut self, k: usize) {
        if let Some(w) = self.workers.get_mut(k) {
            w.peers = w.peers.saturating_sub(1);
        }
    }

    /// Peers and CPU time per worker.
    pub fn load(&self) -> Vec<WorkerLoad> {
        self.workers
            .iter()
            .map(|w| WorkerLoad {
                peers: w.peers,
                cpu_ms: thread_cpu_ms(w.tid.load(Ordering::Acquire)).unwrap_or(0),
            })
            .collect()
    }
}

/// CPU time of thread `tid` of this process, from `/proc/self/task/TID/stat` (utime and stime,
/// fields 14 and 15, in clock ticks). Read for `show counters`, never on a data path.
fn thread_cpu_ms(tid: i32) -> Option<u64> {
    if tid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf(3) with a valid name has no other effect.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&h| h > 0)?;
    Some(utime.saturating_add(stime).saturating_mul(1000) / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_peers_go_to_the_least_loaded_worker_in_turn() {
        let sys = System::new();
        sys.block_on(async {
            let mut w = IkeWorkers::start(3);
            let picks: Vec<usize> = (0..6).map(|_| w.assign().0).collect();
            assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
            // Worker 1's peers leave: the next two go there.
            w.release(1);
            w.release(1);
            assert_eq!(w.assign().0, 1);
            assert_eq!(w.assign().0, 1);
            assert_eq!(
                w.load().iter().map(|l| l.peers).collect::<Vec<_>>(),
                [2, 2, 2]
            );
            // Releasing more than was assigned never wraps.
            for _ in 0..5 {
                w.release(0);
            }
            assert_eq!(w.load()[0].peers, 0);
            System::current().stop();
        });
    }

    #[test]
    fn one_worker_is_the_callers_own_thread() {
        let sys = System::new();
        sys.block_on(async {
            let mut w = IkeWorkers::start(1);
            let (k, arbiter) = w.assign();
            assert_eq!(k, 0);
            // Work spawned on the worker runs on this thread.
            let here = std::thread::current().id();
            let (tx, rx) = tokio::sync::oneshot::channel();
            assert!(arbiter.spawn_fn(move || {
                let _ = tx.send(std::thread::current().id());
            }));
            assert_eq!(rx.await.ok(), Some(here));
            // Its CPU time is this thread's.
            // SAFETY: gettid(2) has no arguments and cannot fail.
            let tid = unsafe { libc::gettid() };
            assert_eq!(w.workers[0].tid.load(Ordering::Acquire), tid);
            System::current().stop();
        });
    }

    #[test]
    fn a_workers_cpu_time_is_read_from_its_thread() {
        // This thread's own stat line parses (the value itself is whatever it used so far).
        // SAFETY: gettid(2) has no arguments and cannot fail.
        let me = unsafe { libc::gettid() };
        assert!(thread_cpu_ms(me).is_some());
        assert_eq!(thread_cpu_ms(0), None);
        assert_eq!(thread_cpu_ms(i32::MAX), None);
    }
}
