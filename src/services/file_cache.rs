//! An open-file cache in front of [`FsDocroot`], in the spirit of nginx's `open_file_cache`
//! and lighttpd's stat cache. Without it every request for a static file pays for resolving
//! the path safely (a `readlink` per component), `open`, `fstat` and `close`; profiles showed
//! that as a quarter of the server's CPU on small keep-alive requests.
//!
//! A hit costs one `stat` of the path: the cached descriptor is used only if the path still
//! names the very same file, unchanged (device, inode, size, mtime and ctime all equal), so
//! edits, replacements, deletions and permission changes are seen at once, exactly as
//! without the cache. The symlink rule needs no new check: the cached file passed it when it
//! was opened, and a hit is that same file. Directories are not cached (listings read them
//! anyway), nor are failures. At most [`MAX_ENTRIES`] descriptors are held; a path that no
//! longer matches drops its entry, so a deleted file's space is released by its next request.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, MutexGuard};

use plumb_proto::http::fs::{ListEntry, Meta, OpenError, Opened};
use plumb_proto::http::{Docroot, FsDocroot};

/// Most files kept open by the cache.
pub const MAX_ENTRIES: usize = 1024;

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
    file: Arc<File>,
    id: Identity,
}

pub struct CachedDocroot {
    inner: FsDocroot,
    entries: Mutex<HashMap<String, Entry>>,
}

impl CachedDocroot {
    pub fn new(inner: FsDocroot) -> CachedDocroot {
        CachedDocroot {
            inner,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached descriptor for `rel` if the path still names that same, unchanged file.
    fn hit(&self, rel: &str) -> Option<Opened> {
        if rel.is_empty() {
            return None; // the root is a directory
        }
        let now = std::fs::metadata(self.inner.root().join(rel));
        let mut entries = self.lock();
        let entry = entries.get(rel)?;
        match now {
            Ok(m) if m.is_file() && Identity::of(&m) == entry.id => Some(Opened {
                file: Arc::clone(&entry.file),
                meta: Meta::from_std(&m),
            }),
            _ => {
                entries.remove(rel);
                None
            }
        }
    }
}

impl Docroot for CachedDocroot {
    fn open(&self, rel: &str) -> Result<Opened, OpenError> {
        if let Some(opened) = self.hit(rel) {
            return Ok(opened);
        }
        let opened = self.inner.open(rel)?;
        if !opened.meta.is_dir
            && let Ok(m) = opened.file.metadata()
        {
            let mut entries = self.lock();
            if entries.len() >= MAX_ENTRIES && !entries.contains_key(rel) {
                entries.clear();
            }
            entries.insert(
                rel.to_string(),
                Entry {
                    file: Arc::clone(&opened.file),
                    id: Identity::of(&m),
                },
            );
        }
        Ok(opened)
    }

    fn list(&self, rel: &str, hidden: bool) -> Result<Vec<ListEntry>, OpenError> {
        self.inner.list(rel, hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn body(root: &CachedDocroot, rel: &str) -> Vec<u8> {
        let o = root.open(rel).unwrap();
        let mut v = vec![0u8; o.meta.len as usize];
        o.file.read_exact_at(&mut v, 0).unwrap();
        v
    }

    #[test]
    fn hits_reuse_the_descriptor_and_changes_are_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, b"one").unwrap();
        let root = CachedDocroot::new(FsDocroot::new(dir.path(), false).unwrap());
        let first = root.open("a.txt").unwrap();
        let again = root.open("a.txt").unwrap();
        assert!(Arc::ptr_eq(&first.file, &again.file), "a hit");
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
        assert!(matches!(root.open("a.txt"), Err(OpenError::NotFound)));
        assert!(root.lock().is_empty());
        // Directories and failures are not cached.
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert!(root.open("d").unwrap().meta.is_dir);
        assert!(root.open("").unwrap().meta.is_dir);
        assert!(root.lock().is_empty());
    }

    #[test]
    fn the_symlink_rule_still_holds() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        let root = CachedDocroot::new(FsDocroot::new(dir.path(), false).unwrap());
        assert_eq!(body(&root, "a.txt"), b"hello");
        // The cached name now leads out of the root: refused, like any such link.
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("a.txt"))
            .unwrap();
        assert!(matches!(root.open("a.txt"), Err(OpenError::Forbidden)));
    }

    #[test]
    fn holds_at_most_max_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = CachedDocroot::new(FsDocroot::new(dir.path(), false).unwrap());
        for i in 0..MAX_ENTRIES + 5 {
            let name = format!("f{i}");
            std::fs::write(dir.path().join(&name), b"x").unwrap();
            root.open(&name).unwrap();
        }
        assert!(root.lock().len() <= MAX_ENTRIES);
    }
}
