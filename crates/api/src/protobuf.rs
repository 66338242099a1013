//! Decoding of the protobuf bodies kubectl's generator commands send.
//!
//! `kubectl create configmap|secret|namespace|serviceaccount|service|deployment|job|cronjob` POST
//! `Content-Type: application/vnd.kubernetes.protobuf`: the four bytes `k8s\0`, then a
//! `runtime.Unknown` message {typeMeta{apiVersion=1, kind=2}=1, raw=2, contentEncoding=3,
//! contentType=4} whose `raw` is the object's own message (the generated `generated.proto` of
//! k8s.io/api). [`decode`] turns such a body into the JSON object the same command would have sent
//! as JSON, so the rest of the server only ever sees JSON.
//!
//! The Go encoder writes every non-pointer string, even when empty (`namespace: ""`,
//! `generateName: ""`, `type: ""`), and every non-pointer number and bool; JSON would have
//! omitted those, so empty strings, zero numbers and false bools of non-pointer fields are
//! dropped here. Pointer fields (`replicas`, `immutable`) are kept whenever present.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

/// The prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// A body that is not a protobuf object this server can decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("body does not start with the k8s protobuf prefix")]
    MissingMagic,
    /// A varint or length-delimited field runs past the end of its message.
    #[error("truncated {message} message at byte {offset}")]
    Truncated {
        /// The message being read.
        message: &'static str,
        /// Where in that message the read started.
        offset: usize,
    },
    /// A wire type protobuf does not define (or a deprecated group).
    #[error("unsupported wire type {wire_type} in {message} message")]
    WireType {
        /// The message being read.
        message: &'static str,
        /// The wire type found.
        wire_type: u64,
    },
    /// A field with the wrong wire type for what it should hold.
    #[error("field {field} of {message} has the wrong wire type")]
    Mismatch {
        /// The message being read.
        message: &'static str,
        /// The field number.
        field: u64,
    },
    /// A string field that is not UTF-8.
    #[error("field {field} of {message} is not valid UTF-8")]
    Utf8 {
        /// The message being read.
        message: &'static str,
        /// The field number.
        field: u64,
    },
    /// The `runtime.Unknown` declares a content encoding (compression) this server does not apply.
    #[error("content encoding {0:?} is not supported")]
    ContentEncoding(String),
    /// A kind this decoder does not know; the server answers 415.
    #[error("{api_version}, Kind={kind} cannot be decoded from protobuf")]
    UnsupportedKind {
        /// The `typeMeta.apiVersion` of the body.
        api_version: String,
        /// The `typeMeta.kind` of the body.
        kind: String,
    },
}

/// Decodes a `k8s\0`-prefixed `runtime.Unknown` body into the JSON object it carries.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ProtobufError::MissingMagic)?;
    let unknown = Message::parse("Unknown", rest)?;
    let (mut api_version, mut kind) = (String::new(), String::new());
    if let Some(type_meta) = unknown.message(1)? {
        api_version = type_meta.string(1)?;
        kind = type_meta.string(2)?;
    }
    let encoding = unknown.string(3)?;
    if !encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(encoding));
    }
    let raw = unknown.bytes(2)?.unwrap_or_default();
    let decoder: fn(&Message<'_>, &mut Map<String, Value>) -> Result<(), ProtobufError> =
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "ConfigMap") => config_map,
            ("v1", "Secret") => secret,
            ("v1", "Namespace") => namespace,
            ("v1", "ServiceAccount") => service_account,
            ("v1", "Service") => service,
            ("apps/v1", "Deployment") => deployment,
            ("batch/v1", "Job") => job,
            ("batch/v1", "CronJob") => cron_job,
            ("authentication.k8s.io/v1", "TokenRequest") => token_request,
            _ => return Err(ProtobufError::UnsupportedKind { api_version, kind }),
        };
    let message = Message::parse(kind_name(&kind), raw)?;
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    if let Some(meta) = message.message(1)? {
        obj.insert("metadata".into(), Value::Object(object_meta(&meta)?));
    }
    decoder(&message, &mut obj)?;
    Ok(Value::Object(obj))
}

/// A `'static` name for error messages.
fn kind_name(kind: &str) -> &'static str {
    match kind {
        "ConfigMap" => "ConfigMap",
        "Secret" => "Secret",
        "Namespace" => "Namespace",
        "ServiceAccount" => "ServiceAccount",
        "Service" => "Service",
        "Deployment" => "Deployment",
        "Job" => "Job",
        "CronJob" => "CronJob",
        "TokenRequest" => "TokenRequest",
        _ => "object",
    }
}

/// One field's payload.
#[derive(Debug, Clone, Copy)]
enum Payload<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one message, in wire order (repeated fields appear several times).
struct Message<'a> {
    name: &'static str,
    fields: Vec<(u64, Payload<'a>)>,
}

