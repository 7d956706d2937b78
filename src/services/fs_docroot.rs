//! The document root on the real filesystem ([`FsDocroot`], behind the core's
//! [`Docroot`] trait): files open as [`FileBody`]s the driver can `sendfile`.
//!
//! [`FsDocroot`] enforces the symlink rule: every path is canonicalised and must stay under
//! the canonical root unless `follow_symlinks` is set. (The names it is given were already
//! normalised by `plumb_proto::http::path`, so `..` never reaches it.)

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use plumb_proto::http::docroot::{Body, Docroot, ListEntry, Meta, OpenError, Opened, Script};

/// A file as a response body: positioned reads, and its descriptor for `sendfile`.
#[derive(Debug)]
pub struct FileBody {
    file: File,
    /// Size, mtime and ctime when opened: an edit in place changes at least one.
    stamp: (u64, i64, i64, i64, i64),
}

fn stamp_of(m: &std::fs::Metadata) -> (u64, i64, i64, i64, i64) {
    (
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

impl FileBody {
    /// A body for `file`, whose metadata at opening is `m`.
    pub fn new(file: File, m: &std::fs::Metadata) -> FileBody {
        FileBody {
            file,
            stamp: stamp_of(m),
        }
    }

    /// The open file (the cache revalidates it with `fstat`).
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Body for FileBody {
    fn len(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.file, buf, offset)
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }

    /// One `fstat` per large piece (before its last `sendfile` burst), not per request.
    fn unchanged(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|m| stamp_of(&m) == self.stamp)
    }
}

/// The core's metadata of a file.
pub fn meta_of(m: &std::fs::Metadata) -> Meta {
    Meta {
        is_dir: m.is_dir(),
        len: m.len(),
        inode: m.ino(),
        modified: m.modified().unwrap_or(UNIX_EPOCH),
    }
}

/// What the filesystem's errors mean for a request; errno cases beyond the error kinds first.
fn open_error(e: io::Error) -> OpenError {
    match e.raw_os_error() {
        Some(libc::ELOOP) => OpenError::Forbidden,
        // Opening a socket: not a file to serve, like a FIFO (a 403, not a 500).
        Some(libc::ENXIO) => OpenError::Forbidden,
        Some(libc::ENAMETOOLONG) => OpenError::NotFound,
        _ => OpenError::from(e),
    }
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
        let real = std::fs::canonicalize(&joined).map_err(open_error)?;
        if real.starts_with(&self.root) {
            Ok(real)
        } else {
            Err(OpenError::Forbidden)
        }
    }
}

impl FsDocroot {
    /// Opens the file or directory at `rel` as a body and its metadata (the open-file cache
    /// keeps the body to revalidate its descriptor).
    ///
    /// # Errors
    /// As for [`Docroot::open`].
    pub fn open_body(&self, rel: &Path) -> Result<(Arc<FileBody>, Meta), OpenError> {
        let path = self.real_path(rel)?;
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(open_error)?;
        let m = file.metadata().map_err(open_error)?;
        if !m.is_dir() && !m.is_file() {
            // FIFOs, sockets, devices: reading them could block a worker forever.
            return Err(OpenError::Forbidden);
        }
        Ok((Arc::new(FileBody::new(file, &m)), meta_of(&m)))
    }
}

impl Docroot for FsDocroot {
    fn open(&self, rel: &Path) -> Result<Opened, OpenError> {
        let (body, meta) = self.open_body(rel)?;
        Ok(Opened { body, meta })
    }

    fn list(&self, rel: &Path, hidden: bool) -> Result<Vec<ListEntry>, OpenError> {
        let dir = self.real_path(rel)?;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(open_error)? {
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
                meta: meta_of(&meta),
            });
        }
        Ok(out)
    }

    /// An executable regular file (any execute bit) at a path that passes the symlink rule,
    /// run by its real path, in its directory; one `stat`, nothing opened (so nothing for the
    /// open-file cache to hold).
    fn script(&self, rel: &Path) -> Result<Option<Script>, OpenError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.real_path(rel)?;
        let m = std::fs::metadata(&path).map_err(open_error)?;
        if m.is_dir() {
            return Ok(None);
        }
        if !m.is_file() || m.permissions().mode() & 0o111 == 0 {
            return Err(OpenError::Forbidden);
        }
        let text = |p: &Path| p.to_str().map(str::to_string).ok_or(OpenError::Forbidden);
        Ok(Some(Script {
            program: text(&path)?,
            dir: text(path.parent().unwrap_or(&self.root))?,
            root: text(&self.root)?,
        }))
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
