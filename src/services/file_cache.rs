//! An open-file cache in front of [`FsDocroot`], in the spirit of nginx's `open_file_cache`
//! and lighttpd's stat cache. Without it every request for a static file pays for resolving
//! the path safely (a `readlink` per component), `open`, `fstat` and `close`; profiles showed
//! that as a quarter of the server's CPU on small keep-alive requests.
//!
//! Every hit `fstat`s the cached descriptor: its size, mtime and ctime must be those the entry
//! was made with, or the entry is dropped and the file opened afresh. An edit in place keeps
//! the inode, so it is only visible there, and a length, ETag or Last-Modified from before the
//! edit would label the edited bytes (a torn body of the old length, or a 500 on a shrink).
//! That check is the one system call a hit pays (cost: see the README's figures).
//!
//! The path is trusted for the cache's validity period (`plumb serve --file-cache-valid`,
//! default [`VALID`]). After it, one `stat` of the path checks that the path still names the
//! very same, unchanged file (device, inode, size, mtime and ctime all equal); if not, the
//! entry is dropped and the file opened afresh. So a replacement (rename over it), a deletion
//! or a re-pointed symlink is seen within the period: at once with a period of 0, which stats
//! the path on every request. Until then the old descriptor still holds the whole old file,
//! so what is served is consistent, only older. lighttpd's stat cache (1 s) and nginx's
//! `open_file_cache_valid` (60 s) make the same trade for the path; the path walk cost 6% of
//! the keep-alive throughput when measured.
//!
//! The symlink rule needs no new check: the cached file passed it when it was opened, and a
//! hit is that same file. Directories are not cached (listings read them anyway), nor are
//! failures. At most [`MAX_ENTRIES`] descriptors are held; an entry that no longer matches is
//! dropped, so a deleted file's space is released at its next request (an unlink, and a
//! rename over the file, change its ctime, which the `fstat` of a hit sees).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use plumb_proto::http::docroot::{Docroot, ListEntry, Meta, OpenError, Opened};

use super::fs_docroot::{FileBody, FsDocroot};

/// Most files kept open by the cache.
pub const MAX_ENTRIES: usize = 1024;
/// How long a cached entry is trusted without a look at its path, by default.
pub const VALID: Duration = Duration::from_secs(1);

