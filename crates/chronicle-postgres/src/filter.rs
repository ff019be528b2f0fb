//! Which events a filtered read or a subscription delivers: the same names and meaning
//! as the embedded store's `chronicle::Filter` (issue 11), answered in SQL.

use std::sync::Arc;

use chronicle::{EVENT_TYPE_BYTES_MAX, Error, Result};
use tokio_postgres::types::ToSql;

/// The most event types one filter may list.
pub const FILTER_EVENT_TYPES_MAX: usize = 1024;

/// Which events to deliver: a conjunction — every condition given must hold.
///
/// A filter built from bad input (an empty list of event types, an empty category) is
/// still a value; the read or subscription it is passed to returns
/// [`Error::InvalidInput`] saying what is wrong.
///
/// ```
/// use chronicle_postgres::Filter;
/// let orders_placed = Filter::category("order").with_event_types(["OrderPlaced"]);
/// # let _ = orders_placed;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    inner: Arc<Conditions>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Conditions {
    streams: Vec<Vec<u8>>,
    /// `(category, category + "-")`.
    categories: Vec<(Vec<u8>, Vec<u8>)>,
    prefixes: Vec<Vec<u8>>,
    event_types: Vec<Vec<Vec<u8>>>,
    invalid: Option<String>,
}

impl Filter {
    /// Every event.
    ///
    /// ```
    /// let all = chronicle_postgres::Filter::all();
    /// # let _ = all;
    /// ```
    pub fn all() -> Self {
        Filter::default()
    }

    /// Events of the stream `stream` only.
    ///
    /// ```
    /// let one = chronicle_postgres::Filter::stream("order-42");
    /// # let _ = one;
    /// ```
    pub fn stream(stream: impl Into<String>) -> Self {
        Filter::all().with_stream(stream)
    }

    /// Events of streams whose id, up to its first `-` (the whole id if it has none), is
    /// `category`: `Filter::category("order")` matches `order-42` and `order`, not
    /// `orders-1`.
    ///
    /// ```
    /// let orders = chronicle_postgres::Filter::category("order");
    /// # let _ = orders;
    /// ```
    pub fn category(category: impl Into<String>) -> Self {
        Filter::all().with_category(category)
    }

    /// Events whose type is one of `types`.
    ///
    /// ```
    /// let placed = chronicle_postgres::Filter::event_types(["OrderPlaced"]);
    /// # let _ = placed;
    /// ```
    pub fn event_types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> Self {
        Filter::all().with_event_types(types)
    }

    /// Events of streams whose id starts with `prefix`.
    ///
    /// ```
    /// let some = chronicle_postgres::Filter::stream_prefix("order-4");
    /// # let _ = some;
    /// ```
    pub fn stream_prefix(prefix: impl Into<String>) -> Self {
        Filter::all().with_stream_prefix(prefix)
    }

    fn change(mut self, change: impl FnOnce(&mut Conditions)) -> Self {
        change(Arc::make_mut(&mut self.inner));
        self
    }

    /// Adds the condition of [`Filter::stream`].
    ///
    /// ```
    /// let f = chronicle_postgres::Filter::event_types(["Paid"]).with_stream("order-1");
    /// # let _ = f;
    /// ```
    pub fn with_stream(self, stream: impl Into<String>) -> Self {
        let stream = stream.into();
        self.change(|c| {
            if let Err(error) = chronicle::check_stream_id(&stream) {
                c.invalid.get_or_insert(format!("filter stream: {error}"));
            }
            c.streams.push(stream.into_bytes());
        })
    }

    /// Adds the condition of [`Filter::category`].
    ///
    /// ```
    /// let f = chronicle_postgres::Filter::event_types(["Paid"]).with_category("order");
    /// # let _ = f;
    /// ```
    pub fn with_category(self, category: impl Into<String>) -> Self {
        let category = category.into();
        self.change(|c| {
            if category.is_empty() {
                c.invalid.get_or_insert("filter category is empty".into());
            } else if category.contains('-') {
                c.invalid
                    .get_or_insert(format!("filter category {category:?} contains '-', so no stream can match it"));
            } else if let Err(error) = chronicle::check_stream_id(&category) {
                c.invalid.get_or_insert(format!("filter category: {error}"));
            }
            let dashed = format!("{category}-").into_bytes();
            c.categories.push((category.into_bytes(), dashed));
        })
    }

    /// Adds the condition of [`Filter::stream_prefix`].
    ///
    /// ```
    /// let f = chronicle_postgres::Filter::category("order").with_stream_prefix("order-4");
    /// # let _ = f;
    /// ```
    pub fn with_stream_prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.change(|c| {
            if prefix.is_empty() {
                c.invalid.get_or_insert("filter stream prefix is empty (use Filter::all)".into());
            } else if let Err(error) = chronicle::check_stream_id(&prefix) {
                c.invalid.get_or_insert(format!("filter stream prefix: {error}"));
            }
            c.prefixes.push(prefix.into_bytes());
        })
    }

    /// Adds the condition of [`Filter::event_types`].
    ///
    /// ```
    /// let f = chronicle_postgres::Filter::category("order").with_event_types(["OrderPlaced"]);
    /// # let _ = f;
    /// ```
    pub fn with_event_types<S: Into<String>>(self, types: impl IntoIterator<Item = S>) -> Self {
        let mut list: Vec<String> = Vec::new();
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
                c.invalid.get_or_insert("filter event type list is empty".into());
            } else if too_many {
                c.invalid.get_or_insert(format!("filter lists more than {FILTER_EVENT_TYPES_MAX} event types"));
            } else if let Some(bad) = list.iter().find(|t| t.is_empty() || t.len() > EVENT_TYPE_BYTES_MAX) {
                c.invalid.get_or_insert(format!(
                    "filter event type {bad:?} is empty or above the limit of {EVENT_TYPE_BYTES_MAX} bytes"
                ));
            }
            c.event_types.push(list.into_iter().map(String::into_bytes).collect());
        })
    }

    /// [`Error::InvalidInput`] if the filter was built from bad input.
    pub(crate) fn validate(&self) -> Result<()> {
        match &self.inner.invalid {
            Some(message) => Err(Error::InvalidInput { message: message.clone() }),
            None => Ok(()),
        }
    }

    /// The filter as `" AND ..."` conditions with parameters numbered from `first`, and
    /// the parameters (borrowed from the filter).
    pub(crate) fn sql(&self, first: usize) -> (String, Vec<&(dyn ToSql + Sync)>) {
        let c = &*self.inner;
        let mut sql = String::new();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        let mut next = first;
        let mut param = || {
            let n = next;
            next += 1;
            n
        };
        for stream in &c.streams {
            let n = param();
            params.push(stream);
            sql.push_str(&format!(" AND stream_id = ${n}"));
        }
        for (category, dashed) in &c.categories {
            let a = param();
            params.push(category);
            let b = param();
            params.push(dashed);
            sql.push_str(&format!(
                " AND (stream_id = ${a}::bytea OR substring(stream_id from 1 for octet_length(${b}::bytea)) = ${b}::bytea)"
            ));
        }
        for prefix in &c.prefixes {
            let n = param();
            params.push(prefix);
            sql.push_str(&format!(" AND substring(stream_id from 1 for octet_length(${n}::bytea)) = ${n}::bytea"));
        }
        for list in &c.event_types {
            let n = param();
            params.push(list);
            sql.push_str(&format!(" AND event_type = ANY(${n}::bytea[])"));
        }
        (sql, params)
    }
}
