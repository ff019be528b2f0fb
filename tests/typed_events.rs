//! Typed events: round trips under both codecs, an upcasting chain over three versions of
//! one event in one stream, unknown types, and the errors' contents.
#![cfg(feature = "typed")]

use chronicle::typed::{Codec, DecodeFailure, EncodeError, Event, Schema, Upcaster};
use chronicle::{ExpectedVersion, NewEvent, RecordedEvent, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shop {
    OrderPlaced { customer: String, total_cents: u64, currency: String },
    ItemAdded(String, u32),
    Note(String),
    Cancelled,
}

impl Event for Shop {
    const EVENT_TYPES: &'static [(&'static str, u32)] =
        &[("OrderPlaced", 3), ("ItemAdded", 1), ("Note", 1), ("Cancelled", 1)];
    fn event_type(&self) -> &'static str {
        match self {
            Shop::OrderPlaced { .. } => "OrderPlaced",
            Shop::ItemAdded(..) => "ItemAdded",
            Shop::Note(_) => "Note",
            Shop::Cancelled => "Cancelled",
        }
    }
}

fn all_kinds() -> Vec<Shop> {
    vec![
        Shop::OrderPlaced { customer: "ada".into(), total_cents: 1250, currency: "EUR".into() },
        Shop::ItemAdded("pen".into(), 3),
        Shop::Note("ring twice".into()),
        Shop::Cancelled,
    ]
}

