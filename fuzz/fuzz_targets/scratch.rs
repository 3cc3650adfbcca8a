//! Scratch space shared by the fuzz targets that write files.

/// A fresh directory for one input's files: in /dev/shm (memory, twice as fast as a disk
/// /tmp) unless TMPDIR says where.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let base = match std::env::var_os("TMPDIR") {
        None if shm.is_dir() => shm.to_owned(),
        _ => std::env::temp_dir(),
    };
    tempfile::Builder::new()
        .prefix("conmon-fuzz-")
        .tempdir_in(base)
        .expect("temporary directory")
}
