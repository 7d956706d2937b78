//! The document root as the HTTP core sees it: a trait ([`Docroot`]) that resolves a safe,
//! normalised path to metadata and an abstract [`Body`] (its bytes by offset, and a
//! descriptor the driver may `sendfile` from where there is one). The core never opens a file:
//! the filesystem implementation and the open-file cache live on the server side
//! (`plumb::services`), and [`MemDocroot`] here, all in memory, serves the unit tests and the
//! fuzz target, which then touch neither the filesystem nor the wall clock.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use super::cgi::Script;
pub use crate::session::Body;

/// What the core needs to know about a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub is_dir: bool,
    pub len: u64,
    pub inode: u64,
    pub modified: SystemTime,
}

impl Meta {
    /// Seconds and nanoseconds since the epoch (0 for times before it).
    pub fn mtime(&self) -> (u64, u32) {
        let d = self
            .modified
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        (d.as_secs(), d.subsec_nanos())
    }
}

/// An opened file or directory. Its body is shared, so a docroot may hand out one descriptor
/// to many requests (an open-file cache); it is read with positioned reads only.
#[derive(Debug, Clone)]
pub struct Opened {
    pub body: Arc<dyn Body>,
    pub meta: Meta,
}

/// One directory entry for a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The file name as it is on disk: bytes, not always UTF-8.
    pub name: Vec<u8>,
    pub meta: Meta,
}

impl ListEntry {
    /// The name to show: invalid UTF-8 replaced by U+FFFD (the link keeps the real bytes).
    pub fn display_name(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }
}

/// Why a path cannot be served.
#[derive(Debug)]
pub enum OpenError {
    NotFound,
    /// It exists but may not be served (a symlink out of the root, no permission, a FIFO).
    Forbidden,
    Other(io::Error),
}

impl From<io::Error> for OpenError {
    /// By kind only; a docroot that knows more (an errno such as `ELOOP`) maps it first.
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => OpenError::NotFound,
            io::ErrorKind::PermissionDenied => OpenError::Forbidden,
            io::ErrorKind::InvalidFilename => OpenError::NotFound,
            _ => OpenError::Other(e),
        }
    }
}

/// The files an HTTP session may serve. `rel` is always a normalised relative path
/// (`a/b.txt`, empty for the root) with no `.` or `..` segments.
pub trait Docroot: Send + Sync {
    /// Opens the file or directory at `rel`.
    ///
    /// # Errors
    /// [`OpenError::NotFound`], [`OpenError::Forbidden`] or an I/O error.
    fn open(&self, rel: &Path) -> Result<Opened, OpenError>;

    /// The entries of the directory at `rel`, unsorted; dotfiles only when `hidden`. Only
    /// what [`Docroot::open`] would serve: regular files and directories.
    ///
    /// # Errors
    /// As for [`Docroot::open`].
    fn list(&self, rel: &Path, hidden: bool) -> Result<Vec<ListEntry>, OpenError>;

    /// The file at `rel` as a CGI script to run: only an executable regular file, under the
    /// same rules as [`Docroot::open`] (symlinks out of the root refused); `Ok(None)` for a
    /// directory (the script may be further down the path). Nothing is opened. A docroot
    /// that runs no programs refuses every one.
    ///
    /// # Errors
    /// [`OpenError::NotFound`]; [`OpenError::Forbidden`] for anything but an executable
    /// regular file or a directory; an I/O error.
    fn script(&self, rel: &Path) -> Result<Option<Script>, OpenError> {
        let _ = rel;
        Err(OpenError::Forbidden)
    }
}

/// Bytes in memory as a body (no descriptor: a driver copies them).
#[derive(Debug)]
pub struct MemBody(Mutex<Arc<[u8]>>);

impl MemBody {
    pub fn new(bytes: &[u8]) -> MemBody {
        MemBody(Mutex::new(Arc::from(bytes)))
    }

