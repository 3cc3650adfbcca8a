//! Conversions between the schema's `TextTextMap` (a list of key/value entries) and Rust maps.
//!
//! A null list (what clients send for an empty map) reads as an empty map.

use std::collections::BTreeMap;

use crate::conmon::text_text_map_entry;

/// Reads a `TextTextMap` into an ordered map. A later duplicate key wins.
///
/// # Errors
/// Returns the capnp error for a malformed list or non-UTF-8 text.
pub fn read(
    list: capnp::struct_list::Reader<'_, text_text_map_entry::Owned>,
) -> capnp::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for entry in list.iter() {
        let key = entry.get_key()?.to_string()?;
        let value = entry.get_value()?.to_string()?;
        map.insert(key, value);
    }
    Ok(map)
}

/// Fills a freshly initialised `TextTextMap` builder of `len == pairs.len()` with `pairs`.
pub fn write<'a, I>(mut list: capnp::struct_list::Builder<'_, text_text_map_entry::Owned>, pairs: I)
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    for (i, (key, value)) in (0u32..).zip(pairs) {
        let mut entry = list.reborrow().get(i);
        entry.set_key(key);
        entry.set_value(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conmon::version_request;

    #[test]
    fn metadata_round_trips_through_a_message() {
        let mut message = capnp::message::Builder::new_default();
        let mut request = message.init_root::<version_request::Builder<'_>>();
        let pairs = [("traceparent", "00-abc-def-01"), ("tracestate", "")];
        write(request.reborrow().init_metadata(2), pairs);
        let reader = request.into_reader();
        let map = read(reader.get_metadata().unwrap()).unwrap();
        assert_eq!(
            map.get("traceparent").map(String::as_str),
            Some("00-abc-def-01")
        );
        assert_eq!(map.get("tracestate").map(String::as_str), Some(""));
    }

    #[test]
    fn absent_list_reads_as_empty_map() {
        let mut message = capnp::message::Builder::new_default();
        let request = message.init_root::<version_request::Builder<'_>>();
        let map = read(request.into_reader().get_metadata().unwrap()).unwrap();
        assert!(map.is_empty());
    }
}
