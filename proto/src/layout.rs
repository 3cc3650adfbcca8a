//! conmon-rs's two request layouts, told apart per request.
//!
//! Up to v0.8, conmon-rs's schema had `metadataOld :Data` (the trace carrier as JSON) in the
//! pointer slot where v1.0 has `metadata`, and `metadata` one slot later; v1.0 turned
//! `metadataOld` into `Void`, which moved every later pointer field one slot down. Clients of
//! the Go module `github.com/containers/conmon-rs` v0.6.x (linked by CRI-O ≤ 1.34) write the old
//! layout, v1.0.x the new one, and both speak the same interface id and method ordinals, so
//! only the message itself says which layout it is in:
//!
//! - the slot holds a byte list: only the old `metadataOld` (`Data`) is one; in v1.0 the slot is
//!   `metadata` (a struct list) or, in `CreateNamespacesRequest`, `namespaces` (an enum list);
//! - the slot is null (a client with tracing off writes neither carrier): the struct's pointer
//!   section, as the client's schema sized it, has v1.0's pointer count plus one in the old
//!   layout.
//!
//! An old-layout request is copied into a v1.0-layout message without the `metadataOld` slot,
//! so every reader of the codec sees v1.0's layout; the JSON carrier is kept for tracing.

use std::collections::BTreeMap;

use capnp::private::layout::{PointerBuilder, PointerReader, StructReader, StructSize};
use capnp::traits::{
    FromPointerBuilder, FromPointerReader, HasStructSize, IntoInternalStructReader,
};
use capnp::{any_pointer, data, message, struct_list};

use crate::conmon;

/// Which generation of conmon-rs's schema a client wrote its request in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Up to conmon-rs v0.8 (Go client v0.6.x, CRI-O ≤ 1.34): with `metadataOld :Data`.
    V0_6,
    /// conmon-rs v1.0 and this crate's schema.
    V1_0,
}

impl Layout {
    /// A short name for logs and span attributes.
    pub fn name(self) -> &'static str {
        match self {
            Self::V0_6 => "v0.6",
            Self::V1_0 => "v1.0",
        }
    }
}

/// A request struct of the `Conmon` interface, with where its metadata sits in each layout.
pub trait Request<'a>: From<StructReader<'a>> + IntoInternalStructReader<'a> {
    /// The struct's size in v1.0's layout.
    const SIZE: StructSize;
    /// v1.0's pointer slot of `metadata`.
    const METADATA_SLOT: u32;
    /// The pointer slot the old layout's `metadataOld` was inserted before, in v1.0's
    /// numbering; `None` for requests whose layout did not change.
    const LEGACY_SLOT: Option<u32>;
    /// v1.0's pointer count, which this crate's schema may exceed with appended fields.
    const V1_0_POINTERS: u16 = Self::SIZE.pointers;
}

macro_rules! requests {
    ($($request:ident: metadata $metadata:literal, legacy $legacy:expr
        $(, v1_0_pointers $pointers:literal)?;)*) => {$(
        impl<'a> Request<'a> for conmon::$request::Reader<'a> {
            const SIZE: StructSize =
                <conmon::$request::Builder<'static> as HasStructSize>::STRUCT_SIZE;
            const METADATA_SLOT: u32 = $metadata;
            const LEGACY_SLOT: Option<u32> = $legacy;
            $(const V1_0_POINTERS: u16 = $pointers;)?
        }
    )*};
}

requests! {
    version_request: metadata 0, legacy Some(0);
    create_container_request: metadata 8, legacy Some(8);
    exec_sync_container_request: metadata 2, legacy Some(2);
    attach_request: metadata 3, legacy Some(3);
    reopen_log_request: metadata 1, legacy Some(1);
    set_window_size_request: metadata 1, legacy Some(1);
    // conmond appended `sysctls`.
    create_namespaces_request: metadata 5, legacy Some(0), v1_0_pointers 6;
    start_fd_socket_request: metadata 0, legacy None;
    serve_exec_container_request: metadata 0, legacy None;
    serve_attach_container_request: metadata 0, legacy None;
    serve_port_forward_container_request: metadata 0, legacy None;
}

/// A request as received, readable in v1.0's layout whichever layout the client wrote.
pub struct Incoming<'a> {
    layout: Layout,
    view: View<'a>,
    metadata_slot: u32,
    /// The old layout's `metadataOld` bytes.
    legacy_carrier: Vec<u8>,
}

enum View<'a> {
    /// The client's own message, already in v1.0's layout.
    Wire(StructReader<'a>),
    /// A v1.0-layout copy of an old-layout request.
    Copied(message::Builder<message::HeapAllocator>),
}