    /// Replaces the bytes in place, as an editor writing into an open file would: a reader
    /// that holds this body sees the new bytes.
    pub fn rewrite(&self, bytes: &[u8]) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Arc::from(bytes);
    }

    fn bytes(&self) -> Arc<[u8]> {
        Arc::clone(&self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Body for MemBody {
    fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let bytes = self.bytes();
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = bytes.get(start..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// A document root in memory: files by relative path (directories are implied by the paths),
/// for unit tests and fuzzing.
#[derive(Debug, Default)]
pub struct MemDocroot {
    files: BTreeMap<PathBuf, (Arc<MemBody>, SystemTime)>,
    /// Names that exist but may not be served (as a FIFO or an unreadable file).
    forbidden: Vec<PathBuf>,
    /// Files with an execute bit (CGI scripts).
    executable: Vec<PathBuf>,
}

impl MemDocroot {
    pub fn new() -> MemDocroot {
        MemDocroot::default()
    }

    /// Adds a file; its directories exist from then on.
    pub fn file(mut self, rel: &str, bytes: &[u8]) -> MemDocroot {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + self.files.len() as u64);
        self.files
            .insert(PathBuf::from(rel), (Arc::new(MemBody::new(bytes)), t));
        self
    }

    /// Adds an executable file (a CGI script; its "program" is `/mem/REL`).
    pub fn script(mut self, rel: &str, bytes: &[u8]) -> MemDocroot {
        self = self.file(rel, bytes);
        self.executable.push(PathBuf::from(rel));
        self
    }

    /// Adds a name that exists but answers 403.
    pub fn forbidden(mut self, rel: &str) -> MemDocroot {
        self.forbidden.push(PathBuf::from(rel));
        self
    }

    /// The body of a file, to edit it in place.
    pub fn body(&self, rel: &str) -> Option<Arc<MemBody>> {
        self.files.get(Path::new(rel)).map(|(b, _)| Arc::clone(b))
    }

    fn is_dir(&self, rel: &Path) -> bool {
        rel.as_os_str().is_empty() || self.files.keys().any(|p| p.starts_with(rel) && p != rel)
    }

    fn inode(&self, rel: &Path) -> u64 {
        self.files
            .keys()
            .position(|p| p == rel)
            .map_or(1, |i| i as u64 + 2)
    }

    fn dir_meta(&self, rel: &Path) -> Meta {
        Meta {
            is_dir: true,
            len: 0,
            inode: self.inode(rel),
            modified: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }
}

impl Docroot for MemDocroot {
    fn open(&self, rel: &Path) -> Result<Opened, OpenError> {
        if self.forbidden.iter().any(|f| f == rel) {
            return Err(OpenError::Forbidden);
        }
        if let Some((body, modified)) = self.files.get(rel) {
            return Ok(Opened {
                meta: Meta {
                    is_dir: false,
                    len: body.len(),
                    inode: self.inode(rel),
                    modified: *modified,
                },
                body: Arc::clone(body) as Arc<dyn Body>,
            });
        }
        if self.is_dir(rel) {
            return Ok(Opened {
                body: Arc::new(MemBody::new(b"")),
                meta: self.dir_meta(rel),
            });
        }
        Err(OpenError::NotFound)
    }

    fn list(&self, rel: &Path, hidden: bool) -> Result<Vec<ListEntry>, OpenError> {
        if !self.is_dir(rel) {
            return Err(OpenError::NotFound);
        }
        let mut names: BTreeMap<Vec<u8>, ListEntry> = BTreeMap::new();
        for path in self.files.keys() {
            let Ok(below) = path.strip_prefix(rel) else {
                continue;
            };
            let mut parts = below.components();
            let Some(first) = parts.next() else { continue };
            let name = first.as_os_str().as_encoded_bytes().to_vec();
            if !hidden && name.starts_with(b".") {
                continue;
            }
            let child = rel.join(first.as_os_str());
            let meta = match self.open(&child) {
                Ok(o) => o.meta,
                Err(_) => continue,
            };
            names.insert(name.clone(), ListEntry { name, meta });
        }
        Ok(names.into_values().collect())
    }

    fn script(&self, rel: &Path) -> Result<Option<Script>, OpenError> {
        if self.forbidden.iter().any(|f| f == rel) {
            return Err(OpenError::Forbidden);
        }
        if !self.files.contains_key(rel) {
            return if self.is_dir(rel) {
                Ok(None)
            } else {
                Err(OpenError::NotFound)
            };
        }
        if !self.executable.iter().any(|f| f == rel) {
            return Err(OpenError::Forbidden);
        }
        let program = format!("/mem/{}", rel.display());
        let dir = match program.rsplit_once('/') {
            Some((d, _)) => d.to_string(),
            None => "/mem".to_string(),
        };
        Ok(Some(Script {
            program,
            dir,
            root: "/mem".to_string(),
        }))
    }
}

/// A fixed file or directory description for the unit tests of the HTTP modules.
#[cfg(test)]
pub(crate) fn test_meta(len: u64, is_dir: bool) -> Meta {
    Meta {
        is_dir,
        len,
        inode: 7,
        modified: UNIX_EPOCH + Duration::from_secs(1_000_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_directories_and_forbidden_names() {
        let root = MemDocroot::new()
            .file("a.txt", b"hello")
            .file("d/e/f.txt", b"x")
            .file(".hidden", b"h")
            .forbidden("fifo");
        let a = root.open(Path::new("a.txt")).unwrap();
        assert_eq!((a.meta.len, a.meta.is_dir), (5, false));
        let mut buf = [0u8; 8];
        assert_eq!(a.body.read_at(&mut buf, 1).unwrap(), 4);
        assert_eq!(&buf[..4], b"ello");
        assert_eq!(a.body.read_at(&mut buf, 99).unwrap(), 0);
        assert!(root.open(Path::new("d/e")).unwrap().meta.is_dir);
        assert!(matches!(
            root.open(Path::new("nope")),
            Err(OpenError::NotFound)
        ));
        assert!(matches!(
            root.open(Path::new("fifo")),
            Err(OpenError::Forbidden)
        ));
        let names = |hidden| -> Vec<Vec<u8>> {
            root.list(Path::new(""), hidden)
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect()
        };
        assert_eq!(names(false), [b"a.txt".to_vec(), b"d".to_vec()]);
        assert_eq!(names(true).len(), 3);
        assert!(matches!(
            root.list(Path::new("a.txt"), false),
            Err(OpenError::NotFound)
        ));
    }

    #[test]
    fn a_rewritten_body_is_seen_by_its_holder() {
        let root = MemDocroot::new().file("e.txt", b"v1 short");
        let held = root.open(Path::new("e.txt")).unwrap();
        root.body("e.txt").unwrap().rewrite(b"v2 this is longer");
        assert_eq!(held.body.len(), 17);
    }
}
