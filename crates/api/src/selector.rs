//! Label and field selectors, parsed and matched as apimachinery does.
//!
//! [`LabelSelector`] follows `pkg/labels/selector.go`: the same grammar (`k=v`, `k==v`, `k!=v`, `k`,
//! `!k`, `k in (a,b)`, `k notin (a)`, `k>1`, `k<1`, comma = AND), the same error texts, and the
//! same canonical string form (requirements sorted by key, set values sorted), which is also what
//! the Table printers show for a workload's selector.
//!
//! [`FieldSelector`] follows `pkg/fields/selector.go` for the grammar and, for what each kind can
//! select on, two upstream tables that differ: the field-label conversion functions
//! (`pkg/apis/<group>/<version>/conversion.go`) decide which labels a request may name, and the
//! registry strategies' `ToSelectableFields` decide what value each label has on an object. A
//! label that is accepted but never set reads as `""`, exactly as `fields.Set.Get` does.

use crate::field::{FieldError, aggregate};
use crate::registry::Resource;
use serde_json::{Map, Value, json};
use std::fmt;

/// A selector that does not parse, or names a field the kind cannot select on.
///
/// The display text is the message kube-apiserver puts in its 400 `BadRequest` Status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A `labelSelector` that does not parse.
    #[error("{message}")]
    InvalidLabelSelector {
        /// The selector as the client sent it.
        selector: String,
        /// apimachinery's parse error.
        message: String,
    },
    /// A `fieldSelector` that does not parse.
    #[error("{message}")]
    InvalidFieldSelector {
        /// The selector as the client sent it.
        selector: String,
        /// apimachinery's parse error.
        message: String,
    },
    /// A `fieldSelector` naming a field the kind does not support.
    #[error("{message}")]
    UnsupportedField {
        /// The field label the client named.
        field: String,
        /// The conversion function's error for that kind.
        message: String,
    },
}

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `k in (a,b)`
    In,
    /// `k notin (a,b)`
    NotIn,
    /// `k=v`
    Equals,
    /// `k==v`
    DoubleEquals,
    /// `k!=v`
    NotEquals,
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
    /// `k>1`
    GreaterThan,
    /// `k<1`
    LessThan,
}

