//! TLS over the simulated links: the same `p2p-transport-tls` code as over
//! TCP. Identities derive from (seed, position), so fingerprints, and with
//! them the reports, replay; rustls still draws its session keys from the
//! OS, which changes bytes on the wire but not their sizes or timing.

use std::collections::BTreeMap;
use std::sync::Arc;

use p2p_core::server::{ClientInfo, Gate, Standing};
use p2p_core::transport::Fingerprint;
use p2p_transport_tls::{Identity, TlsTransport, Trust};

use crate::net::{Network, SimTransport};

/// Each peer's TLS transport, and the gate servers share.
type Setup = (Vec<TlsTransport<SimTransport>>, Arc<dyn Gate>);

/// Every peer's TLS transport (each pinning all the others) and the gate
/// that knows them all.
pub(crate) fn transports(
    net: &Arc<Network>,
    names: &[String],
    hosts: &[String],
    addrs: &crate::run::Addresses,
    seed: u64,
) -> Result<Setup, String> {
    let identities: Vec<Identity> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Identity::derived(name, secret(seed, i)).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut trust = Trust::new();
    let mut known = BTreeMap::new();
    for (name, id) in names.iter().zip(&identities) {
        trust.pin(&addrs.of(name), id.fingerprint());
        known.insert(name.clone(), id.fingerprint());
    }
    let transports = hosts
        .iter()
        .zip(identities)
        .enumerate()
        .map(|(i, (host, id))| {
            TlsTransport::new(net.transport(i, host), Some(id), trust.clone()).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    Ok((transports, Arc::new(Known(known))))
}

/// A peer's secret: the same for a position whatever else the scenario has.
fn secret(seed: u64, i: usize) -> [u8; 32] {
    *blake3::hash(&[b"identity".as_slice(), &seed.to_le_bytes(), &(i as u64).to_le_bytes()].concat()).as_bytes()
}

/// Knows a client whose certificate is the one its claimed id has.
#[derive(Debug)]
struct Known(BTreeMap<String, Fingerprint>);

impl Gate for Known {
    fn admit(&self, client: &ClientInfo) -> Result<Standing, String> {
        match (client.identity, self.0.get(&client.claimed_id)) {
            (Some(shown), Some(&pinned)) if shown == pinned => Ok(Standing::Known),
            (Some(shown), Some(pinned)) => {
                Err(format!("certificate fingerprint {shown} does not match the pinned {pinned}"))
            }
            _ => Ok(Standing::Stranger),
        }
    }
}
