//! The document root as the HTTP core sees it: a small trait ([`Docroot`]) so the core can be
//! tested and fuzzed, and [`FsDocroot`], the real one on `std::fs`.
//!
//! [`FsDocroot`] enforces the symlink rule: every path is canonicalised and must stay under
//! the canonical root unless `follow_symlinks` is set. (The names it is given were already
//! normalised by [`super::path`], so `..` never reaches it.)

use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the core needs to know about a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub is_dir: bool,
    pub len: u64,
    pub inode: u64,
    pub modified: SystemTime,
}

impl Meta {
    pub fn from_std(m: &std::fs::Metadata) -> Meta {
        Meta {
            is_dir: m.is_dir(),
            len: m.len(),
            inode: m.ino(),
            modified: m.modified().unwrap_or(UNIX_EPOCH),
        }
    }

    /// Seconds and nanoseconds since the epoch (0 for times before it).
    pub fn mtime(&self) -> (u64, u32) {
        let d = self
            .modified
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        (d.as_secs(), d.subsec_nanos())
    }
}

/// A file is a body the driver can `sendfile` from.
impl crate::session::Body for File {
    fn len(&self) -> u64 {
        self.metadata().map_or(0, |m| m.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(self))
    }
}

/// An opened file or directory. Shared, so a docroot may hand out one descriptor to many
/// requests (an open-file cache); it is read with positioned reads only.
#[derive(Debug)]
pub struct Opened {
    pub file: Arc<File>,
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
    /// It exists but may not be served (a symlink out of the root, no permission).
    Forbidden,
    Other(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => OpenError::NotFound,
            io::ErrorKind::PermissionDenied => OpenError::Forbidden,
            _ if e.raw_os_error() == Some(libc::ELOOP) => OpenError::Forbidden,
            // Opening a socket: not a file to serve, like a FIFO (a 403, not a 500).
            _ if e.raw_os_error() == Some(libc::ENXIO) => OpenError::Forbidden,
            _ if e.raw_os_error() == Some(libc::ENAMETOOLONG) => OpenError::NotFound,
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
}

/// A directory on the real filesystem.
#[derive(Debug, Clone)]
pub struct FsDocroot {
    root: PathBuf,
    follow_symlinks: bool,
}

impl FsDocroot {
    /// # Errors
    /// The root does not exist or is not a directory.
    pub fn new(root: &Path, follow_symlinks: bool) -> io::Result<FsDocroot> {
        let root = std::fs::canonicalize(root)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(FsDocroot {
            root,
            follow_symlinks,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of `rel`, refused when a symlink takes it out of the root.
    fn real_path(&self, rel: &Path) -> Result<PathBuf, OpenError> {
        let joined = if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        if self.follow_symlinks {
            return Ok(joined);
        }
        let real = std::fs::canonicalize(&joined)?;
        if real.starts_with(&self.root) {
            Ok(real)
        } else {
            Err(OpenError::Forbidden)
        }
    }
}

impl Docroot for FsDocroot {
    fn open(&self, rel: &Path) -> Result<Opened, OpenError> {
        let path = self.real_path(rel)?;
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)?;
        let m = file.metadata()?;
        if !m.is_dir() && !m.is_file() {
            // FIFOs, sockets, devices: reading them could block a worker forever.
            return Err(OpenError::Forbidden);
        }
        Ok(Opened {
            file: Arc::new(file),
            meta: Meta::from_std(&m),
        })
    }

    fn list(&self, rel: &Path, hidden: bool) -> Result<Vec<ListEntry>, OpenError> {
        let dir = self.real_path(rel)?;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let Ok(entry) = entry else { continue };
            // Any bytes: a name that is not UTF-8 is linked percent-encoded and fetches.
            let name = entry.file_name().into_vec();
            if !hidden && name.starts_with(b".") {
                continue;
            }
            let path = entry.path();
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if is_link && !self.follow_symlinks {
                match std::fs::canonicalize(&path) {
                    Ok(real) if real.starts_with(&self.root) => {}
                    _ => continue, // dangling or pointing out of the root
                }
            }
            // Follows symlinks: a listing shows what a request would get.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() && !meta.is_dir() {
                continue; // FIFOs, sockets, devices: `open` refuses them, so no link
            }
            out.push(ListEntry {
                name,
                meta: Meta::from_std(&meta),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused_unless_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.txt"), b"hello").unwrap();
        symlink(outside.path().join("secret"), root.path().join("out")).unwrap();
        symlink(root.path().join("a.txt"), root.path().join("in")).unwrap();

        let strict = FsDocroot::new(root.path(), false).unwrap();
        assert_eq!(strict.open(p("a.txt")).unwrap().meta.len, 5);
        assert_eq!(strict.open(p("in")).unwrap().meta.len, 5);
        assert!(matches!(strict.open(p("out")), Err(OpenError::Forbidden)));
        assert!(matches!(strict.open(p("nope")), Err(OpenError::NotFound)));
        assert!(matches!(
            strict.open(p("a.txt/x")),
            Err(OpenError::NotFound)
        ));
        let mut names: Vec<_> = strict
            .list(p(""), false)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, [&b"a.txt"[..], b"in"]);

        let loose = FsDocroot::new(root.path(), true).unwrap();
        assert_eq!(loose.open(p("out")).unwrap().meta.len, 1);
        assert_eq!(loose.list(p(""), false).unwrap().len(), 3);
    }

    #[test]
    fn a_listing_has_every_name_that_opens_and_nothing_else() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let root = tempfile::tempdir().unwrap();
        let odd: &[u8] = b"caf\xe9 latin-1.txt";
        for name in [odd, b"back\\slash.txt", b"plain.txt"] {
            std::fs::write(root.path().join(OsStr::from_bytes(name)), name).unwrap();
        }
        // A socket is not a file to serve (nor is a FIFO or a device): not listed.
        let _sock = std::os::unix::net::UnixListener::bind(root.path().join("s.sock")).unwrap();
        let docroot = FsDocroot::new(root.path(), false).unwrap();
        assert!(matches!(
            docroot.open(p("s.sock")),
            Err(OpenError::Forbidden)
        ));
        let mut names: Vec<Vec<u8>> = docroot
            .list(p(""), false)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, [&b"back\\slash.txt"[..], odd, b"plain.txt"]);
        for name in names {
            let opened = docroot.open(Path::new(OsStr::from_bytes(&name))).unwrap();
            assert_eq!(opened.meta.len, name.len() as u64);
        }
    }
}
