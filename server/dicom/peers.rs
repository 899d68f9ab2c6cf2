//! Who may associate and what they may do: the called AE title check, the list of allowed
//! calling AE titles, and the known peers (`modalities`: calling AE title, source address
//! ranges, permissions), with `dicom_always_allow_*` for everyone else.

use std::net::IpAddr;
use std::sync::Arc;

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};
use serde::{Deserialize, Serialize};

use super::modalities::Modality;
use tracing::warn;

/// What a peer may do once admitted (it may always echo).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    pub store: bool,
    pub find: bool,
    pub r#move: bool,
    pub get: bool,
}

impl Permissions {
    fn any(self) -> bool {
        self.store || self.find || self.r#move || self.get
    }

    fn union(self, other: Permissions) -> Permissions {
        Permissions {
            store: self.store || other.store,
            find: self.find || other.find,
            r#move: self.r#move || other.r#move,
            get: self.get || other.get,
        }
    }

    fn of(modality: &Modality) -> Permissions {
        Permissions {
            store: modality.store,
            find: modality.find,
            r#move: modality.r#move,
            get: modality.get,
        }
    }
}

fn calls_from(modality: &Modality, address: Option<IpAddr>) -> bool {
    modality.addresses.is_empty()
        || address.is_some_and(|a| {
            let a = canonical(a);
            modality.addresses.iter().any(|net| net.contains(&a))
        })
}

/// IPv4 peers on a dual-stack socket show up as `::ffff:a.b.c.d`.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The policy for one connection: the settings, the peers known when it arrived and its
/// address.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    pub check_called: bool,
    pub allowed_calling: Arc<[String]>,
    pub modalities: Arc<[Modality]>,
    pub address: Option<IpAddr>,
    /// What a peer no entry matches may do (`dicom_always_allow_*`).
    pub unknown: Permissions,
    /// Whether a peer no entry matches may associate at all, for C-ECHO.
    pub unknown_may_echo: bool,
}

/// Why a peer is turned away.
enum Refusal {
    /// Its AE title is listed, but not from this address.
    WrongAddress,
    /// It is not listed and unknown peers may do nothing.
    Unknown,
}

impl PeerPolicy {
    /// What the peer calling as `calling_aet` may do: what every entry matching its title and
    /// address grants, or what unknown peers may when none matches.
    pub fn permissions(&self, calling_aet: &str) -> Permissions {
        self.decide(calling_aet).unwrap_or_default()
    }

    fn decide(&self, calling_aet: &str) -> Result<Permissions, Refusal> {
        let calling = calling_aet.trim();
        let mut titled = false;
        let mut granted: Option<Permissions> = None;
        for m in self.modalities.iter() {
            let named = m.aet == calling;
            titled |= named;
            if (named || m.aet == "*") && calls_from(m, self.address) {
                granted = Some(granted.unwrap_or_default().union(Permissions::of(m)));
            }
        }
        match granted {
            Some(granted) => Ok(granted),
            // A listed title from elsewhere may be someone else using it.
            None if titled => Err(Refusal::WrongAddress),
            None if self.unknown_may_echo || self.unknown.any() => Ok(self.unknown),
            None => Err(Refusal::Unknown),
        }
    }
}

impl AccessControl for PeerPolicy {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if self.check_called && called_ae_title.trim() != this_ae_title.trim() {
            warn!(
                called_aet = called_ae_title,
                "association refused: called AE title is not ours"
            );
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.allowed_calling.is_empty()
            && !self
                .allowed_calling
                .iter()
                .any(|a| a.trim() == calling_ae_title.trim())
        {
            warn!(
                calling_aet = calling_ae_title,
                "association refused: calling AE title not allowed"
            );
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        match self.decide(calling_ae_title) {
            Ok(_) => Ok(()),
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::WrongAddress => "this AE title may not call from this address",
                    Refusal::Unknown => {
                        "unknown peer (not in modalities, and dicom_always_allow_* all off)"
                    }
                };
                warn!(calling_aet = calling_ae_title, address = ?self.address, reason,
                    "association refused");
                Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(modalities: Vec<Modality>, address: &str, unknown: Permissions) -> PeerPolicy {
        PeerPolicy {
            check_called: false,
            allowed_calling: Arc::from(Vec::new()),
            modalities: modalities.into(),
            address: Some(address.parse().unwrap()),
            unknown,
            unknown_may_echo: unknown.any(),
        }
    }

    fn peer(aet: &str, addresses: &[&str], store: bool) -> Modality {
        Modality {
            name: String::new(),
            aet: aet.into(),
            host: String::new(),
            port: 0,
            tls: false,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            store,
            find: store,
            r#move: false,
            get: false,
        }
        .validated()
        .unwrap()
    }

    #[test]
    fn peers_match_on_title_and_address() {
        let peers = vec![
            peer("CT1", &["10.1.2.0/24"], true),
            peer("*", &["192.168.7.7/32"], false),
        ];
        let closed = Permissions::default();
        let admitted = |aet: &str, address: &str| {
            policy(peers.clone(), address, closed)
                .check_access("ORTHWEB", aet, "ORTHWEB", None)
                .is_ok()
        };
        assert!(admitted("CT1", "10.1.2.44"));
        assert!(admitted("CT1", "::ffff:10.1.2.44"), "IPv4-mapped IPv6");
        assert!(!admitted("CT1", "10.1.3.44"), "outside the range");
        assert!(!admitted("MR1", "10.1.2.44"), "another title");
        assert!(admitted("ANYONE", "192.168.7.7"));

        let may = |aet: &str, address: &str, unknown: Permissions| {
            policy(peers.clone(), address, unknown).permissions(aet)
        };
        assert!(may("CT1", "10.1.2.44", closed).find);
        assert!(may("CT1", "10.1.2.44", closed).store);
        let anyone = may("ANYONE", "192.168.7.7", closed);
        assert!(!anyone.find && !anyone.store);
        let open = Permissions {
            store: true,
            ..Permissions::default()
        };
        assert!(
            may("MR1", "10.9.9.9", open).store,
            "unknown peers: the defaults"
        );
        assert!(!may("MR1", "10.9.9.9", open).find);
        assert!(
            policy(peers.clone(), "10.1.3.44", open)
                .check_access("ORTHWEB", "CT1", "ORTHWEB", None)
                .is_err(),
            "a listed title from another address is refused even when unknown peers may store"
        );
    }
}