fn read_varint(b: &[u8], pos: &mut usize, message: &'static str) -> Result<u64, ProtobufError> {
    let start = *pos;
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or(ProtobufError::Truncated {
            message,
            offset: start,
        })?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ProtobufError::Truncated {
        message,
        offset: start,
    })
}

impl<'a> Message<'a> {
    fn parse(name: &'static str, b: &'a [u8]) -> Result<Self, ProtobufError> {
        let mut fields = Vec::new();
        let mut pos = 0;
        while pos < b.len() {
            let key = read_varint(b, &mut pos, name)?;
            let (field, wire_type) = (key >> 3, key & 7);
            let start = pos;
            let truncated = ProtobufError::Truncated {
                message: name,
                offset: start,
            };
            let payload = match wire_type {
                0 => Payload::Varint(read_varint(b, &mut pos, name)?),
                2 => {
                    let len = usize::try_from(read_varint(b, &mut pos, name)?)
                        .map_err(|_| truncated.clone())?;
                    let end = pos
                        .checked_add(len)
                        .filter(|e| *e <= b.len())
                        .ok_or(truncated)?;
                    let bytes = &b[pos..end];
                    pos = end;
                    Payload::Bytes(bytes)
                }
                1 | 5 => {
                    let width = if wire_type == 1 { 8 } else { 4 };
                    pos = pos
                        .checked_add(width)
                        .filter(|e| *e <= b.len())
                        .ok_or(truncated)?;
                    Payload::Fixed
                }
                other => {
                    return Err(ProtobufError::WireType {
                        message: name,
                        wire_type: other,
                    });
                }
            };
            fields.push((field, payload));
        }
        Ok(Message { name, fields })
    }

