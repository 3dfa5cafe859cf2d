//! One streaming, depth-first pass over the tree.
//!
//! Safety: every name is resolved relative to an open directory descriptor (`openat`, `fstatat`, `unlinkat`) and
//! sub-folders are opened with `O_NOFOLLOW | O_DIRECTORY`, so a symlink — planted beforehand or swapped in for a
//! folder mid-walk — is never followed, and nothing outside the tree can be reached by name. Only regular files
//! are deleted; symlinks, sockets and the like are left alone. The walk stays on the root's file system, like
//! `find -xdev`: a folder (or file) with another `st_dev` is a mount point, never entered nor removed.
//!
//! Memory: per walker, one open directory stream per level of depth (glibc's 32 KiB getdents buffer each) and the
//! current path for messages; no file list. Speed: `jobs` walkers share the root folder's stream and each takes
//! the next entry of the root in turn, so sub-trees are walked in parallel (a cold disk answers several inode reads
//! at once); below the root each walker is on its own. `d_type` tells folders from files without a stat, names are
//! matched before any stat, and folders emptied by the pass are removed on the way back up, so there is no second
//! walk.

use crate::age::{Retention, Timestamp};
use crate::report::Stats;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

/// The file-name glob, with a fast path for the usual `*.log`.
pub enum Pattern {
    Suffix(Vec<u8>),
    Glob(CString),
}

impl Pattern {
    pub fn new(glob: &CStr) -> Pattern {
        let b = glob.to_bytes();
        match b.split_first() {
            Some((b'*', rest)) if !rest.iter().any(|c| b"*?[]\\".contains(c)) => {
                Pattern::Suffix(rest.to_vec())
            }
            _ => Pattern::Glob(glob.to_owned()),
        }
    }

    /// As `find -name`: fnmatch without flags, so `*` also matches a leading dot.
    pub fn matches(&self, name: &CStr) -> bool {
        match self {
            Pattern::Suffix(s) => name.to_bytes().ends_with(s),
            // SAFETY: both are NUL-terminated C strings.
            Pattern::Glob(g) => unsafe { libc::fnmatch(g.as_ptr(), name.as_ptr(), 0) == 0 },
        }
    }
}

/// Size accounting for the cap, gathered while walking: how much each shorter retention would free.
pub struct Survey {
    /// Count apparent sizes of all files (a byte cap on the folder) rather than allocated blocks of candidates
    /// (a percentage cap on the file system).
    pub apparent: bool,
    /// Apparent bytes of every regular file left in the tree (apparent mode only).
    pub kept_bytes: u64,
    /// Candidate minimum ages, longest first.
    pub steps: Vec<u64>,
    /// `freed[i]`: bytes of the kept matching files that `steps[i]` expires but `steps[i - 1]` does not.
    pub freed: Vec<u64>,
}

impl Survey {
    pub fn new(apparent: bool, min_age: u64) -> Survey {
        let steps: Vec<u64> =
            std::iter::successors(Retention::shorter(min_age), |&t| Retention::shorter(t))
                .collect();
        let freed = vec![0; steps.len()];
        Survey {
            apparent,
            kept_bytes: 0,
            steps,
            freed,
        }
    }

    /// An empty survey with the same steps, for another walker.
    fn fresh(&self) -> Survey {
        Survey {
            apparent: self.apparent,
            kept_bytes: 0,
            steps: self.steps.clone(),
            freed: vec![0; self.freed.len()],
        }
    }

    fn merge(&mut self, o: Survey) {
        self.kept_bytes += o.kept_bytes;
        for (a, b) in self.freed.iter_mut().zip(o.freed) {
            *a += b;
        }
    }

    fn keep(&mut self, st: &libc::stat, age_secs: i64, matches: bool) {
        if self.apparent {
            self.kept_bytes += st.st_size as u64;
        }
        if matches && age_secs >= 0 {
            let i = self.steps.partition_point(|&s| s as i64 > age_secs);
            if let Some(f) = self.freed.get_mut(i) {
                *f += if self.apparent {
                    st.st_size as u64
                } else {
                    st.st_blocks as u64 * 512
                };
            }
        }
    }
}

