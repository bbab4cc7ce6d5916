//! [`Disk`]: a virtual disk backed by a file image, and [`DiskQueue`], which
//! runs disk requests on a worker thread and reports completions on the
//! event loop.
//!
//! All I/O goes through `pread(2)`/`pwrite(2)` straight from and into the
//! caller's buffer (no intermediate copies), so a [`Disk`] can be shared by
//! threads (`&Disk` is enough for every operation). The image has a fixed
//! size: every request is checked against it first, so reads or writes past
//! the end, unaligned sector I/O and writes to a read-only image return a
//! typed error and change nothing.
//!
//! ```no_run
//! use vkernel_devices::Disk;
//!
//! let disk = Disk::create("/tmp/vk.img", 1 << 20)?;
//! let sector = [0xabu8; 512];
//! disk.write_sectors(3, &sector)?;
//! disk.flush()?;
//! let mut back = [0u8; 512];
//! disk.read_sectors(3, &mut back)?;
//! assert_eq!(back, sector);
//! # Ok::<(), vkernel_devices::DiskError>(())
//! ```

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use crate::event_loop::{Event, LoopHandle, SourceId};

/// The sector size used unless [`DiskOptions::sector_size`] says otherwise.
pub const DEFAULT_SECTOR_SIZE: u32 = 512;

/// Errors of [`Disk`] and [`DiskQueue`].
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Opening the image failed.
    #[error("cannot open disk image {path}: {source}")]
    Open {
        /// The image.
        path: PathBuf,
        /// The host error.
        #[source]
        source: io::Error,
    },
    /// Creating the image failed (it must not exist yet).
    #[error("cannot create disk image {path}: {source}")]
    Create {
        /// The image.
        path: PathBuf,
        /// The host error.
        #[source]
        source: io::Error,
    },
    /// The sector size is not a power of two.
    #[error("invalid sector size {0} (must be a power of two)")]
    BadSectorSize(u32),
    /// The request reaches past the end of the image.
    #[error("{len} bytes at offset {offset} reach past the end of the {size}-byte disk")]
    OutOfRange {
        /// Request offset in bytes.
        offset: u64,
        /// Request length in bytes.
        len: u64,
        /// Image size in bytes.
        size: u64,
    },
    /// A sector request whose buffer is not a whole number of sectors.
    #[error("sector I/O of {len} bytes is not a multiple of the {sector_size}-byte sector")]
    Unaligned {
        /// Buffer length in bytes.
        len: usize,
        /// The disk's sector size.
        sector_size: u32,
    },
    /// A write to an image opened read-only.
    #[error("disk image {0} is read-only")]
    ReadOnly(PathBuf),
    /// `pread`/`pwrite`/`fsync` failed.
    #[error("disk {op} at offset {offset} failed: {source}")]
    Io {
        /// "read", "write" or "flush".
        op: &'static str,
        /// Request offset in bytes (0 for flush).
        offset: u64,
        /// The host error.
        #[source]
        source: io::Error,
    },
    /// Spawning the [`DiskQueue`] worker failed.
    #[error("cannot spawn the disk worker thread: {0}")]
    Spawn(#[source] io::Error),
    /// The [`DiskQueue`] worker is gone (it panicked).
    #[error("the disk worker thread is gone")]
    QueueClosed,
}

/// How to open a [`Disk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskOptions {
    /// Open the image read-only; writes return [`DiskError::ReadOnly`].
    pub read_only: bool,
    /// Sector size in bytes (a power of two). Default
    /// [`DEFAULT_SECTOR_SIZE`].
    pub sector_size: u32,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            read_only: false,
            sector_size: DEFAULT_SECTOR_SIZE,
        }
    }
}

/// A fixed-size disk backed by a file image.
#[derive(Debug)]
pub struct Disk {
    file: File,
    path: PathBuf,
    size: u64,
    sector_size: u32,
    read_only: bool,
}

impl Disk {
    /// Opens an existing image read-write with 512-byte sectors.
    pub fn open(path: impl AsRef<Path>) -> Result<Disk, DiskError> {
        Disk::open_with(path, DiskOptions::default())
    }