/// One requirement of a label selector: a key, an operator and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values (sorted and unique when parsed from a string).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .map(|v| v.as_str().unwrap_or_default());
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(has),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // Both sides must be integers; anything else simply does not match, as upstream.
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut values = self.values.clone();
        values.sort();
        f.write_str(&values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector; requirements are ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// `labels.Nothing()`: what a missing `metav1.LabelSelector` converts to.
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches everything (an empty `labelSelector`).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches nothing (a workload without a selector).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the `labelSelector` query syntax, with apimachinery's error texts.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser {
            items: lex(selector),
            pos: 0,
        };
        let mut requirements =
            parser
                .parse()
                .map_err(|message| SelectorError::InvalidLabelSelector {
                    selector: selector.to_string(),
                    message,
                })?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Builds the selector a `metav1.LabelSelector` (`matchLabels`, `matchExpressions`) stands for,
    /// as `metav1.LabelSelectorAsSelector` does: `None` matches nothing, `{}` matches everything.
    pub fn from_label_selector(selector: Option<&Value>) -> Result<Self, SelectorError> {
        let Some(selector) = selector.filter(|s| !s.is_null()) else {
            return Ok(Self::nothing());
        };
        let text = selector.to_string();
        let invalid = |message: String| SelectorError::InvalidLabelSelector {
            selector: text.clone(),
            message,
        };
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                let value = v.as_str().unwrap_or_default().to_string();
                requirements
                    .push(new_requirement(k, Operator::Equals, vec![value]).map_err(&invalid)?);
            }
        }
        for expr in selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let op_text = expr
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let op = match op_text {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(invalid(format!(
                        "{other:?} is not a valid label selector operator"
                    )));
                }
            };
            let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
            let values = expr
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect();
            requirements.push(new_requirement(key, op, values).map_err(&invalid)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Builds the selector matching exactly `labels` (a Service's or an RC's `selector` map).
    pub fn from_map(labels: &Map<String, Value>) -> Self {
        let mut requirements: Vec<Requirement> = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.as_str().unwrap_or_default().to_string()],
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// Whether an object with these `metadata.labels` is selected.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The one value `label` must have, when the selector pins it (`=`, `==` or a one-value `in`).
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(Requirement::to_string)
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// `labels.NewRequirement`: validates the key, the value count for the operator, and each value.
fn new_requirement(
    key: &str,
    operator: Operator,
    values: Vec<String>,
) -> Result<Requirement, String> {
    let mut errs = Vec::new();
    if let Err(e) = validate_label_key(key, "key") {
        errs.push(e);
    }
    let count_error = match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            Some("for 'in', 'notin' operators, values set can't be empty")
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            Some("exact-match compatibility requires one single value")
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            Some("values set must be empty for exists and does not exist")
        }
        Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
            Some("for 'Gt', 'Lt' operators, exactly one value is required")
        }
        _ => None,
    };
    if let Some(detail) = count_error {
        errs.push(FieldError::invalid("values", json!(values), detail));
    }
    if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
        for (i, v) in values.iter().enumerate() {
            if v.parse::<i64>().is_err() {
                errs.push(FieldError::invalid(
                    format!("values[{i}]"),
                    json!(v),
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                ));
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let problems = label_value_errors(v);
        if !problems.is_empty() {
            errs.push(FieldError::invalid(
                format!("values[{i}][{key}]"),
                json!(v),
                problems.join("; "),
            ));
        }
    }
    if errs.is_empty() {
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    } else {
        Err(aggregate(&errs))
    }
}

/// `validateLabelKey`. The parser passes a nil field path, which Go prints as `<nil>`.
fn validate_label_key(key: &str, path: &str) -> Result<(), FieldError> {
    let problems = qualified_name_errors(key);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(FieldError::invalid(path, json!(key), problems.join("; ")))
    }
}

const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// apimachinery's `RegexError`, including its doubled space before each "or".
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        match (b.first(), b.last()) {
            (Some(f), Some(l)) => edge(f) && edge(l) && b.iter().all(|c| edge(c) || *c == b'-'),
            _ => false,
        }
    })
}

/// `validation.IsQualifiedName`.
fn qualified_name_errors(value: &str) -> Vec<String> {
    let name_regex = || {
        regex_error(
            QUALIFIED_NAME_MSG,
            QUALIFIED_NAME_FMT,
            &["MyName", "my.name", "123-abc"],
        )
    };
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > 253 {
                    errs.push("prefix part must be no more than 253 characters".to_string());
                }
                if !is_dns1123_subdomain(prefix) {
                    errs.push(format!(
                        "prefix part {}",
                        regex_error(
                            DNS1123_SUBDOMAIN_MSG,
                            DNS1123_SUBDOMAIN_FMT,
                            &["example.com"]
                        )
                    ));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                name_regex()
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !is_qualified_name_part(name) {
        errs.push(format!("name part {}", name_regex()));
    }
    errs
}

/// `validation.IsValidLabelValue`.
fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            &format!("({QUALIFIED_NAME_FMT})?"),
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits the selector into tokens, ending with [`Token::End`], as apimachinery's lexer does.
fn lex(s: &str) -> Vec<(Token, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_space(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            out.push((Token::End, String::new()));
            return out;
        }
        let start = pos;
        if is_special(b[pos]) {
            // Longest run of special characters that still forms a token ("!=" but not "=!").
            let mut last: Option<(Token, usize)> = None;
            while pos < b.len() && is_special(b[pos]) {
                pos += 1;
                match keyword(&s[start..pos]) {
                    Some(t) => last = Some((t, pos)),
                    None if last.is_some() => {
                        pos -= 1;
                        break;
                    }
                    None => {}
                }
            }
            match last {
                Some((t, end)) => {
                    pos = end;
                    out.push((t, s[start..end].to_string()));
                }
                None => out.push((
                    Token::Error,
                    format!("error expected: keyword found '{}'", &s[start..pos]),
                )),
            }
        } else {
            while pos < b.len() && !is_special(b[pos]) && !is_space(b[pos]) {
                pos += 1;
            }
            let word = &s[start..pos];
            out.push((keyword(word).unwrap_or(Token::Identifier), word.to_string()));
        }
    }
}