pub struct Params<'a> {
    pub pattern: &'a Pattern,
    pub retention: &'a Retention,
    pub now: Timestamp,
    pub dry_run: bool,
    pub verbose: bool,
    /// Walkers at once (at least 1).
    pub jobs: usize,
    pub survey: Option<&'a mut Survey>,
}

/// The root folder does not exist (yet).
pub struct Missing;

struct Frame {
    dir: *mut libc::DIR,
    /// Name in the parent folder (empty for the root).
    name: CString,
    /// Length of `Walker::path` without this folder's component.
    path_len: usize,
    /// Entries still here after this pass (or that would be, in a dry run).
    kept: u64,
    /// Something in this folder was removed by this pass.
    removed_any: bool,
    /// The stream belongs to someone else (the root, shared by the walkers): read it under the lock, never close it.
    shared: bool,
}

impl Frame {
    fn fd(&self) -> libc::c_int {
        // SAFETY: `dir` is a valid open stream for the frame's lifetime.
        unsafe { libc::dirfd(self.dir) }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if !self.shared {
            // SAFETY: opened by fdopendir and closed exactly once here.
            unsafe { libc::closedir(self.dir) };
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

struct Walker<'p, 'a> {
    p: &'p mut Params<'a>,
    stats: &'p mut Stats,
    path: Vec<u8>,
    /// Held while reading a shared stream.
    root_lock: Option<&'p Mutex<()>>,
    /// The root's file system: folders on another one (mount points) are not entered.
    root_dev: libc::dev_t,
}

/// The root's stream, handed to the walker threads.
struct RootDir(*mut libc::DIR);
// SAFETY: the stream stays open until every walker has joined, and is only read under `Walker::root_lock`.
unsafe impl Send for RootDir {}
// SAFETY: as for Send: the stream outlives the walkers, and shared reads of it are serialised by
// `Walker::root_lock`.
unsafe impl Sync for RootDir {}

/// Walks `root`, removing expired files and folders left empty (never `root` itself).
pub fn pass(root: &Path, p: &mut Params, stats: &mut Stats) -> Result<(), Missing> {
    let mut w = Walker {
        p,
        stats,
        path: root.as_os_str().as_bytes().to_vec(),
        root_lock: None,
        root_dev: 0,
    };
    let Ok(croot) = CString::new(w.path.clone()) else {
        w.stats.error("cannot open folder", &w.path, libc::EINVAL);
        return Ok(());
    };
    // The root itself may be a symlink (a mounted volume, say): the operator named it. Nothing below is followed.
    // SAFETY: open with a valid C string.
    let fd = unsafe {
        libc::open(
            croot.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = errno();
        if e == libc::ENOENT {
            return Err(Missing);
        }
        w.stats.error("cannot open folder", &w.path.clone(), e);
        return Ok(());
    }
    // SAFETY: all zeroes is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on the descriptor just opened, into our buffer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        let e = errno();
        // SAFETY: closes the descriptor just opened, once; it is not used after.
        unsafe { libc::close(fd) };
        w.stats.error("cannot stat", &w.path.clone(), e);
        return Ok(());
    }
    w.root_dev = st.st_dev;
    match w.frame(fd, CString::default(), w.path.len()) {
        Some(root) if w.p.jobs > 1 => w.run_parallel(root),
        Some(root) => w.run(root),
        None => {
            let path = w.path.clone();
            w.stats.error("cannot read folder", &path, errno());
        }
    }
    Ok(())
}

impl Walker<'_, '_> {
    fn frame(&mut self, fd: libc::c_int, name: CString, path_len: usize) -> Option<Frame> {
        // SAFETY: fd is an open directory descriptor; on failure we close it ourselves.
        let dir = unsafe { libc::fdopendir(fd) };
        if dir.is_null() {
            // SAFETY: fdopendir failed, so `fd` is still ours: closed once, not used after.
            unsafe { libc::close(fd) };
            return None;
        }
        Some(Frame {
            dir,
            name,
            path_len,
            kept: 0,
            removed_any: false,
            shared: false,
        })
    }

    /// `jobs` walkers over the root's entries; their counts and surveys are added up at the end.
    fn run_parallel(&mut self, root: Frame) {
        let lock = Mutex::new(());
        let shared = RootDir(root.dir);
        let path = self.path.clone();
        let root_dev = self.root_dev;
        let p = &*self.p;
        let results: Vec<(Stats, Option<Survey>)> = std::thread::scope(|scope| {
            let walkers: Vec<_> = (0..p.jobs)
                .map(|_| {
                    let (lock, shared, path) = (&lock, &shared, path.clone());
                    let mut survey = p.survey.as_deref().map(Survey::fresh);
                    std::thread::Builder::new()
                        .stack_size(256 * 1024)
                        .spawn_scoped(scope, move || {
                            let mut params = Params {
                                jobs: 1,
                                survey: survey.as_mut(),
                                ..*p
                            };
                            let mut stats = Stats::default();
                            let mut w = Walker {
                                p: &mut params,
                                stats: &mut stats,
                                path: path.clone(),
                                root_lock: Some(lock),
                                root_dev,
                            };
                            w.run(Frame {
                                dir: shared.0,
                                name: CString::default(),
                                path_len: path.len(),
                                kept: 0,
                                removed_any: false,
                                shared: true,
                            });
                            (stats, survey)
                        })
                })
                .collect();
            walkers
                .into_iter()
                .filter_map(|h| match h {
                    Ok(h) => h.join().ok(),
                    Err(_) => None,
                })
                .collect()
        });
        let spawned = results.len();
        for (stats, survey) in results {
            self.stats.merge(stats);
            if let (Some(all), Some(s)) = (self.p.survey.as_deref_mut(), survey) {
                all.merge(s);
            }
        }
        // No thread could be started (a tight pids limit, say): walk alone.
        if spawned == 0 {
            self.run(root);
        }
    }

    /// `path/name` for messages; the buffer is shared, so this only allocates when printing.
    fn with_name<R>(&mut self, name: &CStr, f: impl FnOnce(&mut Self, &[u8]) -> R) -> R {
        let len = self.path.len();
        self.path.push(b'/');
        self.path.extend_from_slice(name.to_bytes());
        let path = std::mem::take(&mut self.path);
        let r = f(self, &path);
        self.path = path;
        self.path.truncate(len);
        r
    }

    fn fail(&mut self, what: &str, name: &CStr, errno: i32) {
        self.with_name(name, |w, path| w.stats.error(what, path, errno));
    }

    fn run(&mut self, root: Frame) {
        let mut stack = vec![root];
        // The entry's name, copied out of the stream's buffer (a shared stream's buffer is refilled by others).
        let mut name_buf: Vec<u8> = Vec::with_capacity(256);
        while let Some(top) = stack.last_mut() {
            if crate::signals::stopping() {
                self.stats.interrupted = true;
                return; // dropping the stack closes every stream
            }
            let d_type = {
                let _guard = match (top.shared, self.root_lock) {
                    (true, Some(l)) => Some(l.lock().unwrap_or_else(|e| e.into_inner())),
                    _ => None,
                };
                // SAFETY: readdir on an open stream (a shared one under its lock); errno is reset to tell the end
                // from an error. The entry is valid until the next readdir: its name is copied before the lock goes.
                unsafe {
                    *libc::__errno_location() = 0;
                    let ent = libc::readdir64(top.dir);
                    if ent.is_null() {
                        None
                    } else {
                        name_buf.clear();
                        name_buf.extend_from_slice(
                            CStr::from_ptr((*ent).d_name.as_ptr()).to_bytes_with_nul(),
                        );
                        Some((*ent).d_type)
                    }
                }
            };
            let Some(d_type) = d_type else {
                let e = errno();
                if e != 0 {
                    let path = self.path.clone();
                    self.stats.error("cannot read folder", &path, e);
                    top.kept += 1; // unknown entries may remain
                }
                let done = stack.pop().expect("non-empty stack");
                self.path.truncate(done.path_len);
                if let Some(parent) = stack.last_mut() {
                    self.leave(done, parent);
                }
                continue;
            };
            let name = CStr::from_bytes_with_nul(&name_buf).expect("one NUL, at the end");
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let dirfd = top.fd();
            let descend = match d_type {
                libc::DT_DIR => true,
                libc::DT_REG | libc::DT_UNKNOWN => self.file(dirfd, name, d_type, top),
                _ => {
                    top.kept += 1; // symlinks, sockets, fifos: never ours to delete or follow
                    false
                }
            };
            // fsck's `lost+found` (at the root of a volume mounted as the log folder) is never ours, as in the
            // official clean-logs; unreadable to the groomer's user, it would also be an error line every pass.
            if descend && bytes == b"lost+found" {
                top.kept += 1;
                continue;
            }
            if descend {
                let name = name.to_owned();
                if let Some(child) = self.open_child(dirfd, name, top) {
                    stack.push(child);
                }
            }
        }
    }

    /// Handles one non-folder entry. Returns true when it turns out to be a folder (unknown `d_type`).
    fn file(&mut self, dirfd: libc::c_int, name: &CStr, d_type: u8, top: &mut Frame) -> bool {
        let matches = self.p.pattern.matches(name);
        let need_all_sizes = self.p.survey.as_ref().is_some_and(|s| s.apparent);
        if !matches && !need_all_sizes && d_type == libc::DT_REG {
            top.kept += 1;
            return false;
        }
        // SAFETY: all zeroes is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid dirfd, NUL-terminated name, our stat buffer; AT_SYMLINK_NOFOLLOW never follows a link.
        if unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            let e = errno();
            if e != libc::ENOENT {
                top.kept += 1;
            }
            self.fail("cannot stat", name, e);
            return false;
        }
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => return true,
            libc::S_IFREG if st.st_dev == self.root_dev => {}
            _ => {
                top.kept += 1;
                return false;
            }
        }
        let mtime = Timestamp {
            secs: st.st_mtime,
            nsecs: st.st_mtime_nsec,
        };
        if !(matches && self.p.retention.expired(self.p.now, mtime)) {
            top.kept += 1;
            if let Some(s) = self.p.survey.as_deref_mut() {
                let age = self.p.now.secs - mtime.secs - i64::from(self.p.now.nsecs < mtime.nsecs);
                s.keep(&st, age, matches);
            }
            return false;
        }
        if self.p.dry_run {
            self.with_name(name, |_, path| {
                crate::report::print(&format!("would remove {}", crate::report::escape(path)))
            });
        } else {
            // SAFETY: unlinkat on a name in our open folder; it removes that entry, never a link's target.
            if unsafe { libc::unlinkat(dirfd, name.as_ptr(), 0) } != 0 {
                let e = errno();
                if e != libc::ENOENT {
                    top.kept += 1;
                }
                self.fail("cannot remove", name, e);
                return false;
            }
            if self.p.verbose {
                self.with_name(name, |_, path| {
                    crate::report::print(&format!("removed {}", crate::report::escape(path)))
                });
            }
        }
        self.stats.files += 1;
        self.stats.bytes += st.st_size as u64;
        top.removed_any = true;
        false
    }

    fn open_child(&mut self, dirfd: libc::c_int, name: CString, top: &mut Frame) -> Option<Frame> {
        let flags = libc::O_RDONLY
            | libc::O_DIRECTORY
            | libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            | libc::O_NOCTTY;
        // SAFETY: openat relative to our open folder; O_NOFOLLOW refuses a symlink swapped in for the folder.
        let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags) };
        if fd < 0 {
            let e = errno();
            if e != libc::ENOENT {
                top.kept += 1;
            }
            let what = match e {
                libc::ELOOP | libc::ENOTDIR => "not following (replaced during the pass)",
                _ => "cannot open folder",
            };
            self.fail(what, &name, e);
            return None;
        }
        // Like find -xdev: a folder on another file system (a mount point: /proc, an overlay, a volume) is left
        // alone, and so is the folder holding it. Checked on the open descriptor, so nothing can be swapped in.
        // SAFETY: all zeroes is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on the descriptor just opened, into our buffer; closed by us when not descending.
        if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_dev != self.root_dev {
            // SAFETY: closes the descriptor openat gave us, once; it is not used after.
            unsafe { libc::close(fd) };
            top.kept += 1;
            return None;
        }
        let path_len = self.path.len();
        self.path.push(b'/');
        self.path.extend_from_slice(name.to_bytes());
        let child = self.frame(fd, name.clone(), path_len);
        if child.is_none() {
            let e = errno();
            self.path.truncate(path_len);
            top.kept += 1;
            self.fail("cannot read folder", &name, e);
        }
        child
    }

    /// A folder is done: remove it if this pass emptied it, that is, it is empty now and the pass removed matching
    /// files from it (or from folders in it, removed in turn). A folder that was empty already is never ours: it
    /// may be one Airflow just created for a running task, or no log folder at all.
    fn leave(&mut self, done: Frame, parent: &mut Frame) {
        let remove = done.kept == 0 && done.removed_any;
        let fd = parent.fd();
        let name = done.name.clone();
        drop(done); // close it before rmdir
        if !remove {
            parent.kept += 1;
            return;
        }
        if self.p.dry_run {
            self.with_name(&name, |_, path| {
                crate::report::print(&format!("would remove {}/", crate::report::escape(path)))
            });
        } else {
            // SAFETY: unlinkat with AT_REMOVEDIR on a name in our open parent; fails if anything appeared in it.
            if unsafe { libc::unlinkat(fd, name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
                match errno() {
                    // Something was created in it meanwhile: it is in use, keep it quietly.
                    libc::ENOTEMPTY | libc::EEXIST => parent.kept += 1,
                    libc::ENOENT => {}
                    e => {
                        parent.kept += 1;
                        self.fail("cannot remove folder", &name, e);
                    }
                }
                return;
            }
            if self.p.verbose {
                self.with_name(&name, |_, path| {
                    crate::report::print(&format!("removed {}/", crate::report::escape(path)))
                });
            }
        }
        self.stats.folders += 1;
        parent.removed_any = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &Pattern, name: &str) -> bool {
        p.matches(&CString::new(name).unwrap())
    }

    #[test]
    fn patterns_match_like_find_name() {
        let log = Pattern::new(c"*.log");
        assert!(matches!(log, Pattern::Suffix(_)));
        assert!(m(&log, "attempt=1.log"));
        assert!(m(&log, ".log"), "find -name '*.log' matches dot files too");
        assert!(!m(&log, "attempt=1.log.gz"));
        let glob = Pattern::new(c"attempt=[0-9]*.log");
        assert!(matches!(glob, Pattern::Glob(_)));
        assert!(m(&glob, "attempt=3.log"));
        assert!(!m(&glob, "attempt=x.log"));
        assert!(m(&Pattern::new(c"*"), "anything"));
        assert!(m(&Pattern::new(c"?.txt"), "a.txt"));
    }

    #[test]
    fn survey_buckets_by_first_step_that_expires() {
        let day = crate::age::DAY;
        let mut s = Survey::new(true, 4 * day); // steps: 3d, 2d, 1d, 23h, …, 1h
        assert_eq!(&s.steps[..3], &[3 * day, 2 * day, day]);
        // SAFETY: all zeroes is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_size = 100;
        s.keep(&st, (3 * day) as i64 + 5, true); // goes at 3d
        s.keep(&st, (2 * day) as i64, true); // goes at 2d
        s.keep(&st, 10, true); // younger than the floor: never
        s.keep(&st, (3 * day) as i64, false); // not matching: counted, never freed
        assert_eq!(s.kept_bytes, 400);
        assert_eq!(&s.freed[..3], &[100, 100, 0]);
        assert_eq!(s.freed.iter().sum::<u64>(), 200);
    }
}