    /// Opens an existing image read-only with 512-byte sectors.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Disk, DiskError> {
        Disk::open_with(
            path,
            DiskOptions {
                read_only: true,
                ..DiskOptions::default()
            },
        )
    }

    /// Opens an existing image with explicit options. The disk's size is
    /// the file's size at open time.
    pub fn open_with(path: impl AsRef<Path>, options: DiskOptions) -> Result<Disk, DiskError> {
        let path = path.as_ref().to_path_buf();
        if !options.sector_size.is_power_of_two() {
            return Err(DiskError::BadSectorSize(options.sector_size));
        }
        let open_err = |source| DiskError::Open {
            path: path.clone(),
            source,
        };
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is
        // refused just below); it changes nothing for a regular file.
        let file = OpenOptions::new()
            .read(true)
            .write(!options.read_only)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if !meta.is_file() {
            return Err(open_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file (give an image file, e.g. a tar archive)",
            )));
        }
        Ok(Disk {
            file,
            path,
            size: meta.len(),
            sector_size: options.sector_size,
            read_only: options.read_only,
        })
    }

    /// Creates a new zero-filled (sparse) image of `size` bytes and opens it
    /// read-write with 512-byte sectors. Fails if `path` already exists.
    pub fn create(path: impl AsRef<Path>, size: u64) -> Result<Disk, DiskError> {
        let path = path.as_ref().to_path_buf();
        let create_err = |source| DiskError::Create {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(create_err)?;
        file.set_len(size).map_err(create_err)?;
        Ok(Disk {
            file,
            path,
            size,
            sector_size: DEFAULT_SECTOR_SIZE,
            read_only: false,
        })
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Sector size in bytes.
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    /// Number of whole sectors.
    pub fn sector_count(&self) -> u64 {
        self.size / u64::from(self.sector_size)
    }

    /// True if the image was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<(), DiskError> {
        let len = len as u64;
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(DiskError::OutOfRange {
                offset,
                len,
                size: self.size,
            }),
        }
    }

    fn sector_offset(&self, lba: u64, len: usize) -> Result<u64, DiskError> {
        let ss = self.sector_size as usize;
        if !len.is_multiple_of(ss) {
            return Err(DiskError::Unaligned {
                len,
                sector_size: self.sector_size,
            });
        }
        lba.checked_mul(u64::from(self.sector_size))
            .ok_or(DiskError::OutOfRange {
                offset: u64::MAX,
                len: len as u64,
                size: self.size,
            })
    }

    /// Fills `buf` from byte `offset`. The whole range must lie inside the
    /// disk.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.check_range(offset, buf.len())?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| DiskError::Io {
                op: "read",
                offset,
                source,
            })
    }

    /// Writes all of `buf` at byte `offset`. The whole range must lie
    /// inside the disk, and the disk must be writable.
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly(self.path.clone()));
        }
        self.check_range(offset, buf.len())?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|source| DiskError::Io {
                op: "write",
                offset,
                source,
            })
    }

    /// Reads whole sectors starting at sector `lba`; `buf.len()` must be a
    /// multiple of the sector size.
    pub fn read_sectors(&self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let offset = self.sector_offset(lba, buf.len())?;
        self.read_at(offset, buf)
    }

    /// Writes whole sectors starting at sector `lba`; `buf.len()` must be a
    /// multiple of the sector size.
    pub fn write_sectors(&self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly(self.path.clone()));
        }
        let offset = self.sector_offset(lba, buf.len())?;
        self.write_at(offset, buf)
    }

    /// Makes all written data durable (`fsync(2)`). A no-op for read-only
    /// images.
    pub fn flush(&self) -> Result<(), DiskError> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_all().map_err(|source| DiskError::Io {
            op: "flush",
            offset: 0,
            source,
        })
    }

    fn execute(&self, request: DiskRequest) -> Result<DiskCompletion, DiskError> {
        match request {
            DiskRequest::Read { offset, mut buf } => {
                self.read_at(offset, &mut buf)?;
                Ok(DiskCompletion::Read(buf))
            }
            DiskRequest::Write { offset, data } => {
                self.write_at(offset, &data)?;
                Ok(DiskCompletion::Written(data))
            }
            DiskRequest::Flush => {
                self.flush()?;
                Ok(DiskCompletion::Flushed)
            }
        }
    }
}