    /// Every length-delimited payload of `field`.
    fn all_bytes(&self, field: u64) -> Result<Vec<&'a [u8]>, ProtobufError> {
        self.fields
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, p)| match p {
                Payload::Bytes(b) => Ok(*b),
                _ => Err(ProtobufError::Mismatch {
                    message: self.name,
                    field,
                }),
            })
            .collect()
    }

    /// The last payload of a length-delimited `field` (protobuf's "last one wins").
    fn bytes(&self, field: u64) -> Result<Option<&'a [u8]>, ProtobufError> {
        Ok(self.all_bytes(field)?.pop())
    }

    fn utf8(&self, field: u64, b: &[u8]) -> Result<String, ProtobufError> {
        String::from_utf8(b.to_vec()).map_err(|_| ProtobufError::Utf8 {
            message: self.name,
            field,
        })
    }

    /// A string field; "" when absent.
    fn string(&self, field: u64) -> Result<String, ProtobufError> {
        match self.bytes(field)? {
            Some(b) => self.utf8(field, b),
            None => Ok(String::new()),
        }
    }

    /// Every value of a repeated string field.
    fn strings(&self, field: u64) -> Result<Vec<String>, ProtobufError> {
        self.all_bytes(field)?
            .into_iter()
            .map(|b| self.utf8(field, b))
            .collect()
    }

    /// A varint field, when present.
    fn varint(&self, field: u64) -> Result<Option<u64>, ProtobufError> {
        let mut out = None;
        for (f, p) in &self.fields {
            if *f == field {
                match p {
                    Payload::Varint(v) => out = Some(*v),
                    _ => {
                        return Err(ProtobufError::Mismatch {
                            message: self.name,
                            field,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// An embedded message, when present.
    fn message(&self, field: u64) -> Result<Option<Message<'a>>, ProtobufError> {
        self.bytes(field)?
            .map(|b| Message::parse(self.name, b))
            .transpose()
    }

    /// Every value of a repeated message field.
    fn messages(&self, field: u64) -> Result<Vec<Message<'a>>, ProtobufError> {
        self.all_bytes(field)?
            .into_iter()
            .map(|b| Message::parse(self.name, b))
            .collect()
    }

    /// A `map<string, string>` field (entries {key=1, value=2}).
    fn string_map(&self, field: u64) -> Result<Map<String, Value>, ProtobufError> {
        let mut out = Map::new();
        for entry in self.messages(field)? {
            out.insert(entry.string(1)?, Value::String(entry.string(2)?));
        }
        Ok(out)
    }

    /// A `map<string, bytes>` field, values base64-encoded as JSON carries them.
    fn bytes_map(&self, field: u64) -> Result<Map<String, Value>, ProtobufError> {
        let mut out = Map::new();
        for entry in self.messages(field)? {
            let value = entry.bytes(2)?.unwrap_or_default();
            out.insert(entry.string(1)?, Value::String(STANDARD.encode(value)));
        }
        Ok(out)
    }
}

/// Inserts a string unless it is empty (the Go encoder writes unset strings as "").
fn put_string(
    obj: &mut Map<String, Value>,
    key: &str,
    m: &Message<'_>,
    field: u64,
) -> Result<(), ProtobufError> {
    let s = m.string(field)?;
    if !s.is_empty() {
        obj.insert(key.into(), Value::String(s));
    }
    Ok(())
}

/// Inserts a repeated string field unless it has no values.
fn put_strings(
    obj: &mut Map<String, Value>,
    key: &str,
    m: &Message<'_>,
    field: u64,
) -> Result<(), ProtobufError> {
    let s = m.strings(field)?;
    if !s.is_empty() {
        obj.insert(key.into(), json!(s));
    }
    Ok(())
}

/// Inserts a string map unless it is empty.
fn put_map(
    obj: &mut Map<String, Value>,
    key: &str,
    m: &Message<'_>,
    field: u64,
) -> Result<(), ProtobufError> {
    let map = m.string_map(field)?;
    if !map.is_empty() {
        obj.insert(key.into(), Value::Object(map));
    }
    Ok(())
}

/// Inserts a pointer integer whenever present (int32 values travel as sign-extended varints).
fn put_int(
    obj: &mut Map<String, Value>,
    key: &str,
    m: &Message<'_>,
    field: u64,
) -> Result<(), ProtobufError> {
    if let Some(v) = m.varint(field)? {
        obj.insert(key.into(), json!(v as i64));
    }
    Ok(())
}

/// Inserts a non-pointer integer unless it is zero.
fn put_nonzero(
    obj: &mut Map<String, Value>,
    key: &str,
    m: &Message<'_>,
    field: u64,
) -> Result<(), ProtobufError> {
    if let Some(v) = m.varint(field)?.filter(|v| *v != 0) {
        obj.insert(key.into(), json!(v as i64));
    }
    Ok(())
}

/// Inserts a pointer bool whenever present.
fn put_bool(
    obj: &mut Map<String, Value>,
    key: &str,
    m: &Message<'_>,
    field: u64,
) -> Result<(), ProtobufError> {
    if let Some(v) = m.varint(field)? {
        obj.insert(key.into(), json!(v != 0));
    }
    Ok(())
}

/// Inserts a non-pointer bool only when true.
fn put_true(
    obj: &mut Map<String, Value>,
    key: &str,
    m: &Message<'_>,
    field: u64,
) -> Result<(), ProtobufError> {
    if m.varint(field)?.is_some_and(|v| v != 0) {
        obj.insert(key.into(), json!(true));
    }
    Ok(())
}

/// `metav1.ObjectMeta`: the fields a create request carries.
fn object_meta(m: &Message<'_>) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    for (key, field) in [
        ("name", 1),
        ("generateName", 2),
        ("namespace", 3),
        ("uid", 5),
        ("resourceVersion", 6),
    ] {
        put_string(&mut out, key, m, field)?;
    }
    put_map(&mut out, "labels", m, 11)?;
    put_map(&mut out, "annotations", m, 12)?;
    put_strings(&mut out, "finalizers", m, 14)?;
    Ok(out)
}

fn config_map(m: &Message<'_>, obj: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    put_map(obj, "data", m, 2)?;
    let binary = m.bytes_map(3)?;
    if !binary.is_empty() {
        obj.insert("binaryData".into(), Value::Object(binary));
    }
    put_bool(obj, "immutable", m, 4)
}

fn secret(m: &Message<'_>, obj: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    let data = m.bytes_map(2)?;
    if !data.is_empty() {
        obj.insert("data".into(), Value::Object(data));
    }
    // "" means unset; defaulting makes it Opaque.
    put_string(obj, "type", m, 3)?;
    put_map(obj, "stringData", m, 4)?;
    put_bool(obj, "immutable", m, 5)
}

/// `authentication/v1.TokenRequest` (`kubectl create token`).
fn token_request(m: &Message<'_>, obj: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    let Some(spec) = m.message(2)? else {
        return Ok(());
    };
    let mut out = Map::new();
    put_strings(&mut out, "audiences", &spec, 1)?;
    put_int(&mut out, "expirationSeconds", &spec, 4)?;
    if let Some(bound) = spec.message(3)? {
        let mut r = Map::new();
        for (key, field) in [("kind", 1), ("apiVersion", 2), ("name", 3), ("uid", 4)] {
            put_string(&mut r, key, &bound, field)?;
        }
        out.insert("boundObjectRef".into(), Value::Object(r));
    }
    obj.insert("spec".into(), Value::Object(out));
    Ok(())
}

fn namespace(m: &Message<'_>, obj: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    if let Some(spec) = m.message(2)? {
        let mut out = Map::new();
        put_strings(&mut out, "finalizers", &spec, 1)?;
        if !out.is_empty() {
            obj.insert("spec".into(), Value::Object(out));
        }
    }
    Ok(())
}

fn service_account(m: &Message<'_>, obj: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    let mut secrets = Vec::new();
    for r in m.messages(2)? {
        let mut out = Map::new();
        let names = [
            ("kind", 1),
            ("namespace", 2),
            ("name", 3),
            ("uid", 4),
            ("apiVersion", 5),
            ("resourceVersion", 6),
            ("fieldPath", 7),
        ];
        for (key, field) in names {
            put_string(&mut out, key, &r, field)?;
        }
        secrets.push(Value::Object(out));
    }
    if !secrets.is_empty() {
        obj.insert("secrets".into(), Value::Array(secrets));
    }
    let mut pull = Vec::new();
    for r in m.messages(3)? {
        let mut out = Map::new();
        put_string(&mut out, "name", &r, 1)?;
        pull.push(Value::Object(out));
    }
    if !pull.is_empty() {
        obj.insert("imagePullSecrets".into(), Value::Array(pull));
    }
    put_bool(obj, "automountServiceAccountToken", m, 4)
}

/// `intstr.IntOrString` {type=1 (0 int, 1 string), intVal=2, strVal=3}; `None` for the zero value.
fn int_or_string(m: &Message<'_>) -> Result<Option<Value>, ProtobufError> {
    if m.varint(1)?.unwrap_or(0) == 1 {
        return Ok(Some(Value::String(m.string(3)?)));
    }
    Ok(m.varint(2)?.filter(|v| *v != 0).map(|v| json!(v as i64)))
}

fn service(m: &Message<'_>, obj: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    let Some(spec) = m.message(2)? else {
        return Ok(());
    };
    let mut out = Map::new();
    let mut ports = Vec::new();
    for p in spec.messages(1)? {
        let mut port = Map::new();
        put_string(&mut port, "name", &p, 1)?;
        put_string(&mut port, "protocol", &p, 2)?;
        put_nonzero(&mut port, "port", &p, 3)?;
        if let Some(target) = p
            .message(4)?
            .map(|t| int_or_string(&t))
            .transpose()?
            .flatten()
        {
            port.insert("targetPort".into(), target);
        }
        put_nonzero(&mut port, "nodePort", &p, 5)?;
        put_string(&mut port, "appProtocol", &p, 6)?;
        ports.push(Value::Object(port));
    }
    if !ports.is_empty() {
        out.insert("ports".into(), Value::Array(ports));
    }
    put_map(&mut out, "selector", &spec, 2)?;
    put_string(&mut out, "clusterIP", &spec, 3)?;
    put_string(&mut out, "type", &spec, 4)?;
    put_strings(&mut out, "externalIPs", &spec, 5)?;
    put_string(&mut out, "sessionAffinity", &spec, 7)?;
    put_string(&mut out, "loadBalancerIP", &spec, 8)?;
    put_string(&mut out, "externalName", &spec, 10)?;
    put_string(&mut out, "externalTrafficPolicy", &spec, 11)?;
    put_string(&mut out, "ipFamilyPolicy", &spec, 17)?;
    put_strings(&mut out, "clusterIPs", &spec, 18)?;
    put_strings(&mut out, "ipFamilies", &spec, 19)?;
    obj.insert("spec".into(), Value::Object(out));
    Ok(())
}

