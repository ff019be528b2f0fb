//! Typed events: the [`Event`] trait, encoding to [`NewEvent`], decoding (with upcasting)
//! from [`RecordedEvent`], and their errors.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{self, Codec, Seed};
use super::shim::{Retag, Untagged};
use crate::event::{EventView, NewEvent, RecordedEvent};

/// A user event: one enum per aggregate, one variant per event type.
///
/// Each variant has a stable type name (stored in the record's event type, never derived
/// from a Rust path: the serde variant name, pinned with `#[serde(rename = "...")]` if the
/// Rust name may change) and a schema version, listed in [`Event::EVENT_TYPES`]. Decoding
/// is dispatched by stored type name and version; an older version is brought to the
/// current one by [`Upcaster`]s.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use chronicle::typed::Event;
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum CartEvent {
///     ItemAdded { sku: String, quantity: u32 },
///     CheckedOut,
/// }
///
/// impl Event for CartEvent {
///     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("ItemAdded", 1), ("CheckedOut", 1)];
///     fn event_type(&self) -> &'static str {
///         match self {
///             CartEvent::ItemAdded { .. } => "ItemAdded",
///             CartEvent::CheckedOut => "CheckedOut",
///         }
///     }
/// }
/// assert_eq!(CartEvent::CheckedOut.schema_version(), 1);
/// ```
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Every event type this enum stores, with its *current* schema version. Decoding an
    /// event type not listed here is [`DecodeFailure::UnknownType`] (or skipped, if asked).
    const EVENT_TYPES: &'static [(&'static str, u32)];

    /// The codec new events are written with unless the [`Schema`] says otherwise.
    const CODEC: Codec = Codec::Postcard;

    /// The stable type name of this event; must be the serde variant name.
    fn event_type(&self) -> &'static str;

    /// This event's current schema version, from [`Event::EVENT_TYPES`] (0 if its type is
    /// not listed, which encoding refuses).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use chronicle::typed::Event;
    /// # #[derive(Serialize, Deserialize)] enum E { A }
    /// # impl Event for E {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("A", 3)];
    /// #     fn event_type(&self) -> &'static str { "A" }
    /// # }
    /// assert_eq!(E::A.schema_version(), 3);
    /// ```
    fn schema_version(&self) -> u32 {
        current(Self::EVENT_TYPES, self.event_type()).map_or(0, |(_, version)| version)
    }
}

fn current(types: &'static [(&'static str, u32)], event_type: &str) -> Option<(&'static str, u32)> {
    types.iter().copied().find(|(name, _)| *name == event_type)
}

/// Why a typed event could not be encoded; nothing was written.
///
/// ```
/// let error = chronicle::typed::EncodeError::UnlistedType { event_type: "X".into() };
/// assert!(error.to_string().contains("not listed"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The event's type is not in [`Event::EVENT_TYPES`], so it could never be decoded.
    #[error("event type {event_type:?} is not listed in Event::EVENT_TYPES")]
    UnlistedType {
        /// What [`Event::event_type`] returned.
        event_type: String,
    },
    /// [`Event::event_type`] differs from the serde variant name, which decoding relies on.
    #[error("event_type() is {event_type:?} but the serde variant is {variant:?}")]
    VariantMismatch {
        /// What [`Event::event_type`] returned.
        event_type: String,
        /// The serde variant name.
        variant: String,
    },
    /// The codec refused the value (for instance, the event is not an enum).
    #[error("cannot encode {event_type:?} with {codec}: {message}", codec = codec.name())]
    Codec {
        /// The event type.
        event_type: String,
        /// The codec used.
        codec: Codec,
        /// The codec's message.
        message: String,
    },
}

/// A stored event that could not be turned into the current event type: names the stream,
/// version, global position and event type.
///
/// ```
/// use chronicle::typed::{DecodeError, DecodeFailure};
/// let error = DecodeError {
///     stream: "order-1".into(), version: 3, position: 17, event_type: "Refunded".into(),
///     reason: DecodeFailure::UnknownType,
/// };
/// assert_eq!(
///     error.to_string(),
///     "cannot decode event \"Refunded\" at version 3 of stream \"order-1\" (position 17): unknown event type"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode event {event_type:?} at version {version} of stream {stream:?} (position {position}): {reason}")]
pub struct DecodeError {
    /// The event's stream.
    pub stream: String,
    /// The event's version in its stream.
    pub version: u64,
    /// The event's global position.
    pub position: u64,
    /// The stored event type.
    pub event_type: String,
    /// What went wrong.
    pub reason: DecodeFailure,
}