/// What must be unchanged for a cached descriptor to be used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(m: &Metadata) -> Identity {
        Identity {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

struct Entry {
    file: Arc<FileBody>,
    id: Identity,
    meta: Meta,
    /// When the path was last seen to name this file, unchanged.
    checked: Instant,
}

pub struct CachedDocroot {
    inner: FsDocroot,
    entries: Mutex<HashMap<PathBuf, Entry>>,
    valid: Duration,
}

impl CachedDocroot {
    /// A cache that trusts each entry for `valid` before checking its path again (zero:
    /// check on every request).
    pub fn new(inner: FsDocroot, valid: Duration) -> CachedDocroot {
        CachedDocroot {
            inner,
            entries: Mutex::new(HashMap::new()),
            valid,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached descriptor for `rel`: as it is within the validity period, else if the path
    /// still names that same, unchanged file. The `stat` is made without the lock held.
    fn hit(&self, rel: &Path) -> Option<Opened> {
        if rel.as_os_str().is_empty() {
            return None; // the root is a directory
        }
        let now = Instant::now();
        let (file, id, trusted) = {
            let entries = self.lock();
            let e = entries.get(rel)?;
            if now.saturating_duration_since(e.checked) < self.valid {
                (Arc::clone(&e.file), e.id, Some(e.meta))
            } else {
                (Arc::clone(&e.file), e.id, None)
            }
        };
        if let Some(meta) = trusted {
            // Within the period the path is trusted, the file is not: an edit in place keeps
            // the inode, so only the descriptor shows it (size, mtime, ctime).
            if file.file().metadata().is_ok_and(|m| Identity::of(&m) == id) {
                return Some(Opened { body: file, meta });
            }
            self.forget(rel, &file);
            return None;
        }
        // Same identity means the same inode, size and times: the cached `meta` still holds.
        let unchanged = std::fs::metadata(self.inner.root().join(rel))
            .is_ok_and(|m| m.is_file() && Identity::of(&m) == id);
        let mut entries = self.lock();
        let current = entries
            .get_mut(rel)
            .filter(|e| Arc::ptr_eq(&e.file, &file))?;
        if unchanged {
            current.checked = now;
            Some(Opened {
                body: file,
                meta: current.meta,
            })
        } else {
            entries.remove(rel);
            None
        }
    }

    /// Drops the entry for `rel` if it still holds `file` (another request may have
    /// replaced it meanwhile).
    fn forget(&self, rel: &Path, file: &Arc<FileBody>) {
        let mut entries = self.lock();
        if entries.get(rel).is_some_and(|e| Arc::ptr_eq(&e.file, file)) {
            entries.remove(rel);
        }
    }
}

impl Docroot for CachedDocroot {
    fn open(&self, rel: &Path) -> Result<Opened, OpenError> {
        if let Some(opened) = self.hit(rel) {
            return Ok(opened);
        }
        let (file, meta) = self.inner.open_body(rel)?;
        if !meta.is_dir
            && let Ok(m) = file.file().metadata()
        {
            let mut entries = self.lock();
            if entries.len() >= MAX_ENTRIES && !entries.contains_key(rel) {
                entries.clear();
            }
            entries.insert(
                rel.to_path_buf(),
                Entry {
                    file: Arc::clone(&file),
                    id: Identity::of(&m),
                    meta,
                    checked: Instant::now(),
                },
            );
        }
        Ok(Opened { body: file, meta })
    }

    fn list(&self, rel: &Path, hidden: bool) -> Result<Vec<ListEntry>, OpenError> {
        self.inner.list(rel, hidden)
    }

    fn script(&self, rel: &Path) -> Result<Option<plumb_proto::http::docroot::Script>, OpenError> {
        self.inner.script(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(root: &CachedDocroot, rel: &str) -> Vec<u8> {
        let o = root.open(Path::new(rel)).unwrap();
        let mut v = vec![0u8; o.meta.len as usize];
        let mut got = 0;
        while got < v.len() {
            let n = o.body.read_at(&mut v[got..], got as u64).unwrap();
            assert!(n > 0, "the body ended early");
            got += n;
        }
        v
    }

    #[test]
    fn with_a_zero_period_every_change_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, b"one").unwrap();
        let root = CachedDocroot::new(FsDocroot::new(dir.path(), false).unwrap(), Duration::ZERO);
        let first = root.open(Path::new("a.txt")).unwrap();
        let again = root.open(Path::new("a.txt")).unwrap();
        assert!(Arc::ptr_eq(&first.body, &again.body), "a hit");
        drop((first, again));

        // Rewritten in place (new size): a miss, fresh metadata.
        std::fs::write(&p, b"second").unwrap();
        assert_eq!(body(&root, "a.txt"), b"second");
        // Replaced by another file (rename over it): the new one.
        let tmp = dir.path().join("t");
        std::fs::write(&tmp, b"third!").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert_eq!(body(&root, "a.txt"), b"third!");
        // Deleted: not found, and the cache lets go of the file.
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(
            root.open(Path::new("a.txt")),
            Err(OpenError::NotFound)
        ));
        assert!(root.lock().is_empty());
        // Directories and failures are not cached.
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert!(root.open(Path::new("d")).unwrap().meta.is_dir);
        assert!(root.open(Path::new("")).unwrap().meta.is_dir);
        assert!(root.lock().is_empty());
    }

    #[test]
    fn changes_are_seen_within_the_validity_period() {
        // Moving a directory changes nothing a descriptor of a file inside it can show: only
        // the path check sees it. An edit in place is seen by the same check.
        let dir = tempfile::tempdir().unwrap();
        let setup = |name: &str, content: &[u8]| {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("f"), content).unwrap();
        };
        setup("d", b"old");
        let slow = CachedDocroot::new(
            FsDocroot::new(dir.path(), false).unwrap(),
            Duration::from_secs(3600),
        );
        let quick = CachedDocroot::new(
            FsDocroot::new(dir.path(), false).unwrap(),
            Duration::from_millis(20),
        );
        assert_eq!(body(&slow, "d/f"), b"old");
        assert_eq!(body(&quick, "d/f"), b"old");
        std::fs::rename(dir.path().join("d"), dir.path().join("gone")).unwrap();
        setup("d", b"new");
        assert_eq!(
            body(&slow, "d/f"),
            b"old",
            "trusted until the interval is over"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while body(&quick, "d/f") != b"new" {
            assert!(Instant::now() < deadline, "the new file was never served");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The moved file edited in place: the slow cache's descriptor shows the edit at once,
        // so the entry goes and the path is opened afresh (the new "d/f").
        std::fs::write(dir.path().join("gone/f"), b"older!").unwrap();
        assert_eq!(body(&slow, "d/f"), b"new");
    }

    #[test]
    fn an_edit_in_place_is_seen_at_once_whatever_the_period() {
        // The bug: within the period a grown file went out with its old length (a torn body
        // under the old ETag) and a shrunk one as a 500.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.txt");
        std::fs::write(&p, b"v1 short").unwrap();
        let root = CachedDocroot::new(
            FsDocroot::new(dir.path(), false).unwrap(),
            Duration::from_secs(3600),
        );
        let first = root.open(Path::new("e.txt")).unwrap();
        assert!(Arc::ptr_eq(
            &first.body,
            &root.open(Path::new("e.txt")).unwrap().body
        ));
        for content in [&b"v2 this is longer"[..], b"v3", b"v4"] {
            std::fs::write(&p, content).unwrap();
            let o = root.open(Path::new("e.txt")).unwrap();
            assert_eq!(o.meta.len, content.len() as u64);
            assert_eq!(body(&root, "e.txt"), content);
        }
        // Deleted: the unlink changed its ctime, so the cache lets go at once.
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(
            root.open(Path::new("e.txt")),
            Err(OpenError::NotFound)
        ));
        assert!(root.lock().is_empty());
    }

    #[test]
    fn the_symlink_rule_still_holds() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        let root = CachedDocroot::new(FsDocroot::new(dir.path(), false).unwrap(), Duration::ZERO);
        assert_eq!(body(&root, "a.txt"), b"hello");
        // The cached name now leads out of the root: refused, like any such link.
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("a.txt"))
            .unwrap();
        assert!(matches!(
            root.open(Path::new("a.txt")),
            Err(OpenError::Forbidden)
        ));
    }

    #[test]
    fn holds_at_most_max_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = CachedDocroot::new(FsDocroot::new(dir.path(), false).unwrap(), VALID);
        for i in 0..MAX_ENTRIES + 5 {
            let name = format!("f{i}");
            std::fs::write(dir.path().join(&name), b"x").unwrap();
            root.open(Path::new(&name)).unwrap();
        }
        assert!(root.lock().len() <= MAX_ENTRIES);
    }
}
