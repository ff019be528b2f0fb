//! Which events a filtered read or a subscription delivers.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::options::EVENT_TYPE_BYTES_MAX;

/// The most event types one filter may list.
pub const FILTER_EVENT_TYPES_MAX: usize = 1024;

/// Which events to deliver: a conjunction — every condition given must hold.
///
/// Stream conditions ([`Filter::stream`], [`Filter::category`], [`Filter::stream_prefix`])
/// are answered from the segments' stream indexes, event-type conditions alone from their
/// event-type sections, so a filtered read touches only the records of candidate events;
/// every other condition is checked on those records.
///
/// A filter built from bad input (an empty list of event types, an empty category) is
/// still a value; the read or subscription it is passed to returns
/// [`Error::InvalidInput`] saying what is wrong.
///
/// ```
/// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("order-1", ExpectedVersion::Any, [NewEvent::new("OrderPlaced", "{}")])?;
/// store.append("order-1", ExpectedVersion::Any, [NewEvent::new("OrderPaid", "{}")])?;
/// store.append("user-1", ExpectedVersion::Any, [NewEvent::new("OrderPlaced", "{}")])?;
/// let filter = Filter::category("order").with_event_types(["OrderPlaced"]);
/// let found: Vec<u64> = store.read_all_filtered(0, filter)?.map(|e| e.map(|e| e.position)).collect::<Result<_, _>>()?;
/// assert_eq!(found, [0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    inner: Arc<Conditions>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Conditions {
    /// Streams whose id equals one of these (each a condition of its own).
    streams: Vec<String>,
    /// Categories: the stream id up to its first '-'.
    categories: Vec<String>,
    prefixes: Vec<String>,
    /// Each inner list is one condition: the event type is one of them (sorted).
    event_types: Vec<Vec<String>>,
    /// (index, count): the stream's FNV-1a hash modulo `count` is `index`.
    partitions: Vec<(u32, u32)>,
    /// Why this filter is not valid, reported when it is used.
    invalid: Option<String>,
}

impl Filter {
    /// Every event.
    ///
    /// ```
    /// let all = chronicle::Filter::all();
    /// # let _ = all;
    /// ```
    pub fn all() -> Self {
        Filter::default()
    }

    /// Events of the stream `stream` only.
    ///
    /// ```
    /// let one = chronicle::Filter::stream("order-42");
    /// # let _ = one;
    /// ```
    pub fn stream(stream: impl Into<String>) -> Self {
        Filter::all().with_stream(stream)
    }

    /// Events of streams whose id, up to its first `-` (the whole id if it has none), is
    /// `category`: `Filter::category("order")` matches `order-42` and `order`, not
    /// `orders-1` or `order_x`.
    ///
    /// ```
    /// let orders = chronicle::Filter::category("order");
    /// # let _ = orders;
    /// ```
    pub fn category(category: impl Into<String>) -> Self {
        Filter::all().with_category(category)
    }

    /// Events whose type is one of `types`.
    ///
    /// ```
    /// let placed = chronicle::Filter::event_types(["OrderPlaced", "OrderShipped"]);
    /// # let _ = placed;
    /// ```
    pub fn event_types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> Self {
        Filter::all().with_event_types(types)
    }

    /// Events of streams whose id starts with `prefix`.
    ///
    /// ```
    /// let some = chronicle::Filter::stream_prefix("order-4");
    /// # let _ = some;
    /// ```
    pub fn stream_prefix(prefix: impl Into<String>) -> Self {
        Filter::all().with_stream_prefix(prefix)
    }

    fn change(mut self, change: impl FnOnce(&mut Conditions)) -> Self {
        change(Arc::make_mut(&mut self.inner));
        self
    }

    fn invalid(conditions: &mut Conditions, message: String) {
        conditions.invalid.get_or_insert(message);
    }

    /// Adds the condition of [`Filter::stream`].
    ///
    /// ```
    /// let f = chronicle::Filter::event_types(["Paid"]).with_stream("order-1");
    /// # let _ = f;
    /// ```
    pub fn with_stream(self, stream: impl Into<String>) -> Self {
        let stream = stream.into();
        self.change(|c| {
            if let Err(error) = crate::validate::stream_id(&stream) {
                Filter::invalid(c, format!("filter stream: {error}"));
            }
            c.streams.push(stream);
        })
    }

    /// Adds the condition of [`Filter::category`].
    ///
    /// ```
    /// let f = chronicle::Filter::event_types(["Paid"]).with_category("order");
    /// # let _ = f;
    /// ```
    pub fn with_category(self, category: impl Into<String>) -> Self {
        let category = category.into();
        self.change(|c| {
            if category.is_empty() {
                Filter::invalid(c, "filter category is empty".into());
            } else if category.contains('-') {
                Filter::invalid(c, format!("filter category {category:?} contains '-', so no stream can match it"));
            } else if let Err(error) = crate::validate::stream_id(&category) {
                Filter::invalid(c, format!("filter category: {error}"));
            }
            c.categories.push(category);
        })
    }