impl std::fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl<'a> Incoming<'a> {
    /// Works out `request`'s layout and makes it readable in v1.0's.
    ///
    /// # Errors
    /// A malformed message, or one over the reader's traversal limit when copied.
    pub fn new<R: Request<'a>>(request: R) -> capnp::Result<Self> {
        let wire = request.into_internal_struct_reader();
        let mut incoming = Self {
            layout: Layout::V1_0,
            view: View::Wire(wire),
            metadata_slot: R::METADATA_SLOT,
            legacy_carrier: Vec::new(),
        };
        let Some(slot) = R::LEGACY_SLOT else {
            return Ok(incoming);
        };
        if let Some(carrier) = legacy_carrier(wire, slot, R::V1_0_POINTERS) {
            incoming.layout = Layout::V0_6;
            incoming.legacy_carrier = carrier.to_vec();
            incoming.view = View::Copied(without_slot(wire, slot, R::SIZE)?);
        }
        Ok(incoming)
    }

    /// The layout the client wrote.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The request, in v1.0's layout.
    ///
    /// # Errors
    /// A malformed message.
    pub fn request<'b, R: Request<'b>>(&'b self) -> capnp::Result<R> {
        Ok(R::from(self.view()?))
    }

    /// The caller's trace context: the `metadata` entries, or, for an old-layout request
    /// without entries, its JSON `metadataOld`.
    ///
    /// # Errors
    /// Malformed entries, or a `metadataOld` that is not a JSON object of strings.
    pub fn trace_carrier(&self) -> Result<BTreeMap<String, String>, CarrierError> {
        let pointer = self.view()?.get_pointer_field(self.metadata_slot as usize);
        let entries: struct_list::Reader<'_, conmon::text_text_map_entry::Owned> =
            FromPointerReader::get_from_pointer(&pointer, None)?;
        let carrier = crate::map::read(entries)?;
        if carrier.is_empty() && !self.legacy_carrier.is_empty() {
            return Ok(serde_json::from_slice(&self.legacy_carrier)?);
        }
        Ok(carrier)
    }

    fn view(&self) -> capnp::Result<StructReader<'_>> {
        match &self.view {
            View::Wire(reader) => Ok(*reader),
            View::Copied(message) => Ok(message.get_root_as_reader::<RawStruct<'_>>()?.0),
        }
    }
}

/// Why a request's trace context could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    /// The `metadata` entries are malformed.
    #[error("metadata entries: {0}")]
    Entries(#[from] capnp::Error),
    /// The old layout's `metadataOld` is not a JSON object of strings.
    #[error("metadataOld is not a JSON object of strings: {0}")]
    LegacyJson(#[from] serde_json::Error),
}

/// The old layout's `metadataOld` bytes (empty when null) if `request` is in the old layout,
/// `None` if it is in v1.0's.
fn legacy_carrier<'a>(
    request: StructReader<'a>,
    slot: u32,
    pointers: u16,
) -> Option<data::Reader<'a>> {
    let pointer = request.get_pointer_field(slot as usize);
    if pointer.is_null() {
        return (pointer_count(request) == pointers + 1).then_some(&[][..]);
    }
    // Reading `Data` succeeds exactly for a byte list.
    data::Reader::get_from_pointer(&pointer, None).ok()
}

/// The pointer count the client gave the struct, read from the struct pointer: no
/// traversal, so nothing is charged to the message's read limit.
fn pointer_count(request: StructReader<'_>) -> u16 {
    let pointers = capnp::raw::get_struct_pointer_section(RawStruct(request)).len();
    u16::try_from(pointers).unwrap_or(u16::MAX)
}

/// Copies an old-layout request into a v1.0-layout message: the same data section, and every
/// pointer but the one at `slot`.
fn without_slot(
    request: StructReader<'_>,
    slot: u32,
    size: StructSize,
) -> capnp::Result<message::Builder<message::HeapAllocator>> {
    let mut message = message::Builder::new_default();
    let mut target = message.init_root::<RawPointer<'_>>().0.init_struct(size);
    for word in 0..usize::from(size.data) {
        target.set_data_field::<u64>(word, request.get_data_field::<u64>(word));
    }
    for index in 0..u32::from(size.pointers) {
        let from = if index < slot { index } else { index + 1 };
        let source = any_pointer::Reader::new(request.get_pointer_field(from as usize));
        any_pointer::Builder::new(target.reborrow().get_pointer_field(index as usize))
            .set_as::<any_pointer::Owned>(source)?;
    }
    Ok(message)
}

/// Initialises the `version` answer in the layout the client reads: the old layout had a
/// ninth pointer, `metadata :Data`, which servers left empty.
///
/// # Errors
/// A results message that cannot be built.
pub fn init_version_response<'a>(
    results: &'a mut capnp::capability::Results<conmon::version_results::Owned>,
    layout: Layout,
) -> capnp::Result<conmon::version_response::Builder<'a>> {
    version_response_in(results.hook.get()?, layout)
}

fn version_response_in(
    results: any_pointer::Builder<'_>,
    layout: Layout,
) -> capnp::Result<conmon::version_response::Builder<'_>> {
    let mut size = <conmon::version_response::Builder<'static> as HasStructSize>::STRUCT_SIZE;
    if layout == Layout::V0_6 {
        size.pointers += 1;
    }
    let results_size = <conmon::version_results::Builder<'static> as HasStructSize>::STRUCT_SIZE;
    let root = results.get_as::<RawPointer<'_>>()?.0;
    let response = root.get_struct(results_size, None)?.get_pointer_field(0);
    Ok(response.init_struct(size).into())
}

/// A pointer, for building structs of a size the generated code does not know.
struct RawPointer<'a>(PointerBuilder<'a>);

impl<'a> FromPointerBuilder<'a> for RawPointer<'a> {
    fn init_pointer(builder: PointerBuilder<'a>, _size: u32) -> Self {
        Self(builder)
    }
    fn get_from_pointer(
        builder: PointerBuilder<'a>,
        _default: Option<&'a [capnp::Word]>,
    ) -> capnp::Result<Self> {
        Ok(Self(builder))
    }
}

/// A struct of any type.
struct RawStruct<'a>(StructReader<'a>);

impl<'a> IntoInternalStructReader<'a> for RawStruct<'a> {
    fn into_internal_struct_reader(self) -> StructReader<'a> {
        self.0
    }
}

impl<'a> FromPointerReader<'a> for RawStruct<'a> {
    fn get_from_pointer(
        reader: &PointerReader<'a>,
        default: Option<&'a [capnp::Word]>,
    ) -> capnp::Result<Self> {
        Ok(Self(reader.get_struct(default)?))
    }
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
