//! Request validation for the security REST API: bodies parsed with duplicate keys refused,
//! field types checked against a small schema per resource, names checked. Every message names
//! the field at fault, in the style of the OpenSearch security plugin ("String expected",
//! "Array expected", "Object expected").

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Flags only the configuration files may set.
pub(crate) const FLAGS: [&str; 3] = ["reserved", "hidden", "static"];

/// The type of one field of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    /// A string.
    Str,
    /// An array of non-empty strings.
    StrList,
    /// An object whose values are strings.
    StrMap,
    /// An array of objects with these fields (all required arrays of strings).
    Objects(&'static [&'static str]),
}

/// One field: name, type, required.
pub(crate) type Field = (&'static str, Ty, bool);

/// A JSON value in which no object has the same key twice.
struct Checked(Value);

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Checked, E> {
        Ok(Checked(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Checked, E> {
        Ok(Checked(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Checked, E> {
        Ok(Checked(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Checked, E> {
        Ok(Checked(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Checked, E> {
        Ok(Checked(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Checked, E> {
        Ok(Checked(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let mut out = Vec::new();
        while let Some(Checked(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Checked(Value::Array(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut out = Map::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("Duplicate key '{key}'")));
            }
            let Checked(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Checked(Value::Object(out)))
    }
}

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

/// Parses a request body: an empty body, malformed JSON and duplicate keys are 400.
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "Request body required for this action.",
        ));
    }
    serde_json::from_slice::<Checked>(body)
        .map(|Checked(v)| v)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON in the request body: {e}")))
}

fn expected(field: &str, what: &str) -> ApiError {
    ApiError::bad_request(format!("'{field}': {what} expected"))
}

fn check_str_list(field: &str, v: &Value) -> Result<(), ApiError> {
    let Value::Array(items) = v else {
        return Err(expected(field, "Array"));
    };
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if !s.trim().is_empty() => {}
            Value::String(_) | Value::Null => {
                return Err(ApiError::bad_request(format!(
                    "'{field}[{i}]': null or empty element"
                )));
            }
            _ => return Err(expected(&format!("{field}[{i}]"), "String")),
        }
    }
    Ok(())
}

fn check_field(field: &str, ty: Ty, v: &Value) -> Result<(), ApiError> {
    match ty {
        Ty::Str if v.is_string() => Ok(()),
        Ty::Str => Err(expected(field, "String")),
        Ty::StrList => check_str_list(field, v),
        Ty::StrMap => {
            let Value::Object(m) = v else {
                return Err(expected(field, "Object"));
            };
            match m.iter().find(|(_, x)| !x.is_string()) {
                Some((k, _)) => Err(expected(&format!("{field}.{k}"), "String")),
                None => Ok(()),
            }
        }
        Ty::Objects(keys) => {
            let Value::Array(items) = v else {
                return Err(expected(field, "Array"));
            };
            for (i, item) in items.iter().enumerate() {
                let place = format!("{field}[{i}]");
                let fields: Vec<Field> = keys.iter().map(|k| (*k, Ty::StrList, true)).collect();
                check_object(&place, item, &fields)?;
            }
            Ok(())
        }
    }
}

/// Checks `v` against `fields`: an object, no unknown or flag fields, right types, required
/// fields present. `place` prefixes nested field names (empty at the top).
pub(crate) fn check_object(place: &str, v: &Value, fields: &[Field]) -> Result<(), ApiError> {
    let name = |k: &str| {
        if place.is_empty() {
            k.to_owned()
        } else {
            format!("{place}.{k}")
        }
    };
    let Value::Object(m) = v else {
        return Err(if place.is_empty() {
            ApiError::bad_request("The request body must be a JSON object: Object expected")
        } else {
            expected(place, "Object")
        });
    };
    for (k, x) in m {
        if place.is_empty() && FLAGS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "'{k}': cannot be set through the REST API (only in the configuration files)"
            )));
        }
        if k == "index_permissions" {
            return Err(ApiError::bad_request(format!(
                "'{}': not supported by encrypt-repo; use repository_permissions",
                name(k)
            )));
        }
        let Some((_, ty, _)) = fields.iter().find(|(f, _, _)| f == k) else {
            return Err(ApiError::bad_request(format!(
                "'{}': unknown field",
                name(k)
            )));
        };
        check_field(&name(k), *ty, x)?;
    }
    if let Some((f, _, _)) = fields
        .iter()
        .find(|(f, _, req)| *req && !m.contains_key(*f))
    {
        return Err(ApiError::bad_request(format!("'{}': required", name(f))));
    }
    Ok(())
}

/// Checks a resource name taken from the path (or a JSON Patch): not empty, at most 255
/// characters, no control characters; user names also without `:` (basic authentication
/// separates user and password with it).
pub(crate) fn check_name(name: &str, user: bool) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "'name': invalid resource name {:?} (1-255 characters, no control characters)",
            name.chars().take(64).collect::<String>()
        )));
    }
    if user && name.contains(':') {
        return Err(ApiError::bad_request(format!(
            "'username': {name:?} must not contain ':'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(parse_body(br#"{"a":1,"b":{"c":1,"d":2}}"#).is_ok());
        let e = parse_body(br#"{"a":1,"a":2}"#).expect_err("dup");
        assert!(e.reason.contains("Duplicate key 'a'"), "{}", e.reason);
        let e =
            parse_body(br#"[{"op":"add","path":"/x","value":{"k":1,"k":1}}]"#).expect_err("dup");
        assert!(e.reason.contains("Duplicate key 'k'"), "{}", e.reason);
        assert!(
            parse_body(b"  ")
                .expect_err("empty")
                .reason
                .contains("required")
        );
    }

    #[test]
    fn types_are_named() {
        let fields: &[Field] = &[
            ("description", Ty::Str, false),
            ("backend_roles", Ty::StrList, false),
            ("attributes", Ty::StrMap, false),
            ("perms", Ty::Objects(&["patterns"]), false),
        ];
        let reason = |v: Value| check_object("", &v, fields).expect_err("refused").reason;
        assert_eq!(
            reason(serde_json::json!({"description": 1})),
            "'description': String expected"
        );
        assert_eq!(
            reason(serde_json::json!({"backend_roles": "x"})),
            "'backend_roles': Array expected"
        );
        assert_eq!(
            reason(serde_json::json!({"attributes": []})),
            "'attributes': Object expected"
        );
        assert_eq!(
            reason(serde_json::json!({"backend_roles": ["a", ""]})),
            "'backend_roles[1]': null or empty element"
        );
        assert_eq!(
            reason(serde_json::json!({"backend_roles": [null]})),
            "'backend_roles[0]': null or empty element"
        );
        assert_eq!(
            reason(serde_json::json!({"perms": [{"patterns": ["a"], "x": []}]})),
            "'perms[0].x': unknown field"
        );
        assert_eq!(
            reason(serde_json::json!({"perms": [{}]})),
            "'perms[0].patterns': required"
        );
        assert!(reason(serde_json::json!({"hidden": true})).contains("'hidden'"));
        assert!(reason(serde_json::json!([])).contains("Object expected"));
    }
}
