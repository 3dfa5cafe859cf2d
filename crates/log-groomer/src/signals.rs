//! SIGTERM / SIGINT: stop promptly and exit 0.
//!
//! During a pass a handler only sets a flag, which the walk reads between entries (one atomic load, no syscall).
//! Sleeps block both signals and wait in `sigtimedwait`, so a signal that arrives just before the sleep starts is
//! still seen: no lost wake-up, unlike the seed's `trap` that waited for `sleep 900` to end.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Installs the handlers (also when we are PID 1, where default actions would be ignored) and unblocks the signals
/// in case a parent left them blocked.
pub fn install() {
    // SAFETY: the handler is async-signal-safe (one atomic store); no SA_RESTART, so slow calls return EINTR.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        let set = stop_set();
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

pub fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Sleeps until the wall clock reaches `deadline` (seconds since the epoch). Returns false when told to stop.
pub fn sleep_until(deadline: i64) -> bool {
    let set = stop_set();
    // SAFETY: plain signal-mask and sigtimedwait calls on a set we own.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut ok = true;
        loop {
            if stopping() {
                ok = false;
                break;
            }
            // Re-read the clock each round: the realtime clock may step, and EINTR from other signals is possible.
            let now = crate::age::Timestamp::now();
            let left_ns = (deadline - now.secs) as i128 * 1_000_000_000 - now.nsecs as i128;
            if left_ns <= 0 {
                break;
            }
            // Wake at least every 10 s so a stepped clock is noticed.
            let wait = left_ns.min(10_000_000_000);
            let ts = libc::timespec {
                tv_sec: (wait / 1_000_000_000) as _,
                tv_nsec: (wait % 1_000_000_000) as _,
            };
            if libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) > 0 {
                STOP.store(true, Ordering::Relaxed);
            }
        }
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        ok
    }
}