/// Identifies one request submitted to a [`DiskQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "disk-request#{}", self.0)
    }
}

/// A request for a [`DiskQueue`]. Buffers travel with the request and come
/// back in the [`DiskCompletion`], so they can be reused without copies.
#[derive(Debug)]
pub enum DiskRequest {
    /// Fill `buf` (its whole length) from byte `offset`.
    Read {
        /// Byte offset.
        offset: u64,
        /// Destination; its length is the request length.
        buf: Vec<u8>,
    },
    /// Write `data` at byte `offset`.
    Write {
        /// Byte offset.
        offset: u64,
        /// The bytes to write.
        data: Vec<u8>,
    },
    /// `fsync` the image (after every request submitted before it).
    Flush,
}

/// What a successful [`DiskRequest`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum DiskCompletion {
    /// The filled buffer of a [`DiskRequest::Read`].
    Read(Vec<u8>),
    /// The buffer of a [`DiskRequest::Write`], handed back for reuse.
    Written(Vec<u8>),
    /// A [`DiskRequest::Flush`] completed.
    Flushed,
}

/// Runs [`DiskRequest`]s on a worker thread, in submission order, and
/// reports each completion as [`Event::DiskDone`] on an event loop.
/// Dropping the queue waits for the requests already submitted.
///
/// ```no_run
/// use std::time::Duration;
/// use vkernel_devices::{Disk, DiskQueue, DiskRequest, Event, EventLoop};
///
/// let mut ev = EventLoop::new()?;
/// let q = DiskQueue::new(Disk::open("/tmp/vk.img")?, ev.handle())?;
/// let id = q.submit(DiskRequest::Read { offset: 0, buf: vec![0; 4096] })?;
/// for event in ev.poll_once(Some(Duration::from_secs(1)))? {
///     if let Event::DiskDone { request, result, .. } = event {
///         assert_eq!(request, id);
///         let _data = result?;
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DiskQueue {
    disk: Arc<Disk>,
    id: SourceId,
    next: AtomicU64,
    tx: Option<mpsc::Sender<(RequestId, DiskRequest)>>,
    worker: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for DiskQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskQueue")
            .field("disk", &self.disk)
            .field("source", &self.id)
            .finish_non_exhaustive()
    }
}

impl DiskQueue {
    /// Starts a worker for `disk` whose completions go to the loop behind
    /// `handle`.
    pub fn new(disk: Disk, handle: &LoopHandle) -> Result<DiskQueue, DiskError> {
        let disk = Arc::new(disk);
        let id = handle.allocate_id();
        let (tx, rx) = mpsc::channel::<(RequestId, DiskRequest)>();
        let worker_disk = disk.clone();
        let handle = handle.clone();
        let worker = thread::Builder::new()
            .name("vkernel-disk".into())
            .spawn(move || {
                for (request, req) in rx {
                    let result = worker_disk.execute(req);
                    handle.post(Event::DiskDone {
                        source: id,
                        request,
                        result,
                    });
                }
            })
            .map_err(DiskError::Spawn)?;
        Ok(DiskQueue {
            disk,
            id,
            next: AtomicU64::new(1),
            tx: Some(tx),
            worker: Some(worker),
        })
    }

    /// The id the queue's [`Event::DiskDone`] events carry.
    pub fn source_id(&self) -> SourceId {
        self.id
    }

    /// The disk, for synchronous I/O alongside the queue.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Queues a request; its completion arrives as [`Event::DiskDone`] with
    /// the returned id. Validation errors (range, read-only) are reported
    /// in the completion too.
    pub fn submit(&self, request: DiskRequest) -> Result<RequestId, DiskError> {
        let id = RequestId(self.next.fetch_add(1, Ordering::Relaxed));
        self.tx
            .as_ref()
            .ok_or(DiskError::QueueClosed)?
            .send((id, request))
            .map_err(|_| DiskError::QueueClosed)?;
        Ok(id)
    }
}

impl Drop for DiskQueue {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.worker.take() {
            if w.join().is_err() {
                log::warn!("disk worker thread panicked");
            }
        }
    }
}