/// What went wrong in a [`DecodeError`].
///
/// ```
/// let failure = chronicle::typed::DecodeFailure::NewerSchema { stored: 4, current: 3 };
/// assert_eq!(failure.to_string(), "stored schema version 4 is newer than the current version 3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeFailure {
    /// The type name is not in [`Event::EVENT_TYPES`].
    #[error("unknown event type")]
    UnknownType,
    /// The data does not start with a valid typed header.
    #[error("bad typed header: {0}")]
    Header(String),
    /// Written by a newer schema than this program knows.
    #[error("stored schema version {stored} is newer than the current version {current}")]
    NewerSchema {
        /// The stored version.
        stored: u32,
        /// The version this program knows.
        current: u32,
    },
    /// No upcaster takes this type from `from_version` to the next version.
    #[error("no upcaster from schema version {from_version}")]
    MissingUpcaster {
        /// The version that has no upcaster.
        from_version: u32,
    },
    /// The codec failed at `schema_version` (the stored one, or one an upcaster produced).
    #[error("{codec} payload at schema version {schema_version}: {message}", codec = codec.name())]
    Codec {
        /// The stored codec.
        codec: Codec,
        /// The version being decoded.
        schema_version: u32,
        /// The codec's message.
        message: String,
    },
}

type Step = dyn Fn(Codec, &[u8]) -> Result<Vec<u8>, String> + Send + Sync;

/// Turns the stored form of one event type at `from_version` into the form at
/// `from_version + 1`. A chain of them brings any old version to the current one; the form
/// at the current version is the variant's content (a struct with the variant's fields).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use chronicle::typed::Upcaster;
/// #[derive(Deserialize)] struct PlacedV1 { total: u32 }
/// #[derive(Serialize)] struct PlacedV2 { total_cents: u64, currency: String }
/// let v1_to_v2 = Upcaster::new("OrderPlaced", 1, |old: PlacedV1| PlacedV2 {
///     total_cents: u64::from(old.total) * 100,
///     currency: "EUR".into(),
/// });
/// assert_eq!(v1_to_v2.key(), ("OrderPlaced", 1));
/// ```
#[derive(Clone)]
pub struct Upcaster {
    event_type: &'static str,
    from_version: u32,
    step: Arc<Step>,
}

impl fmt::Debug for Upcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upcaster")
            .field("event_type", &self.event_type)
            .field("from_version", &self.from_version)
            .finish()
    }
}

impl Upcaster {
    /// An upcaster for `event_type` from `from_version`: decodes the stored form as `Old`,
    /// converts it with `convert` and re-encodes the result in the same codec.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Deserialize)] struct V1 { n: u8 }
    /// # #[derive(Serialize)] struct V2 { n: u16 }
    /// let up = chronicle::typed::Upcaster::new("Counted", 1, |v: V1| V2 { n: v.n.into() });
    /// # let _ = up;
    /// ```
    pub fn new<Old, New>(
        event_type: &'static str,
        from_version: u32,
        convert: impl Fn(Old) -> New + Send + Sync + 'static,
    ) -> Upcaster
    where
        Old: DeserializeOwned,
        New: Serialize,
    {
        let step = move |codec: Codec, bytes: &[u8]| -> Result<Vec<u8>, String> {
            let old: Old = codec.decode(bytes)?;
            let mut out = Vec::new();
            codec.encode(&convert(old), &mut out)?;
            Ok(out)
        };
        Upcaster { event_type, from_version, step: Arc::new(step) }
    }

    /// The (event type, version) this upcaster reads.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Deserialize)] struct V1;
    /// # #[derive(Serialize)] struct V2;
    /// let up = chronicle::typed::Upcaster::new("T", 4, |_: V1| V2);
    /// assert_eq!(up.key(), ("T", 4));
    /// ```
    pub fn key(&self) -> (&'static str, u32) {
        (self.event_type, self.from_version)
    }
}

/// How to read and write the events of one [`Event`] type: the codec for new events, the
/// upcasters, and whether unknown event types are skipped. Cheap to clone.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use chronicle::typed::{Codec, Event, Schema};
/// use chronicle::{ExpectedVersion, Store};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum Light { SwitchedOn { brightness: u8 }, SwitchedOff }
/// impl Event for Light {
///     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("SwitchedOn", 1), ("SwitchedOff", 1)];
///     fn event_type(&self) -> &'static str {
///         match self { Light::SwitchedOn { .. } => "SwitchedOn", Light::SwitchedOff => "SwitchedOff" }
///     }
/// }
///
/// let store = Store::open_in_memory()?;
/// let schema = Schema::<Light>::new().codec(Codec::Json);
/// store.append("lamp-1", ExpectedVersion::NoStream, [schema.encode(&Light::SwitchedOn { brightness: 80 })?])?;
/// let stored = store.read_stream("lamp-1", 0)?.next().expect("one event")?;
/// assert_eq!(stored.event_type, "SwitchedOn");
/// assert_eq!(schema.decode(&stored)?, Some(Light::SwitchedOn { brightness: 80 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Schema<E> {
    codec: Codec,
    upcasters: Arc<BTreeMap<(&'static str, u32), Upcaster>>,
    skip_unknown: bool,
    event: PhantomData<fn() -> E>,
}

