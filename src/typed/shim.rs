//! Stores an event enum's *variant content* without its serde tag, and decodes it back by
//! the stored type name.
//!
//! Why: serde's own enum encodings tie stored bytes to the Rust declaration — postcard
//! writes the variant's *index* (reordering variants would silently decode old events as
//! other variants), JSON wraps the content in the variant's name. The event type name is
//! stored in the record already, so the payload holds only the variant's fields, and
//! decoding hands serde the stored name as the variant identifier. The serde variant name
//! must equal [`Event::event_type`](super::Event::event_type) (use `#[serde(rename)]` to
//! keep a stable name while renaming the Rust variant); encoding checks it.

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Impossible, Serialize, Serializer};

/// Serializes `value` (an enum) as its variant's content, recording the variant's name.
pub(crate) struct Untagged<'a, T> {
    pub(crate) value: &'a T,
    pub(crate) variant: &'a Cell<Option<&'static str>>,
}

impl<T: Serialize> Serialize for Untagged<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(UntagSerializer { inner: serializer, variant: self.variant })
    }
}

struct UntagSerializer<'a, S> {
    inner: S,
    variant: &'a Cell<Option<&'static str>>,
}

fn not_an_enum<E: ser::Error>() -> E {
    E::custom("a typed event must be an enum (one variant per event type)")
}

macro_rules! refuse {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<S::Ok, S::Error> { Err(not_an_enum()) })*
    };
}

impl<'a, S: Serializer> Serializer for UntagSerializer<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Impossible<S::Ok, S::Error>;
    type SerializeTuple = Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = TupleContent<S::SerializeTuple>;
    type SerializeMap = Impossible<S::Ok, S::Error>;
    type SerializeStruct = Impossible<S::Ok, S::Error>;
    type SerializeStructVariant = StructContent<S::SerializeStruct>;

    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
    );

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<S::Ok, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<S::Ok, S::Error> {
        self.variant.set(Some(variant));
        self.inner.serialize_unit()
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, value: &T) -> Result<S::Ok, S::Error> {
        // A newtype around the enum is transparent.
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.variant.set(Some(variant));
        value.serialize(self.inner)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.variant.set(Some(variant));
        Ok(TupleContent(self.inner.serialize_tuple(len)?))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, S::Error> {
        Err(not_an_enum())
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.variant.set(Some(variant));
        Ok(StructContent(self.inner.serialize_struct(variant, len)?))
    }
}

/// A tuple variant's fields, written as a plain tuple.
pub(crate) struct TupleContent<T>(T);

impl<T: ser::SerializeTuple> ser::SerializeTupleVariant for TupleContent<T> {
    type Ok = T::Ok;
    type Error = T::Error;

    fn serialize_field<V: ?Sized + Serialize>(&mut self, value: &V) -> Result<(), T::Error> {
        self.0.serialize_element(value)
    }

    fn end(self) -> Result<T::Ok, T::Error> {
        self.0.end()
    }
}

/// A struct variant's fields, written as a plain struct.
pub(crate) struct StructContent<T>(T);

impl<T: ser::SerializeStruct> ser::SerializeStructVariant for StructContent<T> {
    type Ok = T::Ok;
    type Error = T::Error;

    fn serialize_field<V: ?Sized + Serialize>(&mut self, key: &'static str, value: &V) -> Result<(), T::Error> {
        self.0.serialize_field(key, value)
    }

    fn end(self) -> Result<T::Ok, T::Error> {
        self.0.end()
    }
}

/// Decodes an enum whose variant is `variant` from a deserializer holding only its content.
pub(crate) struct Retag<D> {
    pub(crate) variant: &'static str,
    pub(crate) inner: D,
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for Retag<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, D::Error> {
        Err(de::Error::custom("a typed event must be an enum (one variant per event type)"))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de, D: de::Deserializer<'de>> de::EnumAccess<'de> for Retag<D> {
    type Error = D::Error;
    type Variant = Content<D>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Content<D>), D::Error> {
        let name: de::value::StrDeserializer<'_, D::Error> = self.variant.into_deserializer();
        Ok((seed.deserialize(name)?, Content { variant: self.variant, inner: self.inner }))
    }
}

/// The stored content of the variant chosen by name.
pub(crate) struct Content<D> {
    variant: &'static str,
    inner: D,
}

impl<'de, D: de::Deserializer<'de>> de::VariantAccess<'de> for Content<D> {
    type Error = D::Error;

    fn unit_variant(self) -> Result<(), D::Error> {
        <() as de::Deserialize>::deserialize(self.inner)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, D::Error> {
        seed.deserialize(self.inner)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(self.variant, fields, visitor)
    }
}
