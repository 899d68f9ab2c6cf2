//! DICOM peers ("modalities", as Orthanc calls them): the nodes we know by name — the AE title
//! they call with and the addresses they call from, where we reach them (host, port, TLS) and
//! what they may do here. Defined in the settings (`[[modalities]]`) or over REST, kept in the
//! index so that every replica sees them.

use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::index::{Index, IndexError};

/// One peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modality {
    /// What REST routes and the UI call it; the AE title when left out (`any`, `any-2`… for
    /// `*` entries of the settings).
    #[serde(default)]
    pub name: String,
    /// The AE title it calls us with and that we call it by; `*` for any (then it only says
    /// what callers from `addresses` may do: there is nothing to send to).
    pub aet: String,
    /// Where we reach it (C-MOVE destinations, "send to"); empty when we never call it.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: u16,
    /// We call it over DICOM TLS.
    #[serde(default)]
    pub tls: bool,
    /// Source address ranges it may call from (`10.1.2.0/24`); empty for any. A call with its
    /// AE title from anywhere else is refused.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// May C-STORE to us.
    #[serde(default = "yes")]
    pub store: bool,
    /// May query (C-FIND).
    #[serde(default)]
    pub find: bool,
    /// May retrieve with C-MOVE (to any known destination).
    #[serde(default, rename = "move")]
    pub r#move: bool,
    /// May retrieve with C-GET.
    #[serde(default)]
    pub get: bool,
}

fn yes() -> bool {
    true
}

/// Why a peer definition is refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidModality(pub String);

impl Modality {
    /// Fills in the name and checks the definition.
    pub fn validated(mut self) -> Result<Modality, InvalidModality> {
        self.aet = self.aet.trim().to_string();
        if self.name.is_empty() {
            self.name = match self.aet.as_str() {
                "*" => "any".into(),
                aet => aet.into(),
            };
        }
        check_name(&self.name)?;
        let aet = &self.aet;
        if aet != "*"
            && (aet.is_empty()
                || aet.len() > 16
                || aet.chars().any(|c| c == '\\' || !(' '..='~').contains(&c)))
        {
            return Err(InvalidModality(format!(
                "AE title {aet:?}: 1 to 16 printable characters, no backslash"
            )));
        }
        match (self.host.is_empty(), self.port) {
            (true, 0) => {}
            (false, 1..) if aet != "*" => {}
            (false, 1..) => {
                return Err(InvalidModality(format!(
                    "{}: a peer we call needs its own AE title, not \"*\"",
                    self.name
                )));
            }
            _ => {
                return Err(InvalidModality(format!(
                    "{}: host and port go together",
                    self.name
                )));
            }
        }
        Ok(self)
    }

    /// Whether we can call it.
    pub fn reachable(&self) -> bool {
        !self.host.is_empty() && self.port != 0
    }

    /// Orthanc's JSON for a modality (`GET /modalities?expand`), with our address ranges.
    pub fn to_orthanc(&self) -> Value {
        json!({
            "AET": self.aet,
            "Host": self.host,
            "Port": self.port,
            "Manufacturer": "Generic",
            "AllowEcho": true,
            "AllowStore": self.store,
            "AllowFind": self.find,
            "AllowMove": self.r#move,
            "AllowGet": self.get,
            "AllowStorageCommitment": false,
            "UseDicomTls": self.tls,
            "Addresses": self.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        })
    }

    /// Reads Orthanc's body of `PUT /modalities/{name}`: `{"AET":…, "Host":…, "Port":…}` with
    /// the optional `Allow*`, `UseDicomTls` and our `Addresses`, or `[AET, host, port]`.
    /// Orthanc lets a modality do everything unless told otherwise; so do we, except query and
    /// retrieve, which read every patient's data and must be granted.
    pub fn from_orthanc(name: &str, body: &Value) -> Result<Modality, InvalidModality> {
        let invalid = |what: &str| InvalidModality(format!("{what} (Orthanc's modality JSON)"));
        let port = |v: &Value| -> Result<u16, InvalidModality> {
            match v {
                Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("Port: a number from 1 to 65535"))
        };
        let text = |v: &Value, key: &str| -> Result<String, InvalidModality> {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid(&format!("{key}: a string")))
        };
        let modality = match body {
            Value::Array(items) if items.len() >= 3 => Modality {
                name: name.into(),
                aet: text(&items[0], "AET")?,
                host: text(&items[1], "Host")?,
                port: port(&items[2])?,
                ..Modality::new(name)
            },
            Value::Object(fields) => {
                let mut m = Modality::new(name);
                for (key, value) in fields {
                    let flag = || {
                        value
                            .as_bool()
                            .ok_or_else(|| invalid(&format!("{key}: true or false")))
                    };
                    match key.as_str() {
                        "AET" => m.aet = text(value, key)?,
                        "Host" => m.host = text(value, key)?,
                        "Port" => m.port = port(value)?,
                        "UseDicomTls" => m.tls = flag()?,
                        "AllowStore" => m.store = flag()?,
                        "AllowFind" => m.find = flag()?,
                        "AllowMove" => m.r#move = flag()?,
                        "AllowGet" => m.get = flag()?,
                        "Addresses" => {
                            m.addresses = value
                                .as_array()
                                .ok_or_else(|| invalid("Addresses: a list"))?
                                .iter()
                                .map(|a| {
                                    a.as_str().and_then(|a| a.parse().ok()).ok_or_else(|| {
                                        invalid("Addresses: ranges such as \"10.1.2.0/24\"")
                                    })
                                })
                                .collect::<Result<_, _>>()?;
                        }
                        // Accepted for Orthanc's clients; their meaning is Orthanc's own.
                        "Manufacturer"
                        | "AllowEcho"
                        | "AllowStorageCommitment"
                        | "Timeout"
                        | "LocalAet"
                        | "AllowFindWorklist"
                        | "AllowTranscoding" => {}
                        other => return Err(invalid(&format!("unknown key {other:?}"))),
                    }
                }
                if m.aet.is_empty() {
                    return Err(invalid("AET is required"));
                }
                m
            }
            _ => return Err(invalid("an object or [AET, host, port]")),
        };
        modality.validated()
    }

    fn new(name: &str) -> Modality {
        Modality {
            name: name.into(),
            aet: String::new(),
            host: String::new(),
            port: 0,
            tls: false,
            addresses: Vec::new(),
            store: true,
            find: false,
            r#move: false,
            get: false,
        }
    }
}

