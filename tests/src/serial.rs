//! Timing-sensitive tests run alone.
//!
//! All suites are modules of one test binary, whose tests run in parallel on the test threads.
//! Most do not care. Some do: they time connections out (audit commit, body read, fruizione
//! and JWKS fetch timeouts of a few hundred milliseconds), measure retries and backoff, stop
//! and restart PostgreSQL, wait for a voucher to expire or for a reload, or bound a rate of
//! fetches by the time elapsed. Next to other suites that start gateways, seed stores and sign
//! with RSA on a loaded machine, their deadlines are missed for reasons that are not theirs.
//!
//! Rather than larger timeouts (which would hide real slowness) such a test takes
//! [`exclusive`] first: a process-wide read/write lock. Every [`crate::Harness`] holds the
//! read side ([`shared`]), so a timing-sensitive test waits until the harnesses running
//! alongside are gone, runs with nothing else of the binary beside it, and holds back new ones
//! until it ends. The lock is fair (first come, first served): a waiting exclusive test is not
//! starved by a stream of ordinary ones.
//!
//! A test thread that already holds a side of the lock does not take it again: a test that
//! starts two harnesses, or an exclusive test that starts one, would otherwise wait on itself.
//! The test harness runs each test on a thread of its own and the harness is dropped by the
//! test body on that thread, which is what makes a per-thread count right.

use std::cell::Cell;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LOCK: RwLock<()> = RwLock::const_new(());

thread_local! {
    /// Guards (of either side) held by this test thread.
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// Held by a timing-sensitive test for its whole duration: nothing else of the binary that
/// starts a [`crate::Harness`] runs meanwhile.
#[must_use = "the test runs alone only while the guard is alive"]
pub struct Exclusive {
    _guard: Option<RwLockWriteGuard<'static, ()>>,
}

/// Held by every [`crate::Harness`]: ordinary tests run side by side, never beside an
/// [`Exclusive`] one.
pub struct Shared {
    _guard: Option<RwLockReadGuard<'static, ()>>,
}

/// Waits until this test can run alone, and keeps it so until the guard drops.
pub async fn exclusive() -> Exclusive {
    let guard = if held() {
        None
    } else {
        Some(LOCK.write().await)
    };
    enter();
    Exclusive { _guard: guard }
}

/// The read side, taken by [`crate::Harness`]; waits while an exclusive test runs.
pub async fn shared() -> Shared {
    let guard = if held() {
        None
    } else {
        Some(LOCK.read().await)
    };
    enter();
    Shared { _guard: guard }
}

fn held() -> bool {
    HELD.with(|h| h.get() > 0)
}

fn enter() {
    HELD.with(|h| h.set(h.get() + 1));
}

fn leave() {
    HELD.with(|h| h.set(h.get().saturating_sub(1)));
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        leave();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    // Both in one test: they use the process-wide lock, which a second test could hold.
    #[test]
    fn an_exclusive_test_waits_for_shared_holders_and_holds_new_ones_back() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            // The same thread takes a second side without waiting on itself.
            let outer = shared().await;
            let inner = tokio::time::timeout(Duration::from_secs(5), exclusive())
                .await
                .expect("a thread holding the lock does not wait on itself");
            drop(inner);
            drop(outer);
        });

        // Another thread holds the read side: an exclusive test waits for it.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            let guard = rt.block_on(shared());
            held_tx.send(()).expect("send");
            release_rx.recv().expect("recv");
            drop(guard);
        });
        held_rx.recv().expect("the reader holds the lock");
        let got = Arc::new(AtomicBool::new(false));
        let flag = got.clone();
        let writer = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            let guard = rt.block_on(exclusive());
            flag.store(true, Ordering::SeqCst);
            // While it runs, a new shared holder on a third thread waits.
            let blocked = std::thread::spawn(|| {
                let rt = tokio::runtime::Runtime::new().expect("runtime");
                rt.block_on(async {
                    tokio::time::timeout(Duration::from_millis(200), shared()).await
                })
                .is_err()
            })
            .join()
            .expect("join");
            drop(guard);
            blocked
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !got.load(Ordering::SeqCst),
            "exclusive granted while another test held the shared side"
        );
        release_tx.send(()).expect("send");
        reader.join().expect("join");
        assert!(
            writer.join().expect("join"),
            "a harness started beside an exclusive test"
        );
        assert!(got.load(Ordering::SeqCst));
    }
}
