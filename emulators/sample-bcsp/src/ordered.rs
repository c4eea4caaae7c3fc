//! JSON written with object fields in the order given, so replies read naturally
//! (`botState` first, `caller` last). serde_json's own map sorts keys, and turning on its
//! `preserve_order` feature would change it for the whole workspace, the filter included.

use std::fmt::{self, Write};

use serde_json::Value;

/// A JSON value whose objects keep their field order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    /// Any value; objects inside it are written in serde_json's (sorted) order.
    Value(Value),
    Object(Vec<(&'static str, Json)>),
    Array(Vec<Json>),
}

impl Json {
    /// Any serde_json value, e.g. `Json::value("text")` or `Json::value(json!([]))`.
    pub(crate) fn value(v: impl Into<Value>) -> Json {
        Json::Value(v.into())
    }

    /// An object with `fields` in this order.
    pub(crate) fn object(fields: Vec<(&'static str, Json)>) -> Json {
        Json::Object(fields)
    }

    /// Appends `field` to an object; other values are left as they are.
    pub(crate) fn with(mut self, name: &'static str, value: Json) -> Json {
        if let Json::Object(fields) = &mut self {
            fields.push((name, value));
        }
        self
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Value(v) => write!(f, "{v}"),
            Json::Object(fields) => {
                f.write_char('{')?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{}:{value}", Value::from(*name))?;
                }
                f.write_char('}')
            }
            Json::Array(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Json;
    use serde_json::json;

    #[test]
    fn keeps_field_order_and_escapes() {
        let j = Json::object(vec![
            ("z", Json::value("a\"b\n")),
            (
                "a",
                Json::Array(vec![
                    Json::value(1),
                    Json::value(json!({"y": 1, "x": null})),
                ]),
            ),
        ])
        .with("m", Json::object(vec![]));
        assert_eq!(
            j.to_string(),
            r#"{"z":"a\"b\n","a":[1,{"x":null,"y":1}],"m":{}}"#
        );
    }
}