/// `metav1.LabelSelector` {matchLabels=1, matchExpressions=2 {key=1, operator=2, values=3}}.
fn label_selector(m: &Message<'_>) -> Result<Value, ProtobufError> {
    let mut out = Map::new();
    put_map(&mut out, "matchLabels", m, 1)?;
    let mut exprs = Vec::new();
    for e in m.messages(2)? {
        let mut expr = Map::new();
        put_string(&mut expr, "key", &e, 1)?;
        put_string(&mut expr, "operator", &e, 2)?;
        put_strings(&mut expr, "values", &e, 3)?;
        exprs.push(Value::Object(expr));
    }
    if !exprs.is_empty() {
        out.insert("matchExpressions".into(), Value::Array(exprs));
    }
    Ok(Value::Object(out))
}

/// `core.v1.Container`: what `kubectl create deployment` fills in, and the usual simple fields.
fn container(m: &Message<'_>) -> Result<Value, ProtobufError> {
    let mut out = Map::new();
    put_string(&mut out, "name", m, 1)?;
    put_string(&mut out, "image", m, 2)?;
    put_strings(&mut out, "command", m, 3)?;
    put_strings(&mut out, "args", m, 4)?;
    put_string(&mut out, "workingDir", m, 5)?;
    let mut ports = Vec::new();
    for p in m.messages(6)? {
        let mut port = Map::new();
        put_string(&mut port, "name", &p, 1)?;
        put_nonzero(&mut port, "hostPort", &p, 2)?;
        put_nonzero(&mut port, "containerPort", &p, 3)?;
        put_string(&mut port, "protocol", &p, 4)?;
        put_string(&mut port, "hostIP", &p, 5)?;
        ports.push(Value::Object(port));
    }
    if !ports.is_empty() {
        out.insert("ports".into(), Value::Array(ports));
    }
    let mut env = Vec::new();
    for e in m.messages(7)? {
        let mut var = Map::new();
        put_string(&mut var, "name", &e, 1)?;
        put_string(&mut var, "value", &e, 2)?;
        env.push(Value::Object(var));
    }
    if !env.is_empty() {
        out.insert("env".into(), Value::Array(env));
    }
    if let Some(res) = m.message(8)? {
        // ResourceRequirements {limits=1, requests=2}: maps of Quantity {string=1}.
        let mut resources = Map::new();
        for (key, field) in [("limits", 1), ("requests", 2)] {
            let mut list = Map::new();
            for entry in res.messages(field)? {
                let quantity = entry
                    .message(2)?
                    .map(|q| q.string(1))
                    .transpose()?
                    .unwrap_or_default();
                list.insert(entry.string(1)?, Value::String(quantity));
            }
            if !list.is_empty() {
                resources.insert(key.into(), Value::Object(list));
            }
        }
        out.insert("resources".into(), Value::Object(resources));
    }
    put_string(&mut out, "terminationMessagePath", m, 13)?;
    put_string(&mut out, "imagePullPolicy", m, 14)?;
    put_true(&mut out, "stdin", m, 16)?;
    put_true(&mut out, "stdinOnce", m, 17)?;
    put_true(&mut out, "tty", m, 18)?;
    put_string(&mut out, "terminationMessagePolicy", m, 20)?;
    Ok(Value::Object(out))
}

