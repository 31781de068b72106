//! `aetherflow-unix`: SQLite's own unix VFS, except that each WAL frame reaches the file in
//! one write instead of two.
//!
//! SQLite writes a WAL frame as its 24-byte header and then the page after it, two `pwrite`
//! calls. On Linux each buffered write pays a fixed cost (the syscall, the inode lock, the
//! page-cache lookup) that is larger than copying 4 KiB, and a step transition writes one
//! to four frames. This VFS holds a frame header back until the page that follows it
//! arrives, then writes both with one call.
//!
//! Nothing else changes. The database, its rollback journal and the WAL index are opened
//! by the unix VFS itself, with its own methods, so their locking and memory mapping are
//! SQLite's. For the WAL file, every other method first writes a held header out (so a
//! read, size, sync, truncate or close sees exactly what SQLite wrote). A header is held
//! only between the two writes of one frame. A frame is valid only once its page and
//! checksum are in the file, and SQLite publishes a commit to other connections only
//! after all its frames are written. So a crash while a header is held loses a frame
//! that was not valid yet, as a crash between SQLite's two writes would.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the VFS is registered under.
pub const NAME: &CStr = c"aetherflow-unix";

/// Size of a WAL frame header (`WAL_FRAME_HDRSIZE` in SQLite's wal.c).
const FRAME_HEADER: usize = 24;

/// The registered VFS name, or `None` when SQLite has no default VFS to wrap (then the
/// store uses SQLite's default).
pub fn name() -> Option<&'static CStr> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which lives as long as
        // the process. The copy is leaked, so it does too, as SQLite requires of a
        // registered VFS.
        unsafe {
            if ffi::sqlite3_initialize() != ffi::SQLITE_OK {
                return false;
            }
            let real = ffi::sqlite3_vfs_find(std::ptr::null());
            if real.is_null() || (*real).xOpen.is_none() {
                return false;
            }
            let mut vfs: ffi::sqlite3_vfs = std::ptr::read(real);
            vfs.szOsFile =
                (std::mem::size_of::<WalFile>() as c_int).saturating_add((*real).szOsFile);
            vfs.zName = NAME.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.pAppData = real.cast();
            vfs.xOpen = Some(x_open);
            let vfs = Box::leak(Box::new(vfs));
            ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK
        }
    });
    ok.then_some(NAME)
}

/// Frames written with one call (tests).
#[cfg(test)]
static JOINED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A WAL file: SQLite's own file object follows this header in the same allocation.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    /// Offset of the held frame header, or -1.
    held_at: i64,
    held: [u8; FRAME_HEADER],
    /// Header and page joined for the one write (kept between frames; freed at close).
    joined: *mut Vec<u8>,
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: Some(wal_shm_map),
    xShmLock: Some(wal_shm_lock),
    xShmBarrier: Some(wal_shm_barrier),
    xShmUnmap: Some(wal_shm_unmap),
    xFetch: Some(wal_fetch),
    xUnfetch: Some(wal_unfetch),
};

unsafe fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    (*vfs).pAppData.cast()
}

/// SQLite's own file object, right after our header.
unsafe fn real(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    file.cast::<u8>().add(std::mem::size_of::<WalFile>()).cast()
}

unsafe fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    &*(*real(file)).pMethods
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real_vfs = real_vfs(vfs);
    let open = (*real_vfs).xOpen.expect("checked at registration");
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Not a WAL file: SQLite's file object takes the whole slot, with its own methods.
        return open(real_vfs, name, file, flags, out_flags);
    }
    let wal = file.cast::<WalFile>();
    (*wal).base.pMethods = std::ptr::null();
    let rc = open(real_vfs, name, real(file), flags, out_flags);
    if rc != ffi::SQLITE_OK || (*real(file)).pMethods.is_null() {
        return rc;
    }
    (*wal).held_at = -1;
    (*wal).held = [0; FRAME_HEADER];
    (*wal).joined = Box::into_raw(Box::new(Vec::new()));
    (*wal).base.pMethods = &WAL_METHODS;
    rc
}

/// Writes a held header out, if any.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    let wal = file.cast::<WalFile>();
    if (*wal).held_at < 0 {
        return ffi::SQLITE_OK;
    }
    let at = (*wal).held_at;
    (*wal).held_at = -1;
    let write = methods(file).xWrite.expect("unix VFS writes");
    write(
        real(file),
        (*wal).held.as_ptr().cast(),
        FRAME_HEADER as c_int,
        at,
    )
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let wal = file.cast::<WalFile>();
    let write = methods(file).xWrite.expect("unix VFS writes");
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    if (*wal).held_at >= 0 && offset == (*wal).held_at + FRAME_HEADER as i64 {
        // The page that follows the held header: one write for both.
        #[cfg(test)]
        JOINED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let joined = &mut *(*wal).joined;
        joined.clear();
        joined.extend_from_slice(&(*wal).held);
        joined.extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
        let at = (*wal).held_at;
        (*wal).held_at = -1;
        return match c_int::try_from(joined.len()) {
            Ok(n) => write(real(file), joined.as_ptr().cast(), n, at),
            Err(_) => ffi::SQLITE_IOERR_WRITE,
        };
    }
    let rc = flush(file);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    if len == FRAME_HEADER {
        // Only frame headers are this size in a WAL file (its own header is 32 bytes).
        std::ptr::copy_nonoverlapping(data.cast::<u8>(), (*wal).held.as_mut_ptr(), FRAME_HEADER);
        (*wal).held_at = offset;
        return ffi::SQLITE_OK;
    }
    write(real(file), data, amount, offset)
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    let wal = file.cast::<WalFile>();
    let flushed = flush(file);
    let close = methods(file).xClose.expect("unix VFS closes");
    let closed = close(real(file));
    if !(*wal).joined.is_null() {
        drop(Box::from_raw((*wal).joined));
        (*wal).joined = std::ptr::null_mut();
    }
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// The other methods: write a held header out, then do what the unix VFS does.
macro_rules! flushed_then {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            match methods(file).$method {
                Some(f) => f(real(file) $(, $arg)*),
                None => ffi::SQLITE_IOERR,
            }
        }
    };
}

