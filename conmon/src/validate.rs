//! Checks on request fields, made before anything acts on them, so that a bad field is an
//! error naming it rather than a failure somewhere later.

use std::path::Path;

use crate::error::MonitorError;
use crate::sys;

/// Longest container ID accepted; IDs become parts of file names (at most 255 bytes).
const MAX_ID_LEN: usize = 200;

/// A container ID as runc accepts it: 1 to 200 of `A-Z a-z 0-9 _ + - .`, not `.` or `..`.
pub(crate) fn container_id(id: &str) -> Result<(), MonitorError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
    let problem = if id.is_empty() {
        "is empty"
    } else if id.len() > MAX_ID_LEN {
        "is longer than 200 bytes"
    } else if id == "." || id == ".." || !id.chars().all(allowed) {
        "may hold only letters, digits, '_', '+', '-' and '.'"
    } else {
        return Ok(());
    };
    Err(MonitorError::InvalidRequest(format!(
        "container id {id:.64?} {problem}"
    )))
}

/// A path the monitor creates or opens for a client: absolute, since the monitor's working
/// directory is nobody's business (`what` names the field in the error).
pub(crate) fn absolute(what: &str, path: &Path) -> Result<(), MonitorError> {
    if path.is_absolute() {
        return Ok(());
    }
    Err(MonitorError::InvalidRequest(format!(
        "{what} '{}' is not an absolute path",
        path.display()
    )))
}

/// A directory where exit files will be written: it exists, and its file system is writable
/// and not full (an exit file that cannot be written later is an error no one sees).
pub(crate) fn exit_file_dir(path: &Path) -> Result<(), MonitorError> {
    absolute("exit file", path)?;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    let Some(dir) = dir else {
        return Err(exit_path_error(path, "has no directory".into()));
    };
    let problem = match (std::fs::metadata(dir), sys::fs_space(dir)) {
        (Err(err), _) | (_, Err(err)) => format!("is in a directory that cannot be used: {err}"),
        (Ok(meta), _) if !meta.is_dir() => "is in something that is not a directory".into(),
        (_, Ok((true, _))) => "is on a read-only file system".into(),
        (_, Ok((false, 0))) => "is on a full file system".into(),
        _ => return Ok(()),
    };
    Err(exit_path_error(path, problem))
}

fn exit_path_error(path: &Path, problem: String) -> MonitorError {
    MonitorError::InvalidRequest(format!("exit file '{}' {problem}", path.display()))
}

/// A command to run: a non-empty program name, and no argument with a NUL byte (which no
/// `execve` argument can hold).
pub(crate) fn command(command: &[String]) -> Result<(), MonitorError> {
    let problem = match command.first() {
        None => "is empty",
        Some(program) if program.is_empty() => "has an empty program name",
        Some(_) if command.iter().any(|arg| arg.contains('\0')) => {
            "has an argument with a NUL byte"
        }
        Some(_) => return Ok(()),
    };
    Err(MonitorError::InvalidRequest(format!(
        "exec command {problem}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<(), MonitorError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn container_ids_follow_runc_rules() {
        for good in ["a", "golden-ctr", "x_y+z.1", &"f".repeat(64)] {
            container_id(good).unwrap();
        }
        assert!(message(container_id("")).contains("is empty"));
        assert!(message(container_id("..")).contains("may hold only"));
        assert!(message(container_id("../etc")).contains("may hold only"));
        assert!(message(container_id("a/b")).contains("may hold only"));
        assert!(message(container_id("a\0b")).contains("may hold only"));
        assert!(message(container_id(&"f".repeat(201))).contains("longer than 200"));
    }

    #[test]
    fn exit_file_directories_must_exist_and_be_writable() {
        let dir = tempfile::tempdir().unwrap();
        exit_file_dir(&dir.path().join("exit")).unwrap();
        let err = message(exit_file_dir(&dir.path().join("missing/exit")));
        assert!(err.contains("cannot be used"), "{err}");
        let err = message(exit_file_dir(Path::new("/proc/1/exit")));
        assert!(err.contains("read-only") || err.contains("full"), "{err}");
    }

    #[test]
    fn relative_paths_are_refused_with_the_field_name() {
        absolute("log file", Path::new("/var/log/x")).unwrap();
        let err = message(absolute("log file", Path::new("x.log")));
        assert!(
            err.contains("log file 'x.log' is not an absolute path"),
            "{err}"
        );
        let err = message(exit_file_dir(Path::new("exit")));
        assert!(
            err.contains("exit file 'exit' is not an absolute path"),
            "{err}"
        );
    }

    #[test]
    fn commands_need_a_program_and_no_nul() {
        command(&["sh".into(), "-c".into(), "true".into()]).unwrap();
        assert!(message(command(&[])).contains("is empty"));
        assert!(message(command(&[String::new()])).contains("empty program"));
        assert!(message(command(&["echo".into(), "a\0b".into()])).contains("NUL"));
    }
}
