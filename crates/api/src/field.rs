//! Field errors as apimachinery's `util/validation/field` renders them.
//!
//! `spec.volumes[1].name: Duplicate value: "log-volume"` is `FieldError::duplicate(path, json!("log-volume"))`.

use serde_json::Value;
use std::fmt;

/// The kind of a field error; its text is the second part of the rendered error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// `Not found`
    NotFound,
    /// `Required value` (never prints the value)
    Required,
    /// `Duplicate value`
    Duplicate,
    /// `Invalid value`
    Invalid,
    /// `Unsupported value`
    NotSupported,
    /// `Forbidden` (never prints the value)
    Forbidden,
    /// `Too long`
    TooLong,
    /// `Too many`
    TooMany,
    /// `Internal error`
    Internal,
}

impl ErrorType {
    /// The text apimachinery prints for this type.
    pub fn text(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }

    /// The `StatusCause.reason` Kubernetes sends for this type (`FieldValueDuplicate`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
        }
    }
}

/// One validation error on one field.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: ErrorType,
    /// The field's path, e.g. `spec.volumes[1].name`.
    pub field: String,
    /// The offending value; `Value::Null` prints nothing.
    pub value: Value,
    /// A free-text explanation; empty prints nothing.
    pub detail: String,
}

impl FieldError {
    /// An error of `kind` on `field`.
    pub fn new(
        kind: ErrorType,
        field: impl Into<String>,
        value: Value,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }
    /// `Required value[: detail]`
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, Value::Null, detail)
    }
    /// `Invalid value: <value>[: detail]`
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, field, value, detail)
    }
    /// `Duplicate value: <value>`
    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self::new(ErrorType::Duplicate, field, value, "")
    }
    /// `Not found: <value>`
    pub fn not_found(field: impl Into<String>, value: Value) -> Self {
        Self::new(ErrorType::NotFound, field, value, "")
    }
    /// `Forbidden[: detail]`
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, field, Value::Null, detail)
    }
    /// `Unsupported value: <value>: supported values: "a", "b"` (sorted, quoted).
    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[&str]) -> Self {
        let mut quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        quoted.sort();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, field, value, detail)
    }
    /// `Too long: <detail>` (the value is not printed, as upstream's TooLongMaxLength does).
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new(
            ErrorType::TooLong,
            field,
            Value::Null,
            format!("may not be more than {max} bytes"),
        )
    }

    /// The message after the field path: `Duplicate value: "log-volume"`.
    pub fn body(&self) -> String {
        let mut s = self.kind.text().to_string();
        let shows_value = !matches!(
            self.kind,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal
        );
        if shows_value && !self.value.is_null() {
            s.push_str(": ");
            s.push_str(&render_value(&self.value));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Renders a value as Go's `%q` / `%v` would in apimachinery's messages.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Joins errors the way `errors.NewAggregate` does: one as is, several as `[e1, e2]`, duplicates dropped.
pub fn aggregate(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let s = e.to_string();
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    if seen.len() == 1 {
        seen.remove(0)
    } else {
        format!("[{}]", seen.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_apimachinery() {
        let e = FieldError::duplicate("spec.volumes[1].name", json!("log-volume"));
        assert_eq!(
            e.to_string(),
            r#"spec.volumes[1].name: Duplicate value: "log-volume""#
        );
        let e = FieldError::required("spec.containers[0].name", "");
        assert_eq!(e.to_string(), "spec.containers[0].name: Required value");
        let e = FieldError::not_supported("x.type", json!("Dir"), &["File", "", "Directory"]);
        assert_eq!(
            e.to_string(),
            r#"x.type: Unsupported value: "Dir": supported values: "", "Directory", "File""#
        );
        let e = FieldError::invalid("m", json!(644), "must be a number");
        assert_eq!(e.to_string(), "m: Invalid value: 644: must be a number");
    }

    #[test]
    fn aggregates_with_brackets_and_dedup() {
        let a = FieldError::required("a", "");
        let b = FieldError::required("b", "");
        assert_eq!(aggregate(std::slice::from_ref(&a)), "a: Required value");
        assert_eq!(
            aggregate(&[a.clone(), b, a]),
            "[a: Required value, b: Required value]"
        );
    }
}
