//! Who may associate and who may store: the called AE title check, the list of allowed calling
//! AE titles, and per-peer rules (calling AE title, source address ranges, what the peer may do).

use std::net::IpAddr;
use std::sync::Arc;

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tracing::warn;

/// One `[[dicom_peers]]` entry of the settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRule {
    /// Calling AE title, or `*` for any.
    pub aet: String,
    /// Source address ranges (`10.1.2.0/24`, `192.168.0.7/32`); empty for any.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// May C-STORE; without it the peer may only C-ECHO.
    #[serde(default = "yes")]
    pub store: bool,
    /// May query (C-FIND), unless `dicom_always_allow_find` lets every admitted peer.
    #[serde(default)]
    pub find: bool,
}

fn yes() -> bool {
    true
}

impl PeerRule {
    fn matches(&self, calling_aet: &str, address: Option<IpAddr>) -> bool {
        let aet = self.aet.trim();
        (aet == "*" || aet == calling_aet.trim())
            && (self.addresses.is_empty()
                || address.is_some_and(|a| {
                    let a = canonical(a);
                    self.addresses.iter().any(|net| net.contains(&a))
                }))
    }
}

/// IPv4 peers on a dual-stack socket show up as `::ffff:a.b.c.d`.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The policy for one connection: the settings' rules and the peer's address.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    pub check_called: bool,
    pub allowed_calling: Arc<[String]>,
    pub rules: Arc<[PeerRule]>,
    pub address: Option<IpAddr>,
    /// Every admitted peer may query (`dicom_always_allow_find`).
    pub always_allow_find: bool,
}

impl PeerPolicy {
    /// Whether this peer may store: with no rules, any admitted peer may; otherwise a
    /// matching rule must allow it.
    pub fn may_store(&self, calling_aet: &str) -> bool {
        self.rules.is_empty()
            || self
                .rules
                .iter()
                .any(|r| r.store && r.matches(calling_aet, self.address))
    }
}

impl PeerPolicy {
    /// Whether this peer may query: `dicom_always_allow_find`, or a matching rule with `find`.
    /// Off by default, as in Orthanc: a query reads every patient's name.
    pub fn may_find(&self, calling_aet: &str) -> bool {
        self.always_allow_find
            || self
                .rules
                .iter()
                .any(|r| r.find && r.matches(calling_aet, self.address))
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
        if !self.rules.is_empty()
            && !self
                .rules
                .iter()
                .any(|r| r.matches(calling_ae_title, self.address))
        {
            warn!(
                calling_aet = calling_ae_title,
                address = ?self.address,
                "association refused: no dicom_peers rule admits this AE title from this address"
            );
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: Vec<PeerRule>, address: &str) -> PeerPolicy {
        PeerPolicy {
            check_called: false,
            allowed_calling: Arc::from(Vec::new()),
            rules: rules.into(),
            address: Some(address.parse().unwrap()),
            always_allow_find: false,
        }
    }

    fn rule(aet: &str, addresses: &[&str], store: bool) -> PeerRule {
        PeerRule {
            aet: aet.into(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            store,
            find: store,
        }
    }

    #[test]
    fn rules_match_on_title_and_address() {
        let rules = vec![
            rule("CT1", &["10.1.2.0/24"], true),
            rule("*", &["192.168.7.7/32"], false),
        ];
        let admitted = |aet: &str, address: &str| {
            policy(rules.clone(), address)
                .check_access("ORTHWEB", aet, "ORTHWEB", None)
                .is_ok()
        };
        assert!(admitted("CT1", "10.1.2.44"));
        assert!(admitted("CT1", "::ffff:10.1.2.44"), "IPv4-mapped IPv6");
        assert!(!admitted("CT1", "10.1.3.44"), "outside the range");
        assert!(!admitted("MR1", "10.1.2.44"), "another title");
        assert!(admitted("ANYONE", "192.168.7.7"));

        assert!(policy(rules.clone(), "10.1.2.44").may_find("CT1"));
        assert!(!policy(rules.clone(), "192.168.7.7").may_find("ANYONE"));
        assert!(
            !policy(Vec::new(), "192.168.7.7").may_find("ANYONE"),
            "no rules: no queries unless dicom_always_allow_find"
        );
        let mut always = policy(Vec::new(), "192.168.7.7");
        always.always_allow_find = true;
        assert!(always.may_find("ANYONE"));
        assert!(policy(rules.clone(), "10.1.2.44").may_store("CT1"));
        assert!(!policy(rules.clone(), "192.168.7.7").may_store("ANYONE"));
        assert!(
            policy(Vec::new(), "192.168.7.7").may_store("ANYONE"),
            "no rules"
        );
    }
}
