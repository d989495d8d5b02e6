//! Certificate checks: by pin or first use (the default), or by a CA.
//!
//! Whatever the mode, rustls checks that the peer holds the key of the
//! certificate it presents (the handshake signature); these verifiers decide
//! whether that certificate is the right one.

use std::sync::{Arc, Mutex, PoisonError};

use p2p_core::transport::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::identity::fingerprint;
use crate::trust::{Trust, TrustError};

/// Checks a server's certificate for one connection to `addr`.
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    pub(crate) addr: String,
    pub(crate) trust: Trust,
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) ca: Option<Arc<dyn ServerCertVerifier>>,
    /// Why the certificate was refused, in words for the error message.
    pub(crate) refusal: Arc<Mutex<Option<String>>>,
    /// A first-use fingerprint to record once the handshake succeeds.
    pub(crate) to_remember: Arc<Mutex<Option<Fingerprint>>>,
}

impl ServerVerifier {
    fn refuse(&self, why: String) -> Error {
        *self.refusal.lock().unwrap_or_else(PoisonError::into_inner) = Some(why.clone());
        Error::General(why)
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let presented = fingerprint(end_entity);
        let dates = |this: &Self| match check_dates(end_entity, now) {
            Ok(()) => Ok(()),
            Err((error, words)) => {
                *this.refusal.lock().unwrap_or_else(PoisonError::into_inner) = Some(words);
                Err(error)
            }
        };
        // A pin decides alone: a CA may not overrule it either way.
        let pins = self.trust.pinned(&self.addr);
        if !pins.is_empty() {
            if !pins.contains(&presented) {
                let expected = pins.to_vec();
                return Err(self.refuse(TrustError::PinMismatch { expected, presented }.to_string()));
            }
            dates(self)?;
            return Ok(ServerCertVerified::assertion());
        }
        if let Some(ca) = &self.ca {
            // The CA verifier checks the dates and the name too.
            ca.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map_err(|e| self.refuse(format!("certificate not issued by the trusted CA: {e}")))?;
            return Ok(ServerCertVerified::assertion());
        }
        dates(self)?;
        match &self.trust.known {
            Some(known) => {
                known.check(&format!("server {}", self.addr), presented).map_err(|e| self.refuse(e.to_string()))?;
                *self.to_remember.lock().unwrap_or_else(PoisonError::into_inner) = Some(presented);
                Ok(ServerCertVerified::assertion())
            }
            None => Err(self.refuse(TrustError::Unpinned(self.addr.clone()).to_string())),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // Only TLS 1.3 is offered.
        Err(Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks client certificates on the serving side. A client may come
/// without one (it can then list and download, as policy allows); one that
/// presents a certificate must hold its key and be within its dates, and
/// with a CA, be issued by it. Who the client is, and what it may do,
/// is decided from the fingerprint afterwards.
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) ca: Option<Arc<dyn ClientCertVerifier>>,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match &self.ca {
            Some(ca) => ca.verify_client_cert(end_entity, intermediates, now),
            None => {
                check_dates(end_entity, now).map_err(|(error, _)| error)?;
                Ok(ClientCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Refuses a certificate outside its validity dates: the error for rustls
/// (which picks the alert sent) and the reason in words.
fn check_dates(cert: &CertificateDer<'_>, now: UnixTime) -> Result<(), (Error, String)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
        (Error::InvalidCertificate(CertificateError::BadEncoding), format!("the peer's certificate is malformed: {e}"))
    })?;
    let validity = parsed.validity();
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let at = |secs: i64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.max(0) as u64));
    let day = |t: &x509_parser::time::ASN1Time| t.to_datetime().date().to_string();
    if now_secs < validity.not_before.timestamp() {
        let error = CertificateError::NotValidYetContext { time: now, not_before: at(validity.not_before.timestamp()) };
        let words = format!(
            "the peer's certificate is not valid until {} (is one of the two clocks wrong?)",
            day(&validity.not_before)
        );
        return Err((Error::InvalidCertificate(error), words));
    }
    if now_secs > validity.not_after.timestamp() {
        let error = CertificateError::ExpiredContext { time: now, not_after: at(validity.not_after.timestamp()) };
        let words = format!(
            "the peer's certificate expired on {} (it needs a new one: `p2p init --force` makes one)",
            day(&validity.not_after)
        );
        return Err((Error::InvalidCertificate(error), words));
    }
    Ok(())
}