fn read(store: &Store, stream: &str) -> Vec<RecordedEvent> {
    store.read_stream(stream, 0).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn every_variant_shape_round_trips_under_both_codecs() {
    let store = Store::open_in_memory().unwrap();
    for codec in [Codec::Postcard, Codec::Json] {
        let schema = Schema::<Shop>::new().codec(codec);
        let stream = format!("order-{}", codec.name());
        let encoded: Vec<NewEvent> = all_kinds().iter().map(|e| schema.encode(e).unwrap()).collect();
        store.append(&stream, ExpectedVersion::NoStream, encoded).unwrap();
        let stored = read(&store, &stream);
        assert_eq!(stored[0].event_type, "OrderPlaced");
        assert_eq!(stored[0].data[0..2], [0xCE, if codec == Codec::Postcard { 1 } else { 2 }]);
        let decoded: Vec<Shop> = stored.iter().map(|e| schema.decode(e).unwrap().unwrap()).collect();
        assert_eq!(decoded, all_kinds(), "{codec:?}");
        // Either schema reads either codec: the header names it.
        let other = Schema::<Shop>::new().codec(if codec == Codec::Json { Codec::Postcard } else { Codec::Json });
        assert_eq!(other.decode(&stored[1]).unwrap(), Some(all_kinds()[1].clone()));
    }
    let json = read(&store, "order-json");
    assert_eq!(
        &json[0].data[6..],
        br#"{"customer":"ada","total_cents":1250,"currency":"EUR"}"#,
        "variant content only"
    );
}

#[derive(Deserialize, Serialize)]
struct PlacedV1 {
    customer: String,
    total: u32, // whole euros
}

#[derive(Deserialize, Serialize)]
struct PlacedV2 {
    customer: String,
    total_cents: u64,
}

#[derive(Deserialize, Serialize)]
struct PlacedV3 {
    customer: String,
    total_cents: u64,
    currency: String,
}

/// Writes `value` as it was stored at `version` by an older program.
fn old_event(codec: Codec, version: u32, value: &impl Serialize) -> NewEvent {
    let mut data = vec![0xCE, if codec == Codec::Postcard { 1 } else { 2 }];
    data.extend_from_slice(&version.to_le_bytes());
    match codec {
        Codec::Postcard => data.extend(postcard::to_allocvec(value).unwrap()),
        _ => data.extend(serde_json::to_vec(value).unwrap()),
    }
    NewEvent::new("OrderPlaced", data)
}

fn upcasting_schema() -> Schema<Shop> {
    Schema::new()
        .upcaster(Upcaster::new("OrderPlaced", 1, |v1: PlacedV1| PlacedV2 {
            customer: v1.customer,
            total_cents: u64::from(v1.total) * 100,
        }))
        .upcaster(Upcaster::new("OrderPlaced", 2, |v2: PlacedV2| PlacedV3 {
            customer: v2.customer,
            total_cents: v2.total_cents,
            currency: "EUR".into(),
        }))
}

#[test]
fn three_versions_of_one_event_in_one_stream_decode_to_the_current_form() {
    for codec in [Codec::Postcard, Codec::Json] {
        let store = Store::open_in_memory().unwrap();
        let schema = upcasting_schema().codec(codec);
        let events = vec![
            old_event(codec, 1, &PlacedV1 { customer: "v1".into(), total: 12 }),
            old_event(codec, 2, &PlacedV2 { customer: "v2".into(), total_cents: 1234 }),
            schema
                .encode(&Shop::OrderPlaced { customer: "v3".into(), total_cents: 99, currency: "CHF".into() })
                .unwrap(),
        ];
        store.append("order-1", ExpectedVersion::NoStream, events).unwrap();
        let decoded: Vec<Shop> = read(&store, "order-1").iter().map(|e| schema.decode(e).unwrap().unwrap()).collect();
        assert_eq!(
            decoded,
            [
                Shop::OrderPlaced { customer: "v1".into(), total_cents: 1200, currency: "EUR".into() },
                Shop::OrderPlaced { customer: "v2".into(), total_cents: 1234, currency: "EUR".into() },
                Shop::OrderPlaced { customer: "v3".into(), total_cents: 99, currency: "CHF".into() },
            ],
            "{codec:?}"
        );
        // Without the chain, the old versions are errors naming the missing step.
        let bare = Schema::<Shop>::new();
        let error = bare.decode(&read(&store, "order-1")[1]).unwrap_err();
        assert_eq!(error.reason, DecodeFailure::MissingUpcaster { from_version: 2 });
    }
}

#[test]
fn unknown_types_are_errors_unless_skipped() {
    let store = Store::open_in_memory().unwrap();
    store.append("order-9", ExpectedVersion::Any, [NewEvent::new("Refunded", "{}")]).unwrap();
    let stored = &read(&store, "order-9")[0];
    let error = Schema::<Shop>::new().decode(stored).unwrap_err();
    assert_eq!(error.reason, DecodeFailure::UnknownType);
    assert_eq!((error.stream.as_str(), error.version, error.position), ("order-9", 0, 0));
    let message = error.to_string();
    for part in ["\"Refunded\"", "\"order-9\"", "version 0", "position 0", "unknown event type"] {
        assert!(message.contains(part), "{message:?} lacks {part}");
    }
    assert_eq!(Schema::<Shop>::new().skip_unknown_types().decode(stored).unwrap(), None);
}

#[test]
fn damaged_foreign_and_newer_payloads_are_errors_naming_the_event() {
    let store = Store::open_in_memory().unwrap();
    let schema = Schema::<Shop>::new();
    store.append("s", ExpectedVersion::Any, [NewEvent::new("Note", "plain text")]).unwrap();
    let mut cut = schema.encode(&Shop::Note("a longer note".into())).unwrap().data().to_vec();
    cut.truncate(cut.len() - 3);
    store.append("s", ExpectedVersion::Any, [NewEvent::new("Note", cut)]).unwrap();
    store
        .append(
            "s",
            ExpectedVersion::Any,
            [old_event(Codec::Postcard, 4, &PlacedV1 { customer: "x".into(), total: 1 })],
        )
        .unwrap();
    let stored = read(&store, "s");
    assert!(matches!(schema.decode(&stored[0]).unwrap_err().reason, DecodeFailure::Header(_)));
    let codec_error = schema.decode(&stored[1]).unwrap_err();
    assert!(matches!(codec_error.reason, DecodeFailure::Codec { codec: Codec::Postcard, schema_version: 1, .. }));
    assert_eq!((codec_error.version, codec_error.position), (1, 1));
    assert_eq!(schema.decode(&stored[2]).unwrap_err().reason, DecodeFailure::NewerSchema { stored: 4, current: 3 });
}

#[derive(Debug, Serialize, Deserialize)]
enum Mislabelled {
    #[serde(rename = "Renamed")]
    Original(u8),
    Other(u8),
}

impl Event for Mislabelled {
    const EVENT_TYPES: &'static [(&'static str, u32)] = &[("Renamed", 1), ("Other", 1)];
    fn event_type(&self) -> &'static str {
        match self {
            Mislabelled::Original(_) => "Renamed",
            Mislabelled::Other(_) => "Renamed", // wrong on purpose
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct NotAnEnum {
    n: u8,
}

impl Event for NotAnEnum {
    const EVENT_TYPES: &'static [(&'static str, u32)] = &[("N", 1)];
    fn event_type(&self) -> &'static str {
        "N"
    }
}

#[test]
fn encoding_checks_the_type_name_against_serde() {
    let schema = Schema::<Mislabelled>::new();
    assert_eq!(schema.encode(&Mislabelled::Original(1)).unwrap().event_type(), "Renamed", "serde rename pins the name");
    assert!(matches!(schema.encode(&Mislabelled::Other(1)), Err(EncodeError::VariantMismatch { .. })));
    let error = Schema::<NotAnEnum>::new().encode(&NotAnEnum { n: 1 }).unwrap_err();
    assert!(matches!(error, EncodeError::Codec { .. }), "{error:?}");
}