    /// Adds the condition of [`Filter::stream_prefix`].
    ///
    /// ```
    /// let f = chronicle::Filter::category("order").with_stream_prefix("order-4");
    /// # let _ = f;
    /// ```
    pub fn with_stream_prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.change(|c| {
            if prefix.is_empty() {
                Filter::invalid(c, "filter stream prefix is empty (use Filter::all)".into());
            } else if let Err(error) = crate::validate::stream_id(&prefix) {
                Filter::invalid(c, format!("filter stream prefix: {error}"));
            }
            c.prefixes.push(prefix);
        })
    }

    /// Adds the condition of [`Filter::event_types`]: the event's type is one of `types`.
    ///
    /// ```
    /// let f = chronicle::Filter::category("order").with_event_types(["OrderPlaced"]);
    /// # let _ = f;
    /// ```
    pub fn with_event_types<S: Into<String>>(self, types: impl IntoIterator<Item = S>) -> Self {
        let mut list = Vec::new();
        let mut too_many = false;
        for event_type in types {
            if list.len() >= FILTER_EVENT_TYPES_MAX {
                too_many = true;
                break;
            }
            list.push(event_type.into());
        }
        list.sort_unstable();
        list.dedup();
        self.change(|c| {
            if list.is_empty() {
                Filter::invalid(c, "filter event type list is empty".into());
            } else if too_many {
                Filter::invalid(c, format!("filter lists more than {FILTER_EVENT_TYPES_MAX} event types"));
            } else if let Some(bad) = list.iter().find(|t| t.is_empty() || t.len() > EVENT_TYPE_BYTES_MAX) {
                Filter::invalid(
                    c,
                    format!("filter event type {bad:?} is empty or above the limit of {EVENT_TYPE_BYTES_MAX} bytes"),
                );
            }
            c.event_types.push(list);
        })
    }

    /// Adds a partition condition: only streams whose id hashes (FNV-1a 64, the index's
    /// stream hash) to `index` modulo `count`. `count` consumers with partitions
    /// `0..count` of the same filter together see every matching event exactly once, each
    /// stream's events all in one partition, in order — partitioned consumers.
    ///
    /// ```
    /// use chronicle::{ExpectedVersion, Filter, NewEvent, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// for i in 0..20 {
    ///     store.append(&format!("order-{i}"), ExpectedVersion::Any, [NewEvent::new("Placed", "")])?;
    /// }
    /// let counts: Vec<usize> = (0..4)
    ///     .map(|p| store.read_all_filtered(0, Filter::category("order").with_partition(p, 4)).unwrap().count())
    ///     .collect();
    /// assert_eq!(counts.iter().sum::<usize>(), 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_partition(self, index: u32, count: u32) -> Self {
        self.change(|c| {
            if count == 0 || index >= count {
                Filter::invalid(c, format!("filter partition {index} of {count}: needs index < count"));
            }
            c.partitions.push((index, count));
        })
    }

    /// The stream ids the filter requires, each a condition of its own (more than one
    /// different id can match nothing). For backends that evaluate filters themselves.
    ///
    /// ```
    /// let f = chronicle::Filter::stream("order-1");
    /// assert_eq!(f.streams(), ["order-1"]);
    /// ```
    pub fn streams(&self) -> &[String] {
        &self.inner.streams
    }

    /// The categories the filter requires (a stream's category is its id up to the first
    /// `-`, or all of it), each a condition of its own.
    ///
    /// ```
    /// let f = chronicle::Filter::category("order");
    /// assert_eq!(f.categories(), ["order"]);
    /// ```
    pub fn categories(&self) -> &[String] {
        &self.inner.categories
    }

    /// The stream-id prefixes the filter requires, each a condition of its own.
    ///
    /// ```
    /// let f = chronicle::Filter::stream_prefix("order-4");
    /// assert_eq!(f.stream_prefixes(), ["order-4"]);
    /// ```
    pub fn stream_prefixes(&self) -> &[String] {
        &self.inner.prefixes
    }

    /// The event-type conditions: the event's type must be in every list (each list
    /// sorted, without duplicates).
    ///
    /// ```
    /// let f = chronicle::Filter::event_types(["B", "A", "B"]);
    /// assert_eq!(f.event_type_lists(), [vec!["A".to_owned(), "B".to_owned()]]);
    /// ```
    pub fn event_type_lists(&self) -> &[Vec<String>] {
        &self.inner.event_types
    }

    /// The partition conditions as `(index, count)`: the stream's
    /// [`Filter::partition_hash`] modulo `count` must be `index`.
    ///
    /// ```
    /// let f = chronicle::Filter::all().with_partition(1, 4);
    /// assert_eq!(f.partitions(), [(1, 4)]);
    /// ```
    pub fn partitions(&self) -> &[(u32, u32)] {
        &self.inner.partitions
    }

    /// The hash that [`Filter::with_partition`] takes modulo the partition count: FNV-1a
    /// 64 of the stream id's bytes (stable: it is part of the on-disk index format).
    ///
    /// ```
    /// use chronicle::Filter;
    /// let count = 4;
    /// let index = (Filter::partition_hash("order-7") % u64::from(count)) as u32;
    /// assert!(Filter::all().with_partition(index, count).matches_stream("order-7"));
    /// ```
    pub fn partition_hash(stream: &str) -> u64 {
        crate::index::stream_hash(stream)
    }

    /// [`Error::InvalidInput`] if the filter was built from bad input (every read and
    /// subscription checks this first).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] saying what is wrong with the filter.
    ///
    /// ```
    /// assert!(chronicle::Filter::category("").validate().is_err());
    /// assert!(chronicle::Filter::category("order").validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<()> {
        match &self.inner.invalid {
            Some(message) => Err(Error::invalid(message.clone())),
            None => Ok(()),
        }
    }

    /// Whether some condition restricts the streams (then the stream index answers).
    pub(crate) fn has_stream_condition(&self) -> bool {
        let c = &self.inner;
        !(c.streams.is_empty() && c.categories.is_empty() && c.prefixes.is_empty() && c.partitions.is_empty())
    }

    /// The one stream the filter names, if it names one (looked up directly in the index).
    pub(crate) fn exact_stream(&self) -> Option<&str> {
        self.inner.streams.first().map(String::as_str)
    }

    /// The first category condition, if any (a live subscriber looks it up in the shared
    /// tail's per-category lists).
    pub(crate) fn category_condition(&self) -> Option<&str> {
        self.inner.categories.first().map(String::as_str)
    }

    /// Whether `stream` satisfies every stream condition (streams, categories, prefixes,
    /// partitions).
    ///
    /// ```
    /// let f = chronicle::Filter::category("order");
    /// assert!(f.matches_stream("order-1") && !f.matches_stream("orders-1"));
    /// ```
    pub fn matches_stream(&self, stream: &str) -> bool {
        let c = &self.inner;
        c.streams.iter().all(|s| s == stream)
            && c.categories.iter().all(|cat| category_of(stream) == cat)
            && c.prefixes.iter().all(|p| stream.starts_with(p.as_str()))
            && c.partitions.iter().all(|&(index, count)| {
                count > 0 && crate::index::stream_hash(stream) % u64::from(count) == u64::from(index)
            })
    }

    /// The first event-type condition's list, if any (looked up in the type index).
    pub(crate) fn type_list(&self) -> Option<&[String]> {
        self.inner.event_types.first().map(Vec::as_slice)
    }

    /// Whether `event_type` (raw bytes of a record) satisfies every event-type condition.
    pub(crate) fn matches_type(&self, event_type: &[u8]) -> bool {
        self.inner.event_types.iter().all(|list| list.binary_search_by(|t| t.as_bytes().cmp(event_type)).is_ok())
    }
}

