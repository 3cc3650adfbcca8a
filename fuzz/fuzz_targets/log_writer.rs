//! The CRI and JSON log writers' line splitting (`conmon/src/logs/`): `render::cri`,
//! `render::json`, the CRI timestamp, and `LogSet::write` into files in a temporary directory,
//! with and without a size limit.
//!
//! Input: byte 0 picks each chunk's stream (bit `i % 8` set: stderr), byte 1 the size limit
//! (0: none, else 8 bytes per unit), bytes 2..10 the seconds and 10..14 the nanoseconds of the
//! time (little endian), then the chunks, separated by 0x1E. Missing header bytes count as 0.
//!
//! Invariants: every record ends with '\n' and is whole (timestamp, stream, `F`/`P` tag for CRI;
//! one JSON object for JSON); only the last record of a chunk is partial; the records' contents
//! give back the chunk exactly (CRI: `F` lines plus a `P` line without its added '\n'; JSON:
//! messages, '\n' after each full one, equal the chunk read as lossy UTF-8); the timestamp reads
//! back as the time it was made from; a file without a limit holds every record; a file with a
//! limit holds a non-empty suffix of the records, within the limit unless it is one record.
#![no_main]

#[path = "scratch.rs"]
mod scratch;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conmon::fuzzing::{self, Stream};
use conmon::logs::{LogDriver, LogFormat, LogSet};
use libfuzzer_sys::fuzz_target;

const SEPARATOR: u8 = 0x1e;

fuzz_target!(|data: &[u8]| {
    let mut header = [0u8; 14];
    let len = data.len().min(header.len());
    header[..len].copy_from_slice(&data[..len]);
    let payload = &data[len..];
    let streams = header[0];
    let max_size = u64::from(header[1]) * 8;
    let secs = u64::from_le_bytes(header[2..10].try_into().unwrap());
    let nanos = u32::from_le_bytes(header[10..14].try_into().unwrap()) % 1_000_000_000;
    let Some(time) = UNIX_EPOCH.checked_add(Duration::new(secs, nanos)) else {
        return;
    };
    check_timestamp(time, secs, nanos);

    let dir = scratch::scratch_dir();
    let drivers = [LogFormat::Cri, LogFormat::Json].map(|format| LogDriver {
        format,
        path: dir.path().join(format!("ctr.{format:?}")),
        max_size,
    });
    let mut logs = LogSet::open("ctr", None, &drivers).expect("open logs");
    let (mut cri_records, mut json_records) = (Vec::new(), Vec::new());
    for (i, chunk) in payload.split(|&b| b == SEPARATOR).enumerate() {
        let stream = if streams >> (i % 8) & 1 == 1 {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let (buf, ends) = fuzzing::cri(stream, chunk, time);
        let records = split(&buf, &ends, chunk);
        check_cri(&records, stream, chunk, time);
        cri_records.extend(records.iter().map(|r| r.to_vec()));

        let (buf, ends) = fuzzing::json(stream, chunk, time);
        let records = split(&buf, &ends, chunk);
        check_json(&records, stream, chunk, secs);
        json_records.extend(records.iter().map(|r| r.to_vec()));

        logs.write(stream, chunk, time).expect("log write");
    }
    for (driver, records) in drivers.iter().zip([cri_records, json_records]) {
        let file = std::fs::read(&driver.path).expect("read log");
        check_file(&file, &records, max_size, &driver.path);
    }
});

/// The records of one rendered chunk, by their end offsets: one per line segment, together
/// all of `buf`, each ending with '\n'.
fn split<'a>(buf: &'a [u8], ends: &[usize], chunk: &[u8]) -> Vec<&'a [u8]> {
    assert_eq!(
        ends.len(),
        chunk.split_inclusive(|&b| b == b'\n').count(),
        "one record per line segment"
    );
    assert_eq!(
        ends.last().copied().unwrap_or(0),
        buf.len(),
        "ends cover the buffer"
    );
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            assert!(end > start, "record ends increase: {ends:?}");
            let record = &buf[start..end];
            start = end;
            assert!(
                record.ends_with(b"\n"),
                "record without newline: {record:?}"
            );
            record
        })
        .collect()
}

