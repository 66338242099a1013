//! The cluster's certificates: a CA made on first start, a serving certificate for loopback, and
//! the admin's client certificate for the kubeconfig. Kept as PEM files in `DIR/pki/`, keys 0600.
//! The certificate Pods see ([`Pki::serving_certificate`]) is made at each start instead.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What went wrong making or reading certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// rcgen refused the parameters.
    #[error("cannot make certificate {what}")]
    Generate {
        /// Which certificate.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// The service account signing key could not be made.
    #[error("{0}")]
    Key(String),
}

/// The key service account tokens are signed with (`sa.key` in `dir`, PKCS#8), made on first
/// use; a data dir from before tokens existed gets one too.
pub fn service_account_key(dir: &Path) -> Result<Vec<u8>, PkiError> {
    let path = dir.join("sa.key");
    match fs::read(&path) {
        Ok(key) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = crate::tokens::Issuer::generate_key().map_err(PkiError::Key)?;
            write_private(&path, &key)?;
            Ok(key)
        }
        Err(source) => Err(PkiError::Io { path, source }),
    }
}

/// The PEM texts of the cluster's certificates and keys.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA certificate; clients trust it, and it signs client certificates.
    pub ca_cert: String,
    /// The CA's private key (signs client certificates).
    pub ca_key: String,
    /// The serving certificate (SANs 127.0.0.1, ::1, localhost).
    pub server_cert: String,
    /// The serving key.
    pub server_key: String,
    /// The admin's client certificate (CN kubernetes-admin, O system:masters).
    pub admin_cert: String,
    /// The admin's key.
    pub admin_key: String,
}

/// The admin's user name, the CN of its client certificate.
pub const ADMIN_USER: &str = "kubernetes-admin";
/// The admin's group, the O of its client certificate.
pub const ADMIN_GROUP: &str = "system:masters";

const FILES: [&str; 6] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "admin.crt",
    "admin.key",
];

impl Pki {
    /// Reads the certificates in `dir`, or makes and writes them when `dir` holds none.
    pub fn load_or_create(dir: &Path) -> Result<Pki, PkiError> {
        if dir.join("ca.crt").exists() {
            let read = |name: &str| {
                let path = dir.join(name);
                fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })
            };
            return Ok(Pki {
                ca_cert: read(FILES[0])?,
                ca_key: read(FILES[1])?,
                server_cert: read(FILES[2])?,
                server_key: read(FILES[3])?,
                admin_cert: read(FILES[4])?,
                admin_key: read(FILES[5])?,
            });
        }
        let pki = Pki::generate()?;
        fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        // The CA certificate goes last: its presence marks a complete set.
        let texts = [
            &pki.ca_key,
            &pki.server_cert,
            &pki.server_key,
            &pki.admin_cert,
            &pki.admin_key,
            &pki.ca_cert,
        ];
        let names = [FILES[1], FILES[2], FILES[3], FILES[4], FILES[5], FILES[0]];
        for (name, text) in names.iter().zip(texts) {
            write_private(&dir.join(name), text.as_bytes())?;
        }
        Ok(pki)
    }

    /// Makes a new CA, serving certificate and admin certificate.
    pub fn generate() -> Result<Pki, PkiError> {
        let err = |what| move |source| PkiError::Generate { what, source };
        let ca_key = KeyPair::generate().map_err(err("ca key"))?;
        let ca_params = ca_params()?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err("ca"))?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let (server_cert, server_key) = server_certificate(
            &issuer,
            &["localhost".into(), "127.0.0.1".into(), "::1".into()],
        )?;
        let (admin_cert, admin_key) = client_certificate(&issuer, ADMIN_USER, &[ADMIN_GROUP])?;
        Ok(Pki {
            ca_cert: ca_cert.pem(),
            ca_key: ca_key_pem,
            server_cert,
            server_key,
            admin_cert,
            admin_key,
        })
    }

    /// A serving certificate for `names` (DNS names and IP addresses), signed by the CA:
    /// (certificate PEM, key PEM). Made afresh at each start for addresses that may change.
    pub fn serving_certificate(&self, names: &[String]) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key).map_err(|source| PkiError::Generate {
            what: "ca key",
            source,
        })?;
        // The CA's own parameters name the issuer; with its key they sign as the CA did.
        server_certificate(&Issuer::new(ca_params()?, ca_key), names)
    }
}

/// The CA's parameters (its certificate is made once, from these).
fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|source| PkiError::Generate { what: "ca", source })?;
    params
        .distinguished_name
        .push(DnType::CommonName, "tatami-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    Ok(params)
}

/// The API server's certificate for `names`, signed by the CA: (certificate PEM, key PEM).
fn server_certificate(
    issuer: &Issuer<'_, KeyPair>,
    names: &[String],
) -> Result<(String, String), PkiError> {
    let err = |source| PkiError::Generate {
        what: "server",
        source,
    };
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    let cert = params.signed_by(&key, issuer).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A client certificate for `user` in `groups`, signed by the CA: (certificate PEM, key PEM).
fn client_certificate(
    issuer: &Issuer<'_, KeyPair>,
    user: &str,
    groups: &[&str],
) -> Result<(String, String), PkiError> {
    let err = |source| PkiError::Generate {
        what: "client",
        source,
    };
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, user);
    for g in groups {
        params.distinguished_name.push(DnType::OrganizationName, *g);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    let cert = params.signed_by(&key, issuer).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `bytes` to `path` with mode 0600, atomically (a temporary file renamed into place).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_loads_the_same_files() {
        let dir = std::env::temp_dir().join(format!("tatami-pki-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = Pki::load_or_create(&dir).unwrap();
        let b = Pki::load_or_create(&dir).unwrap();
        assert_eq!(a.ca_cert, b.ca_cert);
        assert_eq!(a.admin_key, b.admin_key);
        for f in FILES {
            let mode = fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_serving_certificate_made_later_chains_to_the_stored_ca() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
        let pki = Pki::generate().unwrap();
        let (cert, _key) = pki
            .serving_certificate(&["10.1.0.1".into(), "kubernetes.default.svc".into()])
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_cert.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let leaf = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        for name in ["10.1.0.1", "kubernetes.default.svc"] {
            verifier
                .verify_server_cert(
                    &leaf,
                    &[],
                    &ServerName::try_from(name).unwrap(),
                    &[],
                    UnixTime::now(),
                )
                .unwrap();
        }
        assert!(
            verifier
                .verify_server_cert(
                    &leaf,
                    &[],
                    &ServerName::try_from("localhost").unwrap(),
                    &[],
                    UnixTime::now()
                )
                .is_err()
        );
    }
}