/// The category of a stream id: up to its first '-', or all of it.
pub(crate) fn category_of(stream: &str) -> &str {
    // A byte search: '-' is ASCII, so its first byte is a char boundary; `split_once` with a
    // char pattern costs several times more on ids this short (once per filtered record).
    match stream.bytes().position(|b| b == b'-') {
        Some(at) => stream.get(..at).unwrap_or(stream),
        None => stream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_is_up_to_the_first_dash() {
        for (stream, category) in
            [("order-42", "order"), ("order", "order"), ("a-b-c", "a"), ("-x", ""), ("é-1", "é"), ("日本-語", "日本")]
        {
            assert_eq!(category_of(stream), category, "{stream}");
        }
    }

    #[test]
    fn conditions() {
        let f = Filter::category("order").with_event_types(["B", "A"]);
        assert!(f.matches_stream("order-1") && f.matches_stream("order") && !f.matches_stream("orders-1"));
        assert!(f.matches_type(b"A") && f.matches_type(b"B") && !f.matches_type(b"C"));
        assert!(Filter::stream_prefix("order-4").matches_stream("order-42"));
        assert!(!Filter::stream("a").with_stream("b").matches_stream("a"));
        assert!(Filter::event_types(Vec::<String>::new()).validate().is_err());
        assert!(Filter::category("").validate().is_err());
        assert!(Filter::all().validate().is_ok());
    }
}
