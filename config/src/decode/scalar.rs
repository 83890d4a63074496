//! Typed scalar fields as Kubernetes and Argo write them: integers, numbers, Kubernetes'
//! IntOrString, strings, text, flags, and fields weir accepts without reading; and the
//! lenient containers Argo's analysis metrics are read with ([`List`], [`OrDefault`],
//! [`present`], [`mapping`]).
//!
//! These never fail to decode. Something else written where a field wants an integer is
//! kept as [`Written`] (its JSON text), so that validation can say what is wrong with it,
//! quoting it, and still check the rest of the document: every error at once.

use std::fmt;

use serde::de::{Deserialize, DeserializeOwned, Deserializer};
use serde_json::Value;

/// What was written, as JSON text (`"abc"`, `1.5`, `{}`), for a message that quotes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written(String);

impl Written {
    pub(super) fn of(v: &Value) -> Written {
        Written(v.to_string())
    }

    /// A string as JSON writes it, with quotes.
    pub fn string(s: &str) -> Written {
        Written(Value::from(s).to_string())
    }
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An integer field (Kubernetes `int32`/`int64`: `progressDeadlineSeconds`,
/// `revisionHistoryLimit`, `startingStep`, a selector's `limit`...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Int {
    /// A whole number.
    Int(i64),
    /// Anything else: a fraction, a string, a number beyond `i64`, a mapping.
    Other(Written),
}

impl Int {
    /// The number, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Int::Int(n) => Some(*n),
            Int::Other(_) => None,
        }
    }
}

impl fmt::Display for Int {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Int::Int(n) => write!(f, "{n}"),
            Int::Other(w) => write!(f, "{w}"),
        }
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match v.as_i64() {
            Some(n) => Int::Int(n),
            None => Int::Other(Written::of(&v)),
        })
    }
}

/// A number field weir takes with a fraction (`setWeight: 0.5`, a mirror `percentage`, a
/// latency `quantile`).
#[derive(Clone, Debug, PartialEq)]
pub enum Number {
    /// A number, and how it was written.
    Number(f64, Written),
    /// A string (a number only where the field says it may be written as one).
    String(String),
    /// Anything else.
    Other(Written),
}

impl Number {
    /// The number, if it is written as one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Number::Number(n, _) => Some(*n),
            Number::String(_) | Number::Other(_) => None,
        }
    }

    /// The number, written as one or as a string holding one.
    pub fn parse_f64(&self) -> Option<f64> {
        match self {
            Number::String(s) => s.parse().ok(),
            other => other.as_f64(),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Number(_, w) | Number::Other(w) => write!(f, "{w}"),
            Number::String(s) => write!(f, "{}", Written::string(s)),
        }
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::Number(n) => Number::Number(n.as_f64().unwrap_or(f64::NAN), Written::of(&v)),
            Value::String(s) => Number::String(s.clone()),
            _ => Number::Other(Written::of(&v)),
        })
    }
}

/// Kubernetes' IntOrString: `maxSurge: 1` or `maxSurge: "25%"`, `pause.duration: 30` or
/// `"30s"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntOrString {
    /// A whole number.
    Int(i64),
    /// A string.
    String(String),
    /// A number that is not a whole `i64` (a fraction, or too large).
    Number(Written),
    /// Anything else: a bool, a list, a mapping.
    Other(Written),
}

impl IntOrString {
    /// The whole number, written as one or as a string holding one (`"3"`).
    pub fn parse_i64(&self) -> Option<i64> {
        match self {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(s) => s.trim().parse().ok(),
            IntOrString::Number(_) | IntOrString::Other(_) => None,
        }
    }

    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            IntOrString::String(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for IntOrString {
    /// As JSON writes it: a string with quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => write!(f, "{}", Written::string(s)),
            IntOrString::Number(w) | IntOrString::Other(w) => write!(f, "{w}"),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => IntOrString::Int(i),
                None => IntOrString::Number(Written::of(&v)),
            },
            Value::String(s) => IntOrString::String(s.clone()),
            _ => IntOrString::Other(Written::of(&v)),
        })
    }
}

/// A string field that also takes a number or a bool as its text (an arg's `value: 3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Text {
    /// The text (of a string, a number or a bool).
    Text(String),
    /// A list or a mapping.
    Other(Written),
}