struct Parser {
    items: Vec<(Token, String)>,
    pos: usize,
}

impl Parser {
    /// In value position `in` and `notin` are plain identifiers (`x in (in)`).
    fn lookahead(&self, values: bool) -> (Token, String) {
        let (t, l) = self
            .items
            .get(self.pos)
            .cloned()
            .unwrap_or((Token::End, String::new()));
        if values && matches!(t, Token::In | Token::NotIn) {
            (Token::Identifier, l)
        } else {
            (t, l)
        }
    }

    fn consume(&mut self, values: bool) -> (Token, String) {
        let item = self.lookahead(values);
        self.pos += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut out = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(true);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    out.push(r);
                    let (t, l) = self.consume(true);
                    match t {
                        Token::End => return Ok(out),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(true);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(out),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut operator = None;
        let (mut tok, mut key) = self.consume(true);
        if tok == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (tok, key) = self.consume(true);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{key}', expected: identifier"));
        }
        validate_label_key(&key, "<nil>").map_err(|e| e.to_string())?;
        let (next, _) = self.lookahead(true);
        if operator.is_none() && matches!(next, Token::End | Token::Comma) {
            operator = Some(Operator::Exists);
        }
        // `!k` never takes an operator: whatever follows it is the caller's problem (`!a=b` fails
        // with "expected: ',' or 'end of string'", as upstream).
        if let Some(op) = operator {
            return new_requirement(&key, op, Vec::new());
        }
        let (tok, lit) = self.consume(false);
        let op = match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: '=', '!=', '==', 'in', notin'"
                ));
            }
        };
        let mut values = match op {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        values.sort();
        values.dedup();
        new_requirement(&key, op, values)
    }

    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(true);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(true);
        match tok {
            Token::Identifier | Token::Comma => {
                let s = self.identifiers()?;
                let (tok, _) = self.consume(true);
                if tok != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(s)
            }
            Token::ClosedPar => {
                self.consume(true);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, String> {
        let mut s: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(true);
            match tok {
                Token::Identifier => {
                    s.push(lit);
                    let (t2, l2) = self.lookahead(true);
                    match t2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(s),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // Empty values are allowed: "(,a)", "(a,)", "(a,,b)".
                    if s.is_empty() {
                        s.push(String::new());
                    }
                    let (t2, _) = self.lookahead(true);
                    if t2 == Token::ClosedPar {
                        s.push(String::new());
                        return Ok(s);
                    }
                    if t2 == Token::Comma {
                        self.consume(true);
                        s.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(true);
        if matches!(tok, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(true);
        if tok == Token::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    /// The field label as the client wrote it (`spec.nodeName`).
    pub field: String,
    /// The unescaped value.
    pub value: String,
    /// `!=` rather than `=`/`==`.
    pub negated: bool,
}

/// A parsed field selector; terms are ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query syntax (`k=v`, `k==v`, `k!=v`, comma = AND, `\,` `\=` `\\`
    /// escapes in values), with apimachinery's error texts.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let invalid = |message: String| SelectorError::InvalidFieldSelector {
            selector: selector.to_string(),
            message,
        };
        let mut parts = split_terms(selector);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, op, rhs)) = split_term(part) else {
                return Err(invalid(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                )));
            };
            let value = unescape_value(rhs).map_err(invalid)?;
            terms.push(FieldTerm {
                field: field.to_string(),
                value,
                negated: op == "!=",
            });
        }
        Ok(FieldSelector { terms })
    }

    /// The terms, sorted as upstream sorts them.
    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Checks that every field is one the kind supports, as the field-label conversion does
    /// before any list or watch (the server answers 400 `BadRequest` with this message).
    pub fn check_supported(&self, r: &Resource) -> Result<(), SelectorError> {
        for t in &self.terms {
            canonical_label(r, &t.field)?;
        }
        Ok(())
    }

    /// Whether `obj` (of resource `r`) is selected. Fields the kind does not support read as "";
    /// call [`FieldSelector::check_supported`] first to reject them.
    pub fn matches(&self, r: &Resource, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let label = canonical_label(r, &t.field).unwrap_or(&t.field);
            (field_value(r, label, obj) == t.value) != t.negated
        })
    }

    /// The name when the selector pins `metadata.name=X`, so the server can read one key.
    pub fn name_selector(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| !t.negated && t.field == "metadata.name")
            .map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| {
                format!(
                    "{}{}{}",
                    t.field,
                    if t.negated { "!=" } else { "=" },
                    t.value
                )
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on commas that are not escaped with a backslash.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// Splits at the first operator; `!=` and `==` win over `=` at the same position.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, String> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if matches!(c, '\\' | ',' | '=') {
                out.push(c);
                in_slash = false;
                continue;
            }
            return Err(format!(
                "invalid field selector: invalid escape sequence: \\{c}"
            ));
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune with %v, which is its code point number.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ));
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

