use std::fs::File;

use super::*;

fn fds(n: usize) -> Vec<OwnedFd> {
    (0..n)
        .map(|_| File::open("/dev/null").unwrap().into())
        .collect()
}

fn request(store: &RefCell<Store>, connection: u64, header: u64, passed: usize) -> Option<Vec<u8>> {
    let received = sys::Received {
        len: 8,
        truncated: false,
        fds_truncated: false,
        fds: fds(passed),
    };
    answer(connection, store, &header.to_le_bytes(), received)
}

fn words(answer: &[u8]) -> Vec<u64> {
    answer
        .chunks(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .collect()
}

#[test]
fn slots_count_up_and_skip_those_in_use() {
    let store = RefCell::default();
    let first = request(&store, 1, (8 << 32) | 2, 2).unwrap();
    assert_eq!(words(&first), [(8 << 32) | 2, 1, 2]);
    store.borrow_mut().next_slot = u64::MAX - 1;
    let wrapped = request(&store, 1, (9 << 32) | 2, 2).unwrap();
    assert_eq!(words(&wrapped), [(9 << 32) | 2, u64::MAX, 3]);
}

#[test]
fn errors_carry_the_marker_the_go_client_checks_and_a_message() {
    let store = RefCell::default();
    let refused = request(&store, 1, (7 << 32) | 2, 1).unwrap();
    assert_eq!(words(&refused[..8]), [(7 << 32) | 0xffff_ffff]);
    assert_eq!(&refused[8..], b"received 1 fds, but expected 2 fds");
    assert!(store.borrow().slots.is_empty());
    let short = sys::Received {
        len: 3,
        truncated: false,
        fds_truncated: false,
        fds: Vec::new(),
    };
    let refused = answer(1, &store, &[1, 2, 3, 0, 0, 0, 0, 0, 0], short).unwrap();
    assert!(String::from_utf8_lossy(&refused[8..]).contains("was 3"));
}

#[test]
fn the_zero_header_closes_only_that_connections_fds() {
    let store = RefCell::default();
    request(&store, 1, (1 << 32) | 2, 2);
    request(&store, 2, (1 << 32) | 1, 1);
    assert_eq!(request(&store, 1, 0, 0), None);
    let left: Vec<u64> = store
        .borrow()
        .slots
        .values()
        .map(|(owner, _)| *owner)
        .collect();
    assert_eq!(left, [2]);
}

#[test]
fn taking_is_all_or_nothing() {
    let socket = FdSocket::new(Path::new("/nonexistent"));
    request(&socket.store, 1, (1 << 32) | 2, 2);
    let missing = socket.take(&[1, 5]).unwrap_err().to_string();
    assert!(
        missing.contains("no file descriptor in slot 5"),
        "{missing}"
    );
    assert!(socket.take(&[1, 1]).is_err());
    assert_eq!(socket.store.borrow().slots.len(), 2);
    assert_eq!(socket.take(&[2, 1]).unwrap().len(), 2);
    assert!(socket.store.borrow().slots.is_empty());
}

#[test]
fn the_store_has_a_limit() {
    let store = RefCell::default();
    for _ in 0..MAX_STORED / 253 {
        request(&store, 1, 253, 253);
    }
    let refused = request(&store, 1, 253, 253).unwrap();
    assert!(String::from_utf8_lossy(&refused[8..]).contains("at most 1024"));
}
