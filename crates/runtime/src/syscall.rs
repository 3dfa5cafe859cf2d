//! The privilege-changing system calls behind a trait, so the step-down logic can be unit-tested with a fake
//! (as youki does) and run for real in the binaries.

use std::io;

pub trait Syscall {
    fn getuid(&self) -> u32;
    fn geteuid(&self) -> u32;
    fn getgid(&self) -> u32;
    fn setgroups(&self, groups: &[u32]) -> io::Result<()>;
    /// Sets real, effective and saved gid.
    fn setgid(&self, gid: u32) -> io::Result<()>;
    /// Sets real, effective and saved uid.
    fn setuid(&self, uid: u32) -> io::Result<()>;
}

pub struct Real;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Syscall for Real {
    fn getuid(&self) -> u32 {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }
    }
    fn geteuid(&self) -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }
    fn getgid(&self) -> u32 {
        // SAFETY: getgid has no preconditions and cannot fail.
        unsafe { libc::getgid() }
    }
    fn setgroups(&self, groups: &[u32]) -> io::Result<()> {
        // SAFETY: pointer and length come from the same slice, which outlives the call.
        check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })
    }
    fn setgid(&self, gid: u32) -> io::Result<()> {
        // setresgid, not setgid: the saved set-group-ID must not keep the old value.
        // SAFETY: setresgid takes plain integers, no pointers.
        check(unsafe { libc::setresgid(gid, gid, gid) })
    }
    fn setuid(&self, uid: u32) -> io::Result<()> {
        // SAFETY: setresuid takes plain integers, no pointers.
        check(unsafe { libc::setresuid(uid, uid, uid) })
    }
}

/// The fake kernel of the unit tests.
#[cfg(test)]
pub mod fake {
    use super::Syscall;
    use std::cell::RefCell;
    use std::io;

    /// A recorded call of the fake (named after the calls).
    #[allow(clippy::enum_variant_names)]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        SetGroups(Vec<u32>),
        SetGid(u32),
        SetUid(u32),
    }

    /// A fake kernel: tracks real/effective ids like Linux does for the calls above and records every call.
    #[derive(Debug)]
    pub struct Fake {
        pub uid: RefCell<u32>,
        pub euid: RefCell<u32>,
        pub gid: RefCell<u32>,
        pub calls: RefCell<Vec<Call>>,
        /// Simulate a broken kernel that lets a dropped process regain root (the step-down must notice).
        pub allow_regain: bool,
        /// Make this call fail with EPERM.
        pub fail: Option<Call>,
    }

    impl Fake {
        pub fn new(uid: u32, euid: u32) -> Self {
            Fake {
                uid: RefCell::new(uid),
                euid: RefCell::new(euid),
                gid: RefCell::new(uid),
                calls: RefCell::new(Vec::new()),
                allow_regain: false,
                fail: None,
            }
        }
        fn record(&self, c: Call) -> io::Result<()> {
            self.calls.borrow_mut().push(c.clone());
            if self.fail.as_ref() == Some(&c) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        }
        fn privileged(&self) -> bool {
            *self.euid.borrow() == 0
        }
    }

    impl Syscall for Fake {
        fn getuid(&self) -> u32 {
            *self.uid.borrow()
        }
        fn geteuid(&self) -> u32 {
            *self.euid.borrow()
        }
        fn getgid(&self) -> u32 {
            *self.gid.borrow()
        }
        fn setgroups(&self, groups: &[u32]) -> io::Result<()> {
            self.record(Call::SetGroups(groups.to_vec()))?;
            if !self.privileged() {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        }
        fn setgid(&self, gid: u32) -> io::Result<()> {
            self.record(Call::SetGid(gid))?;
            if !self.privileged() && gid != *self.gid.borrow() {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            *self.gid.borrow_mut() = gid;
            Ok(())
        }
        fn setuid(&self, uid: u32) -> io::Result<()> {
            self.record(Call::SetUid(uid))?;
            if !self.privileged() && uid != *self.uid.borrow() && !self.allow_regain {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            *self.uid.borrow_mut() = uid;
            *self.euid.borrow_mut() = uid;
            Ok(())
        }
    }
}