flushed_then!(wal_read, xRead, (data: *mut c_void, amount: c_int, offset: i64));
flushed_then!(wal_truncate, xTruncate, (size: i64));
flushed_then!(wal_sync, xSync, (flags: c_int));
flushed_then!(wal_file_size, xFileSize, (size: *mut i64));
flushed_then!(wal_lock, xLock, (level: c_int));
flushed_then!(wal_unlock, xUnlock, (level: c_int));
flushed_then!(wal_check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
flushed_then!(wal_file_control, xFileControl, (op: c_int, arg: *mut c_void));
flushed_then!(wal_shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void));
flushed_then!(wal_shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int));
flushed_then!(wal_shm_unmap, xShmUnmap, (delete: c_int));
flushed_then!(wal_fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void));
flushed_then!(wal_unfetch, xUnfetch, (offset: i64, page: *mut c_void));

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    match methods(file).xSectorSize {
        Some(f) => f(real(file)),
        None => 4096,
    }
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    match methods(file).xDeviceCharacteristics {
        Some(f) => f(real(file)),
        None => 0,
    }
}

unsafe extern "C" fn wal_shm_barrier(file: *mut ffi::sqlite3_file) {
    let _ = flush(file);
    if let Some(f) = methods(file).xShmBarrier {
        f(real(file));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use rusqlite::{Connection, OpenFlags};

    use super::*;

    fn ours(path: &std::path::Path, sync: &str) -> Connection {
        let c = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), name().unwrap())
            .unwrap();
        c.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v TEXT NOT NULL);"
        ))
        .unwrap();
        c
    }

    /// Rows, total length of their values and the integrity check, read with SQLite's
    /// default VFS.
    fn read_plain(path: &std::path::Path) -> (i64, i64, String) {
        let c = Connection::open(path).unwrap();
        let (n, len) = c
            .query_row(
                "SELECT count(*), coalesce(sum(length(v)), 0) FROM t",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let check = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        (n, len, check)
    }

    fn value(i: i64) -> String {
        // Some values span several pages (overflow pages: several frames in one commit).
        let n = if i % 7 == 0 {
            9000 + i as usize
        } else {
            10 + i as usize % 300
        };
        format!("{i}:").repeat(n / 3 + 1)
    }

    fn write_rows(c: &Connection, range: std::ops::Range<i64>) -> i64 {
        let mut len = 0;
        for i in range {
            let v = value(i);
            len += v.len() as i64;
            c.execute(
                "INSERT INTO t(k, v) VALUES(?1, ?2)",
                rusqlite::params![i, v],
            )
            .unwrap();
        }
        len
    }

    #[test]
    fn wal_frames_are_written_whole_and_read_by_sqlites_own_vfs() {
        for sync in ["NORMAL", "FULL"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.db");
            let c = ours(&path, sync);
            let before = JOINED.load(Ordering::Relaxed);
            let len = write_rows(&c, 0..200);
            assert!(
                JOINED.load(Ordering::Relaxed) - before >= 200,
                "every commit wrote its frames through the joined path ({sync})"
            );
            // Another connection, on SQLite's default VFS, sees every commit while ours
            // is still open (the frames are only in the WAL: no checkpoint ran).
            assert_eq!(read_plain(&path), (200, len, "ok".to_string()), "{sync}");
            // A copy of the files as they are now is what a killed process leaves.
            let copy = dir.path().join("copy");
            std::fs::create_dir(&copy).unwrap();
            for suffix in ["", "-wal"] {
                std::fs::copy(
                    format!("{}{suffix}", path.display()),
                    format!("{}/s.db{suffix}", copy.display()),
                )
                .unwrap();
            }
            assert_eq!(
                read_plain(&copy.join("s.db")),
                (200, len, "ok".to_string()),
                "{sync}"
            );
            // Writes through both VFSs interleave on one database.
            let plain = Connection::open(&path).unwrap();
            let more = write_rows(&plain, 200..210) + write_rows(&c, 210..220);
            drop(plain);
            drop(c);
            assert_eq!(
                read_plain(&path),
                (220, len + more, "ok".to_string()),
                "{sync}"
            );
        }
    }
}