impl<E> Clone for Schema<E> {
    fn clone(&self) -> Self {
        Schema {
            codec: self.codec,
            upcasters: Arc::clone(&self.upcasters),
            skip_unknown: self.skip_unknown,
            event: PhantomData,
        }
    }
}

impl<E> fmt::Debug for Schema<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("codec", &self.codec)
            .field("upcasters", &self.upcasters.keys().collect::<Vec<_>>())
            .field("skip_unknown", &self.skip_unknown)
            .finish()
    }
}

impl<E: Event> Default for Schema<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// Seed decoding the event enum whose variant is `variant` from its stored content.
struct ByName<E> {
    variant: &'static str,
    event: PhantomData<E>,
}

impl<E: DeserializeOwned> Seed<E> for ByName<E> {
    fn postcard<'de>(
        self,
        de: &mut postcard::Deserializer<'de, postcard::de_flavors::Slice<'de>>,
    ) -> postcard::Result<E> {
        E::deserialize(Retag { variant: self.variant, inner: de })
    }

    fn json(self, de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>) -> serde_json::Result<E> {
        E::deserialize(Retag { variant: self.variant, inner: de })
    }
}

impl<E: Event> Schema<E> {
    /// Writes with [`Event::CODEC`], no upcasters, unknown types are errors.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum E { A }
    /// # impl chronicle::typed::Event for E {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("A", 1)];
    /// #     fn event_type(&self) -> &'static str { "A" }
    /// # }
    /// let schema = chronicle::typed::Schema::<E>::new();
    /// assert_eq!(schema.codec_used(), chronicle::typed::Codec::Postcard);
    /// ```
    pub fn new() -> Self {
        Schema { codec: E::CODEC, upcasters: Arc::default(), skip_unknown: false, event: PhantomData }
    }

    /// New events are written with `codec` (stored events are read in whatever codec
    /// their header names).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum E { A }
    /// # impl chronicle::typed::Event for E {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("A", 1)];
    /// #     fn event_type(&self) -> &'static str { "A" }
    /// # }
    /// use chronicle::typed::{Codec, Schema};
    /// assert_eq!(Schema::<E>::new().codec(Codec::Json).codec_used(), Codec::Json);
    /// ```
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The codec new events are written with.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum E { A }
    /// # impl chronicle::typed::Event for E {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("A", 1)];
    /// #     const CODEC: chronicle::typed::Codec = chronicle::typed::Codec::Json;
    /// #     fn event_type(&self) -> &'static str { "A" }
    /// # }
    /// assert_eq!(chronicle::typed::Schema::<E>::new().codec_used(), chronicle::typed::Codec::Json);
    /// ```
    pub fn codec_used(&self) -> Codec {
        self.codec
    }

    /// Adds an upcaster (replacing one with the same [`Upcaster::key`]).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum E { A { n: u16 } }
    /// # impl chronicle::typed::Event for E {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("A", 2)];
    /// #     fn event_type(&self) -> &'static str { "A" }
    /// # }
    /// # #[derive(Deserialize)] struct AV1 { n: u8 }
    /// # #[derive(Serialize)] struct AV2 { n: u16 }
    /// use chronicle::typed::{Schema, Upcaster};
    /// let schema = Schema::<E>::new().upcaster(Upcaster::new("A", 1, |v: AV1| AV2 { n: v.n.into() }));
    /// # let _ = schema;
    /// ```
    pub fn upcaster(mut self, upcaster: Upcaster) -> Self {
        Arc::make_mut(&mut self.upcasters).insert(upcaster.key(), upcaster);
        self
    }

    /// Decoding returns `Ok(None)` for event types not in [`Event::EVENT_TYPES`] instead
    /// of [`DecodeFailure::UnknownType`] (for readers that follow a stream or the log
    /// other programs also write to).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Serialize, Deserialize)] enum E { A }
    /// # impl chronicle::typed::Event for E {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("A", 1)];
    /// #     fn event_type(&self) -> &'static str { "A" }
    /// # }
    /// let foreign = chronicle::RecordedEvent::new("s", 0, 0, "SomethingElse", "x");
    /// let schema = chronicle::typed::Schema::<E>::new();
    /// assert!(schema.decode(&foreign).is_err());
    /// assert!(schema.skip_unknown_types().decode(&foreign)?.is_none());
    /// # Ok::<(), chronicle::typed::DecodeError>(())
    /// ```
    pub fn skip_unknown_types(mut self) -> Self {
        self.skip_unknown = true;
        self
    }