fn check_cri(records: &[&[u8]], stream: Stream, chunk: &[u8], time: SystemTime) {
    let mut prefix = fuzzing::rfc3339_nano(time);
    prefix.push(b' ');
    prefix.extend_from_slice(fuzzing::stream_name(stream).as_bytes());
    prefix.push(b' ');
    let mut content = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let rest = record
            .strip_prefix(prefix.as_slice())
            .unwrap_or_else(|| panic!("record without timestamp and stream: {record:?}"));
        let (tag, line) = (rest.get(..2), &rest[2.min(rest.len())..]);
        let body = &line[..line.len() - 1];
        assert!(!body.contains(&b'\n'), "record holds two lines: {record:?}");
        match tag {
            Some(b"F ") => content.extend_from_slice(line),
            Some(b"P ") => {
                assert_eq!(i, records.len() - 1, "partial record before the last");
                content.extend_from_slice(body);
            }
            _ => panic!("record without F/P tag: {record:?}"),
        }
    }
    assert_eq!(content, chunk, "CRI records do not give back the chunk");
}

fn check_json(records: &[&[u8]], stream: Stream, chunk: &[u8], secs: u64) {
    let mut content = String::new();
    for (i, record) in records.iter().enumerate() {
        assert!(
            !record[..record.len() - 1].contains(&b'\n'),
            "record holds two lines: {record:?}"
        );
        let value: serde_json::Value = serde_json::from_slice(record).expect("record is JSON");
        let object = value.as_object().expect("record is an object");
        assert_eq!(object["timestamp"].as_u64(), Some(secs));
        assert_eq!(object["pipe"].as_str(), Some(fuzzing::stream_name(stream)));
        content.push_str(object["message"].as_str().expect("message is a string"));
        match object.get("partial") {
            None => content.push('\n'),
            Some(serde_json::Value::Bool(true)) => {
                assert_eq!(i, records.len() - 1, "partial record before the last");
            }
            Some(other) => panic!("partial is {other}"),
        }
        let keys = 3 + usize::from(object.contains_key("partial"));
        assert_eq!(object.len(), keys, "unexpected fields: {value}");
    }
    assert_eq!(
        content,
        String::from_utf8_lossy(chunk),
        "JSON messages do not give back the chunk"
    );
}

/// A file holds every record (no limit), or a non-empty suffix of them within the limit (or
/// one record larger than it).
fn check_file(file: &[u8], records: &[Vec<u8>], max_size: u64, path: &std::path::Path) {
    if max_size == 0 || records.is_empty() {
        assert_eq!(file, records.concat(), "{}", path.display());
        return;
    }
    let mut kept = 0;
    let mut len = 0;
    while len < file.len() && kept < records.len() {
        len += records[records.len() - 1 - kept].len();
        kept += 1;
    }
    assert!(kept > 0, "{}: empty file after writes", path.display());
    assert_eq!(
        file,
        records[records.len() - kept..].concat(),
        "{}: not a suffix of the records",
        path.display()
    );
    assert!(
        file.len() as u64 <= max_size || kept == 1,
        "{}: {} bytes in {kept} records over the limit {max_size}",
        path.display(),
        file.len()
    );
}

/// The timestamp is `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (fraction without trailing zeros) and
/// reads back as `secs` and `nanos`.
fn check_timestamp(time: SystemTime, secs: u64, nanos: u32) {
    let text = String::from_utf8(fuzzing::rfc3339_nano(time)).expect("timestamp is ASCII");
    let bad = || -> ! { panic!("malformed timestamp {text:?} for {secs}.{nanos:09}") };
    let Some(rest) = text.strip_suffix('Z') else {
        bad()
    };
    let (whole, fraction) = rest.split_once('.').unwrap_or((rest, ""));
    let Some((date, clock)) = whole.split_once('T') else {
        bad()
    };
    let numbers = |text: &str, sep: char| -> Vec<u64> {
        text.split(sep)
            .map(|n| {
                if n.len() < 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
                    bad()
                }
                n.parse().unwrap_or_else(|_| bad())
            })
            .collect()
    };
    let (date, clock) = (numbers(date, '-'), numbers(clock, ':'));
    let (&[year, month, day], &[hour, minute, second]) = (date.as_slice(), clock.as_slice()) else {
        bad()
    };
    if whole.split_once('-').is_none_or(|(y, _)| y.len() < 4)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        bad()
    }
    let read_nanos = if fraction.is_empty() {
        0
    } else {
        if fraction.len() > 9
            || fraction.ends_with('0')
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            bad()
        }
        fraction.parse::<u32>().unwrap_or_else(|_| bad()) * 10u32.pow(9 - fraction.len() as u32)
    };
    let days = days_from_civil(year, month, day);
    let read_secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    assert_eq!((read_secs, read_nanos), (secs, nanos), "timestamp {text:?}");
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`,
/// for dates from 1970 on), the inverse of what the log writer formats.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