/// `core.v1.PodSpec`: containers and the simple scalar fields.
fn pod_spec(m: &Message<'_>) -> Result<Value, ProtobufError> {
    let mut out = Map::new();
    let containers: Vec<Value> = m
        .messages(2)?
        .iter()
        .map(container)
        .collect::<Result<_, _>>()?;
    out.insert("containers".into(), Value::Array(containers));
    let init: Vec<Value> = m
        .messages(20)?
        .iter()
        .map(container)
        .collect::<Result<_, _>>()?;
    if !init.is_empty() {
        out.insert("initContainers".into(), Value::Array(init));
    }
    put_string(&mut out, "restartPolicy", m, 3)?;
    put_int(&mut out, "terminationGracePeriodSeconds", m, 4)?;
    put_int(&mut out, "activeDeadlineSeconds", m, 5)?;
    put_string(&mut out, "dnsPolicy", m, 6)?;
    put_map(&mut out, "nodeSelector", m, 7)?;
    put_string(&mut out, "serviceAccountName", m, 8)?;
    put_string(&mut out, "nodeName", m, 10)?;
    put_true(&mut out, "hostNetwork", m, 11)?;
    put_string(&mut out, "hostname", m, 16)?;
    put_string(&mut out, "subdomain", m, 17)?;
    put_string(&mut out, "schedulerName", m, 19)?;
    put_string(&mut out, "priorityClassName", m, 24)?;
    Ok(Value::Object(out))
}

fn deployment(m: &Message<'_>, obj: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    let Some(spec) = m.message(2)? else {
        return Ok(());
    };
    let mut out = Map::new();
    put_int(&mut out, "replicas", &spec, 1)?;
    if let Some(sel) = spec.message(2)? {
        out.insert("selector".into(), label_selector(&sel)?);
    }
    if let Some(template) = spec.message(3)? {
        out.insert("template".into(), pod_template(&template)?);
    }
    if let Some(strategy) = spec.message(4)? {
        let mut s = Map::new();
        put_string(&mut s, "type", &strategy, 1)?;
        out.insert("strategy".into(), Value::Object(s));
    }
    put_nonzero(&mut out, "minReadySeconds", &spec, 5)?;
    put_int(&mut out, "revisionHistoryLimit", &spec, 6)?;
    put_true(&mut out, "paused", &spec, 7)?;
    put_int(&mut out, "progressDeadlineSeconds", &spec, 9)?;
    obj.insert("spec".into(), Value::Object(out));
    Ok(())
}

/// `core.v1.PodTemplateSpec` {metadata=1, spec=2}.
fn pod_template(m: &Message<'_>) -> Result<Value, ProtobufError> {
    let mut t = Map::new();
    if let Some(meta) = m.message(1)? {
        t.insert("metadata".into(), Value::Object(object_meta(&meta)?));
    }
    if let Some(pod) = m.message(2)? {
        t.insert("spec".into(), pod_spec(&pod)?);
    }
    Ok(Value::Object(t))
}

/// `batch.v1.JobSpec`: the scalar knobs, selector and template.
fn job_spec(spec: &Message<'_>) -> Result<Value, ProtobufError> {
    let mut out = Map::new();
    put_int(&mut out, "parallelism", spec, 1)?;
    put_int(&mut out, "completions", spec, 2)?;
    put_int(&mut out, "activeDeadlineSeconds", spec, 3)?;
    if let Some(sel) = spec.message(4)? {
        out.insert("selector".into(), label_selector(&sel)?);
    }
    put_bool(&mut out, "manualSelector", spec, 5)?;
    if let Some(template) = spec.message(6)? {
        out.insert("template".into(), pod_template(&template)?);
    }
    put_int(&mut out, "backoffLimit", spec, 7)?;
    put_int(&mut out, "ttlSecondsAfterFinished", spec, 8)?;
    put_string(&mut out, "completionMode", spec, 9)?;
    put_bool(&mut out, "suspend", spec, 10)?;
    Ok(Value::Object(out))
}