    /// Encodes `event` as a [`NewEvent`]: type name, then header (codec, schema version)
    /// and payload in the data. Add an id (`with_id`) for idempotent retries.
    ///
    /// # Errors
    /// [`EncodeError`]: type not listed, `event_type()` not the serde variant name, codec
    /// failure.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] enum E { A(u8) }
    /// # impl chronicle::typed::Event for E {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("A", 1)];
    /// #     fn event_type(&self) -> &'static str { "A" }
    /// # }
    /// let new_event = chronicle::typed::Schema::<E>::new().encode(&E::A(7))?;
    /// assert_eq!(new_event.event_type(), "A");
    /// assert_eq!(&new_event.data()[..], [0xCE, 1, 1, 0, 0, 0, 7]); // header + postcard
    /// # Ok::<(), chronicle::typed::EncodeError>(())
    /// ```
    pub fn encode(&self, event: &E) -> Result<NewEvent, EncodeError> {
        let event_type = event.event_type();
        let (_, version) = current(E::EVENT_TYPES, event_type)
            .ok_or_else(|| EncodeError::UnlistedType { event_type: event_type.to_owned() })?;
        let mut data = Vec::with_capacity(64);
        codec::write_header(self.codec, version, &mut data);
        let variant = Cell::new(None);
        self.codec
            .encode(&Untagged { value: event, variant: &variant }, &mut data)
            .map_err(|message| EncodeError::Codec { event_type: event_type.to_owned(), codec: self.codec, message })?;
        match variant.get() {
            Some(name) if name == event_type => Ok(NewEvent::new(event_type, data)),
            other => Err(EncodeError::VariantMismatch {
                event_type: event_type.to_owned(),
                variant: other.unwrap_or("(none)").to_owned(),
            }),
        }
    }

    /// Decodes a stored event into the current form of `E`, upcasting older versions.
    /// `Ok(None)` only for an unknown type after [`Schema::skip_unknown_types`].
    ///
    /// # Errors
    /// [`DecodeError`] naming stream, version, position and type, with the
    /// [`DecodeFailure`].
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)] enum E { A(u8) }
    /// # impl chronicle::typed::Event for E {
    /// #     const EVENT_TYPES: &'static [(&'static str, u32)] = &[("A", 1)];
    /// #     fn event_type(&self) -> &'static str { "A" }
    /// # }
    /// let schema = chronicle::typed::Schema::<E>::new();
    /// let new_event = schema.encode(&E::A(7))?;
    /// let stored = chronicle::RecordedEvent::new("s", 0, 0, "A", new_event.data().clone());
    /// assert_eq!(schema.decode(&stored)?, Some(E::A(7)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode(&self, event: &RecordedEvent) -> Result<Option<E>, DecodeError> {
        self.decode_parts(&event.event_type, &event.data).map_err(|reason| DecodeError {
            stream: event.stream_id.clone(),
            version: event.version,
            position: event.position,
            event_type: event.event_type.clone(),
            reason,
        })
    }

    /// As [`Schema::decode`], from a borrowed view (a repository loading an aggregate through
    /// a zero-copy stream read).
    pub(crate) fn decode_view(&self, event: &EventView<'_>) -> Result<Option<E>, DecodeError> {
        self.decode_parts(event.event_type, event.data).map_err(|reason| DecodeError {
            stream: event.stream_id.to_owned(),
            version: event.version,
            position: event.position,
            event_type: event.event_type.to_owned(),
            reason,
        })
    }

    fn decode_parts(&self, event_type: &str, data: &[u8]) -> Result<Option<E>, DecodeFailure> {
        let Some((name, current_version)) = current(E::EVENT_TYPES, event_type) else {
            return if self.skip_unknown { Ok(None) } else { Err(DecodeFailure::UnknownType) };
        };
        let (codec, stored, payload) = codec::read_header(data).map_err(DecodeFailure::Header)?;
        if stored > current_version {
            return Err(DecodeFailure::NewerSchema { stored, current: current_version });
        }
        let codec_failure = |schema_version, message| DecodeFailure::Codec { codec, schema_version, message };
        let mut upcast: Option<Vec<u8>> = None;
        // Bounded: one step per version between the stored and the current one.
        for from_version in stored..current_version {
            let upcaster =
                self.upcasters.get(&(name, from_version)).ok_or(DecodeFailure::MissingUpcaster { from_version })?;
            let input = upcast.as_deref().unwrap_or(payload);
            upcast = Some((upcaster.step)(codec, input).map_err(|m| codec_failure(from_version, m))?);
        }
        let content = upcast.as_deref().unwrap_or(payload);
        codec
            .decode_seed(content, ByName::<E> { variant: name, event: PhantomData })
            .map(Some)
            .map_err(|m| codec_failure(current_version, m))
    }
}