impl fmt::Display for Text {
    /// As JSON writes it: a string with quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Text::Text(s) => write!(f, "{}", Written::string(s)),
            Text::Other(w) => write!(f, "{w}"),
        }
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::String(s) => Text::Text(s.clone()),
            Value::Number(n) => Text::Text(n.to_string()),
            Value::Bool(b) => Text::Text(b.to_string()),
            _ => Text::Other(Written::of(&v)),
        })
    }
}

/// A string field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Str {
    /// A string.
    Str(String),
    /// Anything else.
    Other(Written),
}

impl Str {
    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Str::Str(s) => Some(s),
            Str::Other(_) => None,
        }
    }
}

impl fmt::Display for Str {
    /// As JSON writes it: a string with quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Str::Str(s) => write!(f, "{}", Written::string(s)),
            Str::Other(w) => write!(f, "{w}"),
        }
    }
}

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match v {
            Value::String(s) => Str::Str(s),
            other => Str::Other(Written::of(&other)),
        })
    }
}

/// Any value taken as text: a string as it is, anything else as its JSON text (a job's
/// `args: [1]` is `"1"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AsText(pub String);

impl<'de> Deserialize<'de> for AsText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(AsText(match Value::deserialize(d)? {
            Value::String(s) => s,
            other => other.to_string(),
        }))
    }
}

/// A flag. Anything but `true` or `false` counts as not given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flag(pub Option<bool>);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Flag(Value::deserialize(d)?.as_bool()))
    }
}

/// A list whose items are read leniently; anything but a list is an empty one.
#[derive(Clone, Debug, PartialEq)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| T::deserialize(v).map_err(serde::de::Error::custom))
                .collect::<Result<_, _>>()
                .map(List),
            _ => Ok(List(Vec::new())),
        }
    }
}

/// A mapping read into `T` (whose fields are all lenient); anything but a mapping reads
/// as `T::default()`, as though it were empty.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrDefault<T>(pub T);

impl<'de, T: DeserializeOwned + Default> Deserialize<'de> for OrDefault<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            v @ Value::Object(_) => T::deserialize(v)
                .map(OrDefault)
                .map_err(serde::de::Error::custom),
            _ => Ok(OrDefault(T::default())),
        }
    }
}

/// For `#[serde(default, deserialize_with = "present")]`: a field that is written is
/// `Some`, even when it is written as `null` (which the field's type then reports as
/// written). Without it, `count: ~` would read as no count at all.
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// For `#[serde(default, deserialize_with = "mapping")]`: a mapping read into `T`, and
/// anything else (`null`, a string, a list) as not given.
pub fn mapping<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    match Value::deserialize(d)? {
        v @ Value::Object(_) => T::deserialize(v)
            .map(Some)
            .map_err(serde::de::Error::custom),
        _ => Ok(None),
    }
}

/// A field weir accepts and does not read (pod counts, pod metadata, anti-affinity: they
/// mean nothing without pods). Only whether it is written matters.
pub type Ignored = serde::de::IgnoredAny;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_values_are_kept_as_written() {
        let int: Int = serde_json::from_value(json!("600")).unwrap();
        assert_eq!(int.to_string(), "\"600\"");
        let int: Int = serde_json::from_value(json!(1.5)).unwrap();
        assert_eq!((int.as_i64(), int.to_string()), (None, "1.5".to_owned()));
        let n: Number = serde_json::from_value(json!(100.0)).unwrap();
        assert_eq!(
            (n.as_f64(), n.to_string()),
            (Some(100.0), "100.0".to_owned())
        );
        let s: IntOrString = serde_json::from_value(json!("25%")).unwrap();
        assert_eq!(s, IntOrString::String("25%".into()));
        let s: IntOrString = serde_json::from_value(json!(2.5)).unwrap();
        assert_eq!(s, IntOrString::Number(Written("2.5".into())));
        let t: Text = serde_json::from_value(json!(3)).unwrap();
        assert_eq!(t, Text::Text("3".into()));
        let t: Text = serde_json::from_value(json!([1])).unwrap();
        assert_eq!(t, Text::Other(Written("[1]".into())));
    }
}