/// What the field-label conversion function of a kind accepts.
struct FieldRules {
    /// Labels accepted unchanged besides `metadata.name` (and `metadata.namespace` if namespaced).
    accepted: &'static [&'static str],
    /// Labels accepted and renamed: (client label, canonical label).
    aliases: &'static [(&'static str, &'static str)],
    /// Whether `metadata.namespace` is accepted.
    namespace: bool,
    /// How a rejection is worded.
    reject: Reject,
}

enum Reject {
    /// `runtime.DefaultMetaV1FieldSelectorConversion`, for kinds without their own function.
    Default,
    /// Most core kinds.
    NotSupported,
    /// batch/v1 Job.
    Job,
}

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

fn rules(r: &Resource) -> FieldRules {
    let own = |accepted, namespace| FieldRules {
        accepted,
        aliases: &[],
        namespace,
        reject: Reject::NotSupported,
    };
    match (r.group, r.plural) {
        ("", "pods") => FieldRules {
            accepted: &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ],
            // Old v1 clients send spec.host.
            aliases: &[("spec.host", "spec.nodeName")],
            namespace: true,
            reject: Reject::NotSupported,
        },
        ("", "nodes") => own(&["spec.unschedulable"], false),
        ("", "namespaces") => own(&["status.phase"], false),
        ("", "secrets") => own(&["type"], true),
        ("", "services") => own(&["spec.clusterIP", "spec.type"], true),
        ("", "replicationcontrollers") => own(&["status.replicas"], true),
        ("", "events") => own(EVENT_FIELDS, true),
        ("events.k8s.io", "events") => FieldRules {
            accepted: &["reason", "source", "type"],
            aliases: &[
                ("regarding.kind", "involvedObject.kind"),
                ("regarding.namespace", "involvedObject.namespace"),
                ("regarding.name", "involvedObject.name"),
                ("regarding.uid", "involvedObject.uid"),
                ("regarding.apiVersion", "involvedObject.apiVersion"),
                (
                    "regarding.resourceVersion",
                    "involvedObject.resourceVersion",
                ),
                ("regarding.fieldPath", "involvedObject.fieldPath"),
                ("reportingController", "reportingComponent"),
            ],
            namespace: true,
            reject: Reject::NotSupported,
        },
        ("batch", "jobs") => FieldRules {
            accepted: &["status.successful"],
            aliases: &[],
            namespace: true,
            reject: Reject::Job,
        },
        _ => FieldRules {
            accepted: &[],
            aliases: &[],
            namespace: true,
            reject: Reject::Default,
        },
    }
}

