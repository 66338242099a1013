//! Service account tokens, as kube-apiserver issues and checks them: JWTs signed with the
//! cluster's own key (ES256), with Kubernetes' claims (`sub`
//! `system:serviceaccount:<ns>:<name>`, the `kubernetes.io` claim naming the namespace, the
//! ServiceAccount and the Pod the token is bound to), served by `serviceaccounts/<name>/token`
//! (TokenRequest) and accepted as bearer tokens. No crate here signs JWTs with ring, which the
//! TLS stack already brings; the format is small enough to write out.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};
use serde::{Deserialize, Serialize};

/// The issuer and the audience the API server accepts, as a default cluster names them.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who may accept it.
    pub aud: Vec<String>,
    /// Expiry, in seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// The issuer.
    pub iss: String,
    /// Not before.
    pub nbf: i64,
    /// `system:serviceaccount:<ns>:<name>`.
    pub sub: String,
    /// The objects the token is bound to.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Binding,
}

/// The `kubernetes.io` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub serviceaccount: Ref,
    /// The Pod, when the token is bound to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
}

/// An object by name and uid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

/// Signs and checks service account tokens with one key.
pub struct Issuer {
    key: EcdsaKeyPair,
    /// The CA certificate (PEM) that Pods trust the API server by (`kube-root-ca.crt`).
    pub ca_cert: String,
}

impl Issuer {
    /// A new signing key, as PKCS#8 (what [`Issuer::new`] takes).
    pub fn generate_key() -> Result<Vec<u8>, String> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map(|k| k.as_ref().to_vec())
            .map_err(|_| "cannot generate a service account signing key".to_string())
    }

    /// The issuer of `pkcs8`'s key, publishing `ca_cert`.
    pub fn new(pkcs8: &[u8], ca_cert: String) -> Result<Issuer, String> {
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| format!("invalid service account signing key: {e}"))?;
        Ok(Issuer { key, ca_cert })
    }

    /// A signed token with `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let body = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(body));
        let signature = self
            .key
            .sign(&SystemRandom::new(), signed.as_bytes())
            .map_err(|_| "cannot sign a token".to_string())?;
        Ok(format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The claims of a token this issuer signed, if it is valid at `now` (seconds since the
    /// epoch) for the API server's audience.
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        let (signed, signature) = token.rsplit_once('.')?;
        let (header, body) = signed.split_once('.')?;
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header["alg"] != "ES256" {
            return None;
        }
        let public = ring::signature::UnparsedPublicKey::new(
            &ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        public
            .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).ok()?)
            .ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        let fresh = claims.nbf <= now && now < claims.exp;
        let ours = claims.iss == ISSUER && claims.aud.iter().any(|a| a == ISSUER);
        (fresh && ours).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(aud: &str, exp: i64) -> Claims {
        Claims {
            aud: vec![aud.to_string()],
            exp,
            iat: 100,
            iss: ISSUER.to_string(),
            nbf: 100,
            sub: "system:serviceaccount:default:default".into(),
            kubernetes: Binding {
                namespace: "default".into(),
                serviceaccount: Ref {
                    name: "default".into(),
                    uid: "u".into(),
                },
                pod: None,
            },
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires_and_only_with_its_key() {
        let issuer = Issuer::new(&Issuer::generate_key().unwrap(), String::new()).unwrap();
        let token = issuer.sign(&claims(ISSUER, 200)).unwrap();
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(issuer.verify(&token, 150), Some(claims(ISSUER, 200)));
        assert_eq!(issuer.verify(&token, 200), None, "expired");
        assert_eq!(issuer.verify(&token, 50), None, "not yet valid");
        let other = Issuer::new(&Issuer::generate_key().unwrap(), String::new()).unwrap();
        assert_eq!(other.verify(&token, 150), None, "another key");
        let (head, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        assert_eq!(issuer.verify(&forged, 150), None);
        let vault = issuer.sign(&claims("vault", 200)).unwrap();
        assert_eq!(issuer.verify(&vault, 150), None, "another audience");
    }
}
