//! Checks on request fields, made before anything acts on them, so that a bad field is an
//! error naming it rather than a failure somewhere later.

use crate::error::MonitorError;

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
    fn commands_need_a_program_and_no_nul() {
        command(&["sh".into(), "-c".into(), "true".into()]).unwrap();
        assert!(message(command(&[])).contains("is empty"));
        assert!(message(command(&[String::new()])).contains("empty program"));
        assert!(message(command(&["echo".into(), "a\0b".into()])).contains("NUL"));
    }
}
