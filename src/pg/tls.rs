//! TLS on the Postgres port: the certificate chain and key named by `tls_cert`/`tls_key`,
//! read once at start into a rustls acceptor (pgwire answers a client's SSLRequest with it).
//! A client that does not ask for TLS is still served in plain text, as PostgreSQL's default
//! `host` rule does; clients that must not fall back use `sslmode=require` or `verify-full`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::ServerConfig;

/// Why TLS could not be set up; each names the file to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, RSA or SEC1)")]
    NoKey { path: PathBuf },
    #[error("the TLS certificate and key do not make a server configuration: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

fn open(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|error| TlsError::Read {
            path: path.into(),
            error,
        })
}

/// The acceptor of TLS connections with the certificate chain in `cert` and its key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| TlsError::Read { path, error }
    };
    let chain = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error(cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.into() });
    }
    let private = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(read_error(key))?
        .ok_or_else(|| TlsError::NoKey { path: key.into() })?;
    // The provider is named: the dependency tree enables both of rustls' providers, and
    // rustls then will not pick one by itself.
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let err = acceptor(&cert, &key).err().unwrap().to_string();
        assert!(err.contains("cert.pem"), "{err}");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let err = acceptor(&cert, &key).err().unwrap();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    }
}