fn job(m: &Message<'_>, obj: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    if let Some(spec) = m.message(2)? {
        obj.insert("spec".into(), job_spec(&spec)?);
    }
    Ok(())
}

fn cron_job(m: &Message<'_>, obj: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    let Some(spec) = m.message(2)? else {
        return Ok(());
    };
    let mut out = Map::new();
    put_string(&mut out, "schedule", &spec, 1)?;
    put_int(&mut out, "startingDeadlineSeconds", &spec, 2)?;
    put_string(&mut out, "concurrencyPolicy", &spec, 3)?;
    put_bool(&mut out, "suspend", &spec, 4)?;
    if let Some(template) = spec.message(5)? {
        let mut t = Map::new();
        if let Some(meta) = template.message(1)? {
            t.insert("metadata".into(), Value::Object(object_meta(&meta)?));
        }
        if let Some(job) = template.message(2)? {
            t.insert("spec".into(), job_spec(&job)?);
        }
        out.insert("jobTemplate".into(), Value::Object(t));
    }
    put_int(&mut out, "successfulJobsHistoryLimit", &spec, 6)?;
    put_int(&mut out, "failedJobsHistoryLimit", &spec, 7)?;
    put_string(&mut out, "timeZone", &spec, 8)?;
    obj.insert("spec".into(), Value::Object(out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Bodies captured from kubectl 1.32.4 (`--server=http://127.0.0.1:PORT`).
    /// `kubectl create configmap cfg --from-literal=a=b`
    const CONFIGMAP: &str = "6b3873000a0f0a0276311209436f6e6669674d6170121d0a130a0363666712001a0022002a00320038004200\
                             12060a01611201621a002200";
    /// `kubectl create configmap bincm --from-file=blob=<ff 00 01> --from-literal=t=x`
    const CONFIGMAP_BINARY: &str = "6b3873000a0f0a0276311209436f6e6669674d6170122c0a150a0562696e636d12001a0022002a00\
                                    32003800420012060a01741201781a0b0a04626c6f621203ff00011a002200";
    /// `kubectl create secret generic sec --from-literal=k=v -n dev`
    const SECRET: &str = "6b3873000a0c0a027631120653656372657412220a160a0373656312001a0364657622002a0032003800420012\
                          060a016b1201761a001a002200";
    /// `kubectl create secret generic auth --type=kubernetes.io/basic-auth --from-literal=username=u
    /// --from-literal=password=p`
    const SECRET_TYPED: &str = "6b3873000a0c0a0276311206536563726574124e0a140a046175746812001a0022002a003200380042\
                                00120d0a0870617373776f7264120170120d0a08757365726e616d651201751a186b756265726e6574\
                                65732e696f2f62617369632d617574681a002200";
    /// `kubectl create namespace ns1`
    const NAMESPACE: &str = "6b3873000a0f0a02763112094e616d657370616365121b0a130a036e733112001a0022002a003200380042\
                             0012001a020a001a002200";
    /// `kubectl create serviceaccount sa1`
    const SERVICE_ACCOUNT: &str = "6b3873000a140a027631120e536572766963654163636f756e7412150a130a0373613112001a0022\
                                   002a003200380042001a002200";
    /// `kubectl create deployment web --image=nginx:1.27 --replicas=2 --port=80`
    const DEPLOYMENT: &str = "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412bd010a1f0a0377656212001a002200\
                              2a003200380042005a0a0a036170701203776562128b010802120c0a0a0a0361707012037765621a710a1c\
                              0a0012001a0022002a003200380042005a0a0a036170701203776562125112330a056e67696e78120a6e67\
                              696e783a312e32372a00320a0a001000185022002a0042006a007200800100880100900100a201001a0032\
                              0042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c080010001800200028\
                              0038001a002200";
    /// `kubectl create service clusterip svc1 --tcp=80:8080`
    const SERVICE: &str = "6b3873000a0d0a027631120753657276696365126c0a210a047376633112001a0022002a003200380042005a\
                           0b0a0361707012047376633112430a1b0a0738302d38303830120354435018502207080010903f1a00280012\
                           0b0a036170701204737663311a002209436c757374657249503a00420052005a00600068001a020a001a002200";

    /// `kubectl create job pi --image=perl:5.34 -- perl -e 'print 1'`
    const JOB: &str = "6b3873000a0f0a0862617463682f763112034a6f62128f010a120a02706912001a0022002a00320038004200126f326d\
                       0a100a0012001a0022002a00320038004200125912360a02706912097065726c3a352e33341a047065726c1a022d651a\
                       077072696e7420312a0042006a007200800100880100900100a201001a054e65766572320042004a0052005800600068\
                       008201008a01009a0100c201001a082000280030003a001a002200";
    /// `kubectl create cronjob hello --image=busybox --schedule='*/1 * * * *' -- date`
    const CRON_JOB: &str = "6b3873000a130a0862617463682f7631120743726f6e4a6f6212ae010a150a0568656c6c6f12001a0022002a00320038\
                            0042001292010a0b2a2f31202a202a202a202a1a002a80010a150a0568656c6c6f12001a0022002a0032003800420012\
                            6732650a100a0012001a0022002a003200380042001251122a0a0568656c6c6f120762757379626f781a04646174652a\
                            0042006a007200800100880100900100a201001a094f6e4661696c757265320042004a0052005800600068008201008a\
                            01009a0100c201001a001a002200";

    #[test]
    fn decodes_kubectl_create_job_and_cronjob() {
        let template = |name: &str, image: &str, command: Value, restart: &str| {
            json!({"metadata": {}, "spec": {
                "containers": [{"name": name, "image": image, "command": command, "resources": {}}],
                "restartPolicy": restart
            }})
        };
        assert_eq!(
            decode(&hex(JOB)).unwrap(),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
                   "spec": {"template": template("pi", "perl:5.34", json!(["perl", "-e", "print 1"]), "Never")}})
        );
        assert_eq!(
            decode(&hex(CRON_JOB)).unwrap(),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {
                "metadata": {"name": "hello"},
                "spec": {"template": template("hello", "busybox", json!(["date"]), "OnFailure")}
            }}})
        );
    }

    #[test]
    fn decodes_kubectl_create_configmap() {
        assert_eq!(
            decode(&hex(CONFIGMAP)).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "b"}})
        );
        assert_eq!(
            decode(&hex(CONFIGMAP_BINARY)).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bincm"},
                   "data": {"t": "x"}, "binaryData": {"blob": "/wAB"}})
        );
    }

    #[test]
    fn decodes_kubectl_create_secret() {
        assert_eq!(
            decode(&hex(SECRET)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec", "namespace": "dev"},
                   "data": {"k": "dg=="}})
        );
        assert_eq!(
            decode(&hex(SECRET_TYPED)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "auth"},
                   "data": {"password": "cA==", "username": "dQ=="}, "type": "kubernetes.io/basic-auth"})
        );
    }

    #[test]
    fn decodes_kubectl_create_namespace_and_serviceaccount() {
        assert_eq!(
            decode(&hex(NAMESPACE)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}})
        );
        assert_eq!(
            decode(&hex(SERVICE_ACCOUNT)).unwrap(),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa1"}})
        );
    }

    #[test]
    fn decodes_kubectl_create_deployment() {
        assert_eq!(
            decode(&hex(DEPLOYMENT)).unwrap(),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "nginx", "image": "nginx:1.27",
                            "ports": [{"containerPort": 80}],
                            "resources": {}
                        }]}
                    },
                    "strategy": {}
                }
            })
        );
    }

    #[test]
    fn decodes_kubectl_create_service() {
        assert_eq!(
            decode(&hex(SERVICE)).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "svc1", "labels": {"app": "svc1"}},
                "spec": {
                    "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                    "selector": {"app": "svc1"},
                    "type": "ClusterIP"
                }
            })
        );
    }

    /// A tiny encoder for building inputs.
    fn varint(mut n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn field(no: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = varint(no << 3 | 2);
        out.extend(varint(payload.len() as u64));
        out.extend_from_slice(payload);
        out
    }

    fn field_varint(no: u64, v: u64) -> Vec<u8> {
        let mut out = varint(no << 3);
        out.extend(varint(v));
        out
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        [field(1, k.as_bytes()), field(2, v)].concat()
    }

    fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            field(1, &type_meta),
            field(2, raw),
            field(3, b""),
            field(4, b""),
        ]
        .concat()
    }

    #[test]
    fn decodes_every_metadata_and_configmap_field() {
        let meta = [
            field(1, b""),
            field(2, b"cfg-"),
            field(3, b"ns"),
            field(11, &entry("app", b"web")),
            field(11, &entry("tier", b"")),
            field(12, &entry("note", b"x")),
            field(14, b"example.com/f"),
            field_varint(7, 0),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            field(2, &entry("k", b"v")),
            field(3, &entry("bin", &[0, 1, 2])),
            field_varint(4, 1),
        ]
        .concat();
        assert_eq!(
            decode(&body("v1", "ConfigMap", &raw)).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"generateName": "cfg-", "namespace": "ns", "labels": {"app": "web", "tier": ""},
                             "annotations": {"note": "x"}, "finalizers": ["example.com/f"]},
                "data": {"k": "v"}, "binaryData": {"bin": "AAEC"}, "immutable": true
            })
        );
    }

    #[test]
    fn decodes_secret_string_data_and_namespace_finalizers() {
        let raw = [
            field(1, &field(1, b"s")),
            field(4, &entry("pw", b"hunter2")),
            field_varint(5, 0),
        ]
        .concat();
        assert_eq!(
            decode(&body("v1", "Secret", &raw)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                   "stringData": {"pw": "hunter2"}, "immutable": false})
        );
        let raw = [
            field(1, &field(1, b"n")),
            field(2, &field(1, b"kubernetes")),
            field(3, &field(1, b"")),
        ]
        .concat();
        assert_eq!(
            decode(&body("v1", "Namespace", &raw)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"},
                   "spec": {"finalizers": ["kubernetes"]}})
        );
    }

    #[test]
    fn decodes_service_account_references() {
        let secret_ref = [field(1, b"Secret"), field(3, b"tok")].concat();
        let raw = [
            field(1, &field(1, b"sa")),
            field(2, &secret_ref),
            field(3, &field(1, b"regcred")),
            field_varint(4, 0),
        ]
        .concat();
        assert_eq!(
            decode(&body("v1", "ServiceAccount", &raw)).unwrap(),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"},
                   "secrets": [{"kind": "Secret", "name": "tok"}], "imagePullSecrets": [{"name": "regcred"}],
                   "automountServiceAccountToken": false})
        );
    }

    #[test]
    fn decodes_named_target_ports_and_container_details() {
        let target = [field_varint(1, 1), field(3, b"http")].concat();
        let port = [
            field(2, b"TCP"),
            field_varint(3, 80),
            field(4, &target),
            field_varint(5, 30080),
        ]
        .concat();
        let spec = [field(1, &port), field(4, b"NodePort")].concat();
        let raw = [field(1, &field(1, b"s")), field(2, &spec)].concat();
        assert_eq!(
            decode(&body("v1", "Service", &raw)).unwrap()["spec"],
            json!({"ports": [{"protocol": "TCP", "port": 80, "targetPort": "http", "nodePort": 30080}], "type": "NodePort"})
        );
        let quantity = field(1, b"100m");
        let resources = field(1, &[field(1, b"cpu"), field(2, &quantity)].concat());
        let env = [field(1, b"MODE"), field(2, b"prod")].concat();
        let c = [
            field(1, b"app"),
            field(2, b"busybox"),
            field(3, b"sh"),
            field(3, b"-c"),
            field(4, b"sleep 1"),
            field(7, &env),
            field(8, &resources),
            field_varint(18, 1),
        ]
        .concat();
        let pod = [field(2, &c), field(3, b"Never"), field_varint(4, 5)].concat();
        let template = field(2, &pod);
        let spec = [field(3, &template), field_varint(6, 3)].concat();
        let raw = [field(1, &field(1, b"d")), field(2, &spec)].concat();
        assert_eq!(
            decode(&body("apps/v1", "Deployment", &raw)).unwrap()["spec"],
            json!({
                "template": {"spec": {
                    "containers": [{"name": "app", "image": "busybox", "command": ["sh", "-c"], "args": ["sleep 1"],
                                    "env": [{"name": "MODE", "value": "prod"}],
                                    "resources": {"limits": {"cpu": "100m"}}, "tty": true}],
                    "restartPolicy": "Never", "terminationGracePeriodSeconds": 5
                }},
                "revisionHistoryLimit": 3
            })
        );
    }

    #[test]
    fn rejects_what_it_cannot_decode() {
        assert_eq!(
            decode(b"{\"kind\":\"Pod\"}"),
            Err(ProtobufError::MissingMagic)
        );
        assert_eq!(
            decode(&body("v1", "Pod", &field(1, &field(1, b"p")))),
            Err(ProtobufError::UnsupportedKind {
                api_version: "v1".into(),
                kind: "Pod".into()
            })
        );
        assert_eq!(
            decode(&body("v1", "Pod", b"")).unwrap_err().to_string(),
            "v1, Kind=Pod cannot be decoded from protobuf"
        );
        let mut truncated = hex(CONFIGMAP);
        truncated.truncate(truncated.len() - 10);
        assert!(matches!(
            decode(&truncated),
            Err(ProtobufError::Truncated {
                message: "Unknown",
                ..
            })
        ));
        let gzip = [
            MAGIC.to_vec(),
            field(1, &[field(1, b"v1"), field(2, b"ConfigMap")].concat()),
            field(3, b"gzip"),
        ]
        .concat();
        assert_eq!(
            decode(&gzip),
            Err(ProtobufError::ContentEncoding("gzip".into()))
        );
        let bad_utf8 = body("v1", "ConfigMap", &field(1, &field(1, &[0xff, 0xfe])));
        assert_eq!(
            decode(&bad_utf8),
            Err(ProtobufError::Utf8 {
                message: "ConfigMap",
                field: 1
            })
        );
        let group = [MAGIC.to_vec(), varint(1 << 3 | 3)].concat();
        assert_eq!(
            decode(&group),
            Err(ProtobufError::WireType {
                message: "Unknown",
                wire_type: 3
            })
        );
    }
}