/// The label the kind's selectable field set uses for `label`, or the kind's rejection.
fn canonical_label<'a>(r: &Resource, label: &'a str) -> Result<&'a str, SelectorError> {
    let rules = rules(r);
    if label == "metadata.name"
        || (label == "metadata.namespace" && rules.namespace)
        || rules.accepted.contains(&label)
    {
        return Ok(label);
    }
    if let Some((_, to)) = rules.aliases.iter().find(|(from, _)| *from == label) {
        return Ok(to);
    }
    let message = match rules.reject {
        Reject::Default => {
            format!(
                "{label:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            )
        }
        Reject::NotSupported => format!("field label not supported: {label}"),
        Reject::Job => format!("field label {label:?} not supported for batchv1.Job"),
    };
    Err(SelectorError::UnsupportedField {
        field: label.to_string(),
        message,
    })
}

fn str_at<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    let mut v = obj;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return "",
        }
    }
    v.as_str().unwrap_or_default()
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

/// The value of a (canonical) field label on an object, as the kind's `ToSelectableFields` sets it.
fn field_value(r: &Resource, label: &str, obj: &Value) -> String {
    let bool_at = |path: &[&str]| {
        let mut v = obj;
        for p in path {
            v = v.get(p).unwrap_or(&Value::Null);
        }
        v.as_bool().unwrap_or(false).to_string()
    };
    let int_at = |a: &str, b: &str| {
        obj.get(a)
            .and_then(|s| s.get(b))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string()
    };
    match label {
        "metadata.name" => return str_at(obj, &["metadata", "name"]).to_string(),
        "metadata.namespace" => return str_at(obj, &["metadata", "namespace"]).to_string(),
        _ => {}
    }
    match (r.group, r.plural) {
        ("", "pods") => match label {
            "spec.hostNetwork" => bool_at(&["spec", "hostNetwork"]),
            // Upstream reads the first of status.podIPs; podIP mirrors it.
            "status.podIP" => {
                let first = obj
                    .pointer("/status/podIPs/0/ip")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                first_non_empty(first, str_at(obj, &["status", "podIP"])).to_string()
            }
            "spec.nodeName"
            | "spec.restartPolicy"
            | "spec.schedulerName"
            | "spec.serviceAccountName"
            | "status.phase"
            | "status.nominatedNodeName" => {
                let (a, b) = label.split_once('.').unwrap_or_default();
                str_at(obj, &[a, b]).to_string()
            }
            // Accepted but never set (status.podIPs): reads as "".
            _ => String::new(),
        },
        ("", "nodes") if label == "spec.unschedulable" => bool_at(&["spec", "unschedulable"]),
        ("", "namespaces") if label == "status.phase" => {
            str_at(obj, &["status", "phase"]).to_string()
        }
        ("", "secrets") if label == "type" => str_at(obj, &["type"]).to_string(),
        ("", "services") if label == "spec.clusterIP" => {
            str_at(obj, &["spec", "clusterIP"]).to_string()
        }
        ("", "services") if label == "spec.type" => str_at(obj, &["spec", "type"]).to_string(),
        ("", "replicationcontrollers") if label == "status.replicas" => {
            int_at("status", "replicas")
        }
        ("batch", "jobs") if label == "status.successful" => int_at("status", "succeeded"),
        (_, "events") => event_field(label, obj),
        _ => String::new(),
    }
}

