//! Layout detection on requests built here in both layouts; `proto/tests/golden/` runs it on
//! requests captured from the two Go clients.

use std::collections::BTreeMap;
use std::path::PathBuf;

use capnp::message::{Builder, HeapAllocator};

use super::*;
use crate::types::{CreateContainer, CreateNamespaces, ExecSync, Namespace};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn carrier() -> BTreeMap<String, String> {
    BTreeMap::from([("traceparent".to_string(), TRACEPARENT.to_string())])
}

fn create() -> CreateContainer {
    CreateContainer {
        id: "ctr".into(),
        bundle: PathBuf::from("/bundle"),
        env: BTreeMap::from([("KEY".into(), "value".into())]),
        additional_fds: vec![7],
        leak_fds: vec![8, 9],
        ..CreateContainer::default()
    }
}

/// A v1.0-layout `createContainer` request, with `metadata` entries if given.
fn v1_create(metadata: Option<&BTreeMap<String, String>>) -> Builder<HeapAllocator> {
    let mut message = Builder::new_default();
    let mut request = message.init_root::<conmon::create_container_request::Builder<'_>>();
    create().write(request.reborrow()).unwrap();
    if let Some(metadata) = metadata {
        let list = request.init_metadata(u32::try_from(metadata.len()).unwrap());
        crate::map::write(list, metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    message
}

/// Rewrites a v1.0-layout request into the old layout: `metadata_old` (null if `None`)
/// inserted at `slot`, every later pointer one slot up, as conmon-rs's v0.6 schema has it.
fn old_layout(
    v1: &Builder<HeapAllocator>,
    slot: u32,
    metadata_old: Option<&[u8]>,
) -> Builder<HeapAllocator> {
    let source = v1.get_root_as_reader::<RawStruct<'_>>().unwrap().0;
    old_layout_of(v1, slot, metadata_old, pointer_count(source))
}

/// [`old_layout`] of only the first `size` pointers of `v1` (those conmon-rs v1.0 had).
fn old_layout_of(
    v1: &Builder<HeapAllocator>,
    slot: u32,
    metadata_old: Option<&[u8]>,
    size: u16,
) -> Builder<HeapAllocator> {
    let source = v1.get_root_as_reader::<RawStruct<'_>>().unwrap().0;
    let data_words = 2; // enough for every request here; unused words stay zero
    let mut message = Builder::new_default();
    let mut target = message
        .init_root::<RawPointer<'_>>()
        .0
        .init_struct(StructSize {
            data: data_words,
            pointers: size + 1,
        });
    for word in 0..usize::from(data_words) {
        target.set_data_field::<u64>(word, source.get_data_field::<u64>(word));
    }
    for index in 0..u32::from(size) {
        let to = if index < slot { index } else { index + 1 };
        any_pointer::Builder::new(target.reborrow().get_pointer_field(to as usize))
            .set_as::<any_pointer::Owned>(any_pointer::Reader::new(
                source.get_pointer_field(index as usize),
            ))
            .unwrap();
    }
    if let Some(bytes) = metadata_old {
        target
            .reborrow()
            .get_pointer_field(slot as usize)
            .set_data(bytes);
    }
    message
}

/// Reads `message` as a `createContainer` request through the layout detection, which must
/// find `layout`, [`create`]'s fields and the trace context `carrier`.
fn assert_create(
    message: &Builder<HeapAllocator>,
    layout: Layout,
    carrier: &BTreeMap<String, String>,
) {
    let request = message
        .get_root_as_reader::<conmon::create_container_request::Reader<'_>>()
        .unwrap();
    let incoming = Incoming::new(request).unwrap();
    assert_eq!(incoming.layout(), layout);
    // Environment and descriptor slots come from their own slots, not shifted ones.
    assert_eq!(
        CreateContainer::read(incoming.request().unwrap()).unwrap(),
        create()
    );
    assert_eq!(&incoming.trace_carrier().unwrap(), carrier);
}

#[test]
fn v1_requests_are_read_as_they_are() {
    assert_create(&v1_create(Some(&carrier())), Layout::V1_0, &carrier());
}

#[test]
fn v1_request_with_an_empty_metadata_list_is_v1() {
    assert_create(
        &v1_create(Some(&BTreeMap::new())),
        Layout::V1_0,
        &BTreeMap::new(),
    );
}

#[test]
fn v1_request_without_metadata_is_v1() {
    assert_create(&v1_create(None), Layout::V1_0, &BTreeMap::new());
}

#[test]
fn old_request_is_read_in_the_new_layout_with_its_entries() {
    let json = serde_json::to_vec(&carrier()).unwrap();
    let old = old_layout(&v1_create(Some(&carrier())), 8, Some(&json));
    assert_create(&old, Layout::V0_6, &carrier());
}

#[test]
fn old_request_with_only_the_json_carrier_gives_its_parent() {
    let json = serde_json::to_vec(&carrier()).unwrap();
    let old = old_layout(&v1_create(None), 8, Some(&json));
    assert_create(&old, Layout::V0_6, &carrier());
}

#[test]
fn old_request_with_an_empty_metadata_old_is_old() {
    let old = old_layout(&v1_create(None), 8, Some(b""));
    assert_create(&old, Layout::V0_6, &BTreeMap::new());
}

#[test]
fn untraced_old_request_is_told_by_its_pointer_count() {
    let old = old_layout(&v1_create(None), 8, None);
    assert_create(&old, Layout::V0_6, &BTreeMap::new());
}

#[test]
fn malformed_json_carrier_is_an_error_naming_it() {
    let old = old_layout(&v1_create(None), 8, Some(b"{\"traceparent\": 1}"));
    let request = old
        .get_root_as_reader::<conmon::create_container_request::Reader<'_>>()
        .unwrap();
    let incoming = Incoming::new(request).unwrap();
    let err = incoming.trace_carrier().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("metadataOld is not a JSON object of strings"),
        "{err}"
    );
    // The request itself still reads.
    assert_eq!(
        CreateContainer::read(incoming.request().unwrap()).unwrap(),
        create()
    );
}

#[test]
fn old_exec_sync_keeps_its_environment() {
    let exec = ExecSync {
        id: "ctr".into(),
        command: vec!["true".into()],
        env: BTreeMap::from([("A".into(), "b".into())]),
        ..ExecSync::default()
    };
    let mut v1 = Builder::new_default();
    exec.write(v1.init_root());
    for metadata_old in [None, Some(&b"{}"[..])] {
        let old = old_layout(&v1, 2, metadata_old);
        let request = old
            .get_root_as_reader::<conmon::exec_sync_container_request::Reader<'_>>()
            .unwrap();
        let incoming = Incoming::new(request).unwrap();
        assert_eq!(incoming.layout(), Layout::V0_6);
        assert_eq!(ExecSync::read(incoming.request().unwrap()).unwrap(), exec);
    }
}

#[test]
fn old_create_namespaces_has_metadata_old_first() {
    let namespaces = CreateNamespaces {
        namespaces: vec![Namespace::Ipc, Namespace::Net],
        uid_mappings: vec!["0 1000 1".into()],
        gid_mappings: vec![],
        base_path: PathBuf::from("/ns"),
        pod_id: "pod".into(),
        sysctls: BTreeMap::new(),
    };
    let mut v1 = Builder::new_default();
    namespaces.write(v1.init_root()).unwrap();
    for metadata_old in [None, Some(&b"{}"[..])] {
        // conmon-rs v0.6's struct: v1.0's six pointers plus `metadataOld`, without `sysctls`.
        let old = old_layout_of(&v1, 0, metadata_old, 6);
        let request = old
            .get_root_as_reader::<conmon::create_namespaces_request::Reader<'_>>()
            .unwrap();
        let incoming = Incoming::new(request).unwrap();
        assert_eq!(incoming.layout(), Layout::V0_6);
        assert_eq!(
            CreateNamespaces::read(incoming.request().unwrap()).unwrap(),
            namespaces
        );
    }
    let request = v1
        .get_root_as_reader::<conmon::create_namespaces_request::Reader<'_>>()
        .unwrap();
    assert_eq!(Incoming::new(request).unwrap().layout(), Layout::V1_0);
}

#[test]
fn create_namespaces_with_sysctls_and_no_namespaces_is_v1_0() {
    let namespaces = CreateNamespaces {
        pod_id: "pod".into(),
        sysctls: BTreeMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
        ..CreateNamespaces::default()
    };
    let mut v1 = Builder::new_default();
    namespaces.write(v1.init_root()).unwrap();
    let request = v1
        .get_root_as_reader::<conmon::create_namespaces_request::Reader<'_>>()
        .unwrap();
    let incoming = Incoming::new(request).unwrap();
    assert_eq!(incoming.layout(), Layout::V1_0);
    assert_eq!(
        CreateNamespaces::read(incoming.request().unwrap()).unwrap(),
        namespaces
    );
}

#[test]
fn version_answer_has_the_old_layouts_ninth_pointer_for_old_clients() {
    for (layout, pointers) in [(Layout::V1_0, 8), (Layout::V0_6, 9)] {
        let mut message = Builder::new_default();
        let results = message.init_root::<any_pointer::Builder<'_>>();
        version_response_in(results, layout)
            .unwrap()
            .set_version("1.2.3");
        let root = message.get_root_as_reader::<RawStruct<'_>>().unwrap().0;
        let response = root.get_pointer_field(0).get_struct(None).unwrap();
        assert_eq!(pointer_count(response), pointers, "{layout:?}");
        let response = conmon::version_response::Reader::from(response);
        assert_eq!(response.get_version().unwrap().to_str().unwrap(), "1.2.3");
    }
}

/// The transport limits what a message may make the reader traverse to about its own size:
/// telling the layouts apart must not read a request a second time.
#[test]
fn requests_are_read_once_within_the_read_limit() {
    let mut big = create();
    big.command_args = vec!["x".repeat(1 << 20)];
    let mut v1 = Builder::new_default();
    big.write(v1.init_root()).unwrap();
    let old = old_layout(&v1, 8, None);
    for message in [v1, old] {
        let words = capnp::serialize::write_message_to_words(&message);
        let mut options = capnp::message::ReaderOptions::new();
        options.traversal_limit_in_words(Some(words.len() / 8 + 64));
        let reader = capnp::serialize::read_message(&mut words.as_slice(), options).unwrap();
        let request = reader
            .get_root::<conmon::create_container_request::Reader<'_>>()
            .unwrap();
        let incoming = Incoming::new(request).unwrap();
        let read = CreateContainer::read(incoming.request().unwrap()).unwrap();
        assert_eq!(read.command_args, big.command_args);
    }
}