/// Names are path segments of REST routes.
pub fn check_name(name: &str) -> Result<(), InvalidModality> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(InvalidModality(format!(
            "name {name:?}: 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

/// Every peer: the settings' and the index's.
#[derive(Clone)]
pub struct Modalities {
    configured: Arc<[Modality]>,
    index: Index,
}

/// Why a peer could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum ModalityChangeError {
    #[error("{0:?} is defined in the settings file; change it there")]
    Configured(String),
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl Modalities {
    /// `configured` must have been validated (the settings do it at load).
    pub fn new(configured: Vec<Modality>, index: Index) -> Modalities {
        Modalities {
            configured: configured.into(),
            index,
        }
    }

    /// Every peer, those of the settings first; a stored one that cannot be read is left out
    /// with a warning rather than making every peer unknown.
    pub async fn all(&self) -> Result<Vec<Modality>, IndexError> {
        let mut all = self.configured.to_vec();
        for (name, definition) in self.index.modality_definitions().await? {
            if all.iter().any(|m| m.name == name) {
                continue;
            }
            match serde_json::from_str::<Modality>(&definition)
                .map_err(|e| InvalidModality(e.to_string()))
                .and_then(Modality::validated)
            {
                Ok(modality) => all.push(modality),
                Err(e) => tracing::warn!(name, error = %e, "ignoring a stored DICOM peer"),
            }
        }
        Ok(all)
    }

    /// The settings' peers alone (when the index cannot be read).
    pub fn configured(&self) -> Vec<Modality> {
        self.configured.to_vec()
    }

    pub async fn by_name(&self, name: &str) -> Result<Option<Modality>, IndexError> {
        Ok(self.all().await?.into_iter().find(|m| m.name == name))
    }

    /// The peer we can call whose AE title is `aet` (a C-MOVE destination).
    pub async fn destination(&self, aet: &str) -> Result<Option<Modality>, IndexError> {
        let aet = aet.trim();
        Ok(self
            .all()
            .await?
            .into_iter()
            .find(|m| m.aet == aet && m.reachable()))
    }

    /// Adds or replaces a peer over REST.
    pub async fn put(&self, modality: &Modality) -> Result<(), ModalityChangeError> {
        if self.configured.iter().any(|m| m.name == modality.name) {
            return Err(ModalityChangeError::Configured(modality.name.clone()));
        }
        let definition = serde_json::to_string(modality).expect("a modality serialises");
        self.index.put_modality(&modality.name, &definition).await?;
        Ok(())
    }

    /// Removes a peer added over REST; whether there was one.
    pub async fn delete(&self, name: &str) -> Result<bool, ModalityChangeError> {
        if self.configured.iter().any(|m| m.name == name) {
            return Err(ModalityChangeError::Configured(name.into()));
        }
        Ok(self.index.delete_modality(name).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthanc_json_round_trips() {
        let body = json!({"AET": "PACS2", "Host": "127.0.0.1", "Port": 4243,
            "AllowFind": true, "Manufacturer": "Generic"});
        let m = Modality::from_orthanc("old-pacs", &body).unwrap();
        assert_eq!(
            (m.aet.as_str(), m.port, m.find, m.r#move),
            ("PACS2", 4243, true, false)
        );
        assert!(m.store, "store is allowed unless told otherwise");
        let again = Modality::from_orthanc("old-pacs", &m.to_orthanc()).unwrap();
        assert_eq!(again, m);
        let short = Modality::from_orthanc("x", &json!(["X", "10.0.0.1", "104"])).unwrap();
        assert_eq!((short.aet.as_str(), short.port), ("X", 104));
    }

    #[test]
    fn bad_definitions_are_refused() {
        for body in [
            json!({"Host": "h", "Port": 1}),
            json!({"AET": "A", "Host": "h"}),
            json!({"AET": "A", "Host": "h", "Port": 70000}),
            json!({"AET": "*", "Host": "h", "Port": 104}),
            json!({"AET": "A\\B"}),
            json!({"AET": "A", "Bogus": 1}),
            json!({"AET": "A", "AllowFind": "yes"}),
            json!("A"),
        ] {
            assert!(Modality::from_orthanc("n", &body).is_err(), "{body}");
        }
        assert!(Modality::from_orthanc("a/b", &json!({"AET": "A"})).is_err());
    }
}