/// Event fields, read from either wire form: core/v1 (`involvedObject`, `source`,
/// `reportingComponent`) or events.k8s.io/v1 (`regarding`, `deprecatedSource`, `reportingController`),
/// since both groups are views of the same stored events.
fn event_field(label: &str, obj: &Value) -> String {
    let reporting = first_non_empty(
        str_at(obj, &["reportingComponent"]),
        str_at(obj, &["reportingController"]),
    );
    match label {
        "reason" | "type" => str_at(obj, &[label]).to_string(),
        "reportingComponent" => reporting.to_string(),
        "source" => {
            let component = first_non_empty(
                str_at(obj, &["source", "component"]),
                str_at(obj, &["deprecatedSource", "component"]),
            );
            first_non_empty(component, reporting).to_string()
        }
        _ => match label.strip_prefix("involvedObject.") {
            Some(field) => first_non_empty(
                str_at(obj, &["involvedObject", field]),
                str_at(obj, &["regarding", field]),
            )
            .to_string(),
            None => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn label_selectors_match_like_upstream() {
        let l = labels(json!({"app": "web", "tier": "front", "n": "5"}));
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app in (db,web)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("missing notin (db)", true),
            ("missing in (db)", false),
            ("app=web,tier=back", false),
            ("app=web, tier=front", true),
            ("n>4", true),
            ("n<5", false),
            ("app>4", false),
            ("x in (in,notin)", false),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap();
            assert_eq!(s.matches(Some(&l)), *want, "{sel}");
        }
        assert!(LabelSelector::parse("!app").unwrap().matches(None));
        assert!(!LabelSelector::parse("app").unwrap().matches(None));
    }

    #[test]
    fn label_selector_string_form_is_canonical() {
        let s = LabelSelector::parse("z=1, a in (c,b), !m, k").unwrap();
        assert_eq!(s.to_string(), "a in (b,c),k,!m,z=1");
        assert_eq!(
            LabelSelector::parse("x in (a,,b)").unwrap().to_string(),
            "x in (,a,b)"
        );
        assert_eq!(LabelSelector::parse("x=").unwrap().to_string(), "x=");
        assert_eq!(
            LabelSelector::parse("x in ()").unwrap().to_string(),
            "x in ()"
        );
    }

    #[test]
    fn label_selector_parse_errors_are_upstreams() {
        let cases: &[(&str, &str)] = &[
            (
                "app in",
                "unable to parse requirement: found '' expected: '('",
            ),
            (
                "app in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            ("app=web,", "found '', expected: identifier after ','"),
            ("app=a b", "found 'b', expected: ',' or 'end of string'"),
            (
                "app web",
                "unable to parse requirement: found 'web', expected: '=', '!=', '==', 'in', notin'",
            ),
            (
                "=web",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                "app=(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "! =x",
                "unable to parse requirement: found '=', expected: identifier",
            ),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            (
                "!=x",
                "found '!=', expected: !, identifier, or 'end of string'",
            ),
            (
                "a/b/c=d",
                "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of \
                 alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character \
                 (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
                 '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' \
                 (e.g. 'example.com/MyName')",
            ),
            (
                "app=-bad",
                "unable to parse requirement: values[0][app]: Invalid value: \"-bad\": a valid label must be an \
                 empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with \
                 an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for \
                 validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ),
            (
                "Example.com/x=1",
                "unable to parse requirement: <nil>: Invalid value: \"Example.com/x\": prefix part a lowercase RFC \
                 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and \
                 end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
                 '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ),
        ];
        for (sel, want) in cases {
            let err = LabelSelector::parse(sel).unwrap_err();
            assert_eq!(err.to_string(), *want, "{sel}");
            assert!(matches!(err, SelectorError::InvalidLabelSelector { .. }));
        }
    }

    #[test]
    fn api_label_selectors_convert_like_label_selector_as_selector() {
        let s = LabelSelector::from_label_selector(Some(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod", "dev"]}]
        })))
        .unwrap();
        assert_eq!(s.to_string(), "app=web,env notin (dev,prod)");
        assert!(s.matches(Some(&labels(json!({"app": "web", "env": "qa"})))));
        assert!(!s.matches(Some(&labels(json!({"app": "web", "env": "dev"})))));
        let none = LabelSelector::from_label_selector(None).unwrap();
        assert!(!none.matches(Some(&labels(json!({"app": "web"})))));
        assert_eq!(none.to_string(), "");
        let all = LabelSelector::from_label_selector(Some(&json!({}))).unwrap();
        assert!(all.matches(None));
        let err = LabelSelector::from_label_selector(Some(&json!({
            "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]
        })))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        let err = LabelSelector::from_label_selector(Some(&json!({
            "matchExpressions": [{"key": "a", "operator": "In", "values": []}]
        })))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(s.requires_exact_match("app"), Some("web"));
        assert_eq!(s.requires_exact_match("env"), None);
    }

    #[test]
    fn label_selector_strings_parse_back_to_the_same_selector() {
        let inputs = [
            "a=b",
            "a==b",
            "a!=b",
            "!a",
            "a",
            "a in (x,y,z)",
            "a notin (,x)",
            "example.com/app=web,tier in (back,front),!legacy",
            "n>3,m<10",
        ];
        for input in inputs {
            let s = LabelSelector::parse(input).unwrap();
            let again = LabelSelector::parse(&s.to_string()).unwrap();
            assert_eq!(again, s, "{input}");
            assert_eq!(again.to_string(), s.to_string(), "{input}");
        }
        let pinned = LabelSelector::parse("app in (web),tier=front,x!=y").unwrap();
        assert_eq!(pinned.requires_exact_match("app"), Some("web"));
        assert_eq!(pinned.requires_exact_match("tier"), Some("front"));
        assert_eq!(pinned.requires_exact_match("x"), None);
        let m = LabelSelector::from_map(&labels(json!({"b": "2", "a": "1"})));
        assert_eq!(m.to_string(), "a=1,b=2");
        assert!(m.matches(Some(&labels(json!({"a": "1", "b": "2", "c": "3"})))));
        assert!(!m.matches(Some(&labels(json!({"a": "1"})))));
        assert!(LabelSelector::everything().is_empty());
        assert!(!LabelSelector::nothing().is_empty());
    }

    #[test]
    fn field_selectors_parse_like_upstream() {
        let s = FieldSelector::parse("status.phase!=Failed,metadata.name==a\\,b,spec.nodeName=")
            .unwrap();
        assert_eq!(
            s.to_string(),
            "metadata.name=a,b,spec.nodeName=,status.phase!=Failed"
        );
        assert_eq!(s.name_selector(), Some("a,b"));
        assert_eq!(FieldSelector::parse("").unwrap().terms(), &[]);
        let cases: &[(&str, &str)] = &[
            ("abc", "invalid selector: 'abc'; can't understand 'abc'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "a=b\\x",
                "invalid field selector: invalid escape sequence: \\x",
            ),
            (
                "a=b\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
        ];
        for (sel, want) in cases {
            assert_eq!(
                FieldSelector::parse(sel).unwrap_err().to_string(),
                *want,
                "{sel}"
            );
        }
        assert_eq!(
            FieldSelector::parse("metadata.name!=x")
                .unwrap()
                .name_selector(),
            None
        );
    }

    #[test]
    fn unsupported_fields_get_each_kinds_message() {
        let check = |plural: &str, group: &str, version: &str, sel: &str| {
            let r = find(group, version, plural).unwrap();
            FieldSelector::parse(sel)
                .unwrap()
                .check_supported(r)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            check(
                "pods",
                "",
                "v1",
                "spec.nodeName=n,status.phase=Running,spec.host=x"
            ),
            Ok(())
        );
        assert_eq!(
            check("pods", "", "v1", "spec.foo=1"),
            Err("field label not supported: spec.foo".to_string())
        );
        assert_eq!(
            check("nodes", "", "v1", "metadata.namespace=x"),
            Err("field label not supported: metadata.namespace".into())
        );
        assert_eq!(check("namespaces", "", "v1", "status.phase=Active"), Ok(()));
        assert_eq!(check("secrets", "", "v1", "type=Opaque"), Ok(()));
        assert_eq!(
            check("configmaps", "", "v1", "data.x=1"),
            Err("\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"".into())
        );
        assert_eq!(
            check("deployments", "apps", "v1", "status.replicas=1"),
            Err("\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"".into())
        );
        assert_eq!(
            check("jobs", "batch", "v1", "status.active=1"),
            Err("field label \"status.active\" not supported for batchv1.Job".into())
        );
        assert_eq!(
            check(
                "events",
                "",
                "v1",
                "involvedObject.uid=u,reason=x,source=kubelet,reportingComponent=k"
            ),
            Ok(())
        );
        assert_eq!(
            check(
                "events",
                "events.k8s.io",
                "v1",
                "regarding.name=x,reportingController=k"
            ),
            Ok(())
        );
        assert_eq!(
            check("events", "events.k8s.io", "v1", "involvedObject.name=x"),
            Err("field label not supported: involvedObject.name".into())
        );
    }

    #[test]
    fn field_selectors_match_each_kinds_fields() {
        let pods = find("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "node-1", "restartPolicy": "Always", "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}]}
        });
        let cases: &[(&str, bool)] = &[
            ("metadata.name=p", true),
            ("metadata.namespace=default,metadata.name=p", true),
            ("metadata.name=q", false),
            ("spec.nodeName=node-1", true),
            ("spec.host=node-1", true),
            ("spec.nodeName!=node-1", false),
            ("spec.nodeName=", false),
            ("spec.hostNetwork=false", true),
            ("status.phase=Running,spec.restartPolicy=Always", true),
            ("status.podIP=10.0.0.7", true),
            ("status.podIPs=10.0.0.7", false),
            ("status.podIPs=", true),
            ("status.nominatedNodeName=", true),
            ("spec.serviceAccountName=default", true),
        ];
        for (sel, want) in cases {
            assert_eq!(
                FieldSelector::parse(sel).unwrap().matches(pods, &pod),
                *want,
                "{sel}"
            );
        }

        let core = find("", "v1", "events").unwrap();
        let ev = json!({
            "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u1"},
            "reason": "Started", "type": "Normal", "reportingComponent": "kubelet", "source": {}
        });
        let sel = "involvedObject.name=p,involvedObject.namespace=default,involvedObject.uid=u1";
        assert!(FieldSelector::parse(sel).unwrap().matches(core, &ev));
        assert!(
            FieldSelector::parse("source=kubelet,type=Normal")
                .unwrap()
                .matches(core, &ev)
        );
        assert!(
            !FieldSelector::parse("involvedObject.uid=u2")
                .unwrap()
                .matches(core, &ev)
        );
        let new = find("events.k8s.io", "v1", "events").unwrap();
        let ev2 = json!({"metadata": {"name": "e"}, "regarding": {"name": "p"}, "reportingController": "kubelet"});
        assert!(
            FieldSelector::parse("regarding.name=p,reportingController=kubelet")
                .unwrap()
                .matches(new, &ev2)
        );
        assert!(
            FieldSelector::parse("regarding.name=p")
                .unwrap()
                .matches(new, &ev)
        );

        let nodes = find("", "v1", "nodes").unwrap();
        assert!(
            FieldSelector::parse("spec.unschedulable=false")
                .unwrap()
                .matches(nodes, &json!({"spec": {}}))
        );
        assert!(
            FieldSelector::parse("spec.unschedulable=true")
                .unwrap()
                .matches(nodes, &json!({"spec": {"unschedulable": true}}))
        );
        let jobs = find("batch", "v1", "jobs").unwrap();
        assert!(
            FieldSelector::parse("status.successful=1")
                .unwrap()
                .matches(jobs, &json!({"status": {"succeeded": 1}}))
        );
        assert!(
            FieldSelector::parse("status.successful=0")
                .unwrap()
                .matches(jobs, &json!({}))
        );
    }
}
