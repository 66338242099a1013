//! Bad input gets a clear error and changes nothing: oversized bodies, YAML alias bombs, deeply
//! nested JSON, invalid UTF-8, invalid names, and requests without credentials.

mod common;

use common::Cluster;
use serde_json::Value;

/// Sends `body` to `path` and returns (HTTP status, Status object).
async fn post(
    client: &kube::Client,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = http::Request::post(path)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    match client.request_text(req).await {
        Ok(text) => (200, serde_json::from_str(&text).unwrap_or(Value::Null)),
        Err(kube::Error::Api(status)) => (status.code, serde_json::to_value(&*status).unwrap()),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

async fn configmap_count(c: &Cluster) -> usize {
    let text = c
        .kubectl(&["get", "configmaps", "-o", "name"])
        .ok()
        .to_string();
    text.lines().count()
}

const CM: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_are_refused_and_change_nothing() {
    let c = Cluster::start();
    let client = c.client().await;
    let before = configmap_count(&c).await;

    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let (code, status) = post(&client, CM, "application/json", big.into_bytes()).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );

    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 0..9 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("a{i}")
        };
        bomb.push_str(&format!(
            "a{}: &a{} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n",
            i + 1,
            i + 1
        ));
    }
    let (code, status) = post(&client, CM, "application/yaml", bomb.into_bytes()).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (400, Some("BadRequest")),
        "{status}"
    );

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (code, _) = post(&client, CM, "application/json", deep.into_bytes()).await;
    assert_eq!(code, 400);

    let mut invalid =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"u"},"data":{"a":""#.to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe]);
    invalid.extend_from_slice(br#""}}"#);
    let (code, _) = post(&client, CM, "application/json", invalid).await;
    assert_eq!(code, 400);

    let bad_name =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#.to_vec();
    let (code, status) = post(&client, CM, "application/json", bad_name).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"].as_str().unwrap(),
        "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );

    let wrong_ns = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"kube-system"}}"#.to_vec();
    let (code, status) = post(&client, CM, "application/json", wrong_ns).await;
    assert_eq!(code, 400);
    assert_eq!(
        status["message"],
        "the namespace of the provided object does not match the namespace sent on the request"
    );

    assert_eq!(
        configmap_count(&c).await,
        before,
        "a refused request changed the store"
    );
}

#[test]
fn anonymous_requests_get_401() {
    let c = Cluster::start();
    let kubeconfig = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/stderr",
            "-w",
            "%{http_code}",
            &format!("{server}/api/v1/namespaces/default/pods"),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"reason\":\"Unauthorized\""));
    // Health and version are public, as on Kubernetes.
    let out = std::process::Command::new("curl")
        .args(["-sk", &format!("{server}/readyz")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}
