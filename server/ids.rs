//! Orthanc-compatible resource identifiers.
//!
//! Orthanc names every patient, study, series and instance by the SHA-1 of its UID path, so
//! scripts written against Orthanc keep the same IDs when they move to Orthweb.

use sha1::{Digest, Sha1};

/// The four identifiers of one instance and its ancestors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceIds {
    pub patient: String,
    pub study: String,
    pub series: String,
    pub instance: String,
}

impl ResourceIds {
    /// Derives the IDs from the four identifying attributes, as received (padding included).
    pub fn derive(patient_id: &str, study_uid: &str, series_uid: &str, sop_uid: &str) -> Self {
        let patient_id = strip_padding(patient_id);
        let path = [
            patient_id,
            strip_padding(study_uid),
            strip_padding(series_uid),
            strip_padding(sop_uid),
        ];
        ResourceIds {
            patient: hash_path(&path[..1]),
            study: hash_path(&path[..2]),
            series: hash_path(&path[..3]),
            instance: hash_path(&path[..4]),
        }
    }
}

/// Removes DICOM value padding: trailing spaces and NULs. Leading spaces are significant to
/// Orthanc, so they stay.
pub fn strip_padding(value: &str) -> &str {
    value.trim_end_matches([' ', '\0'])
}

/// SHA-1 of the parts joined by `|`, as `%08x-%08x-%08x-%08x-%08x`.
fn hash_path(parts: &[&str]) -> String {
    let digest = Sha1::digest(parts.join("|").as_bytes());
    let hex = hex::encode(digest);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..16],
        &hex[16..24],
        &hex[24..32],
        &hex[32..40]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Orthanc's own test suite (orthanc-tests `test_upload`) asserts these IDs for
    /// `Database/DummyCT.dcm`.
    #[test]
    fn matches_orthanc_for_dummy_ct() {
        let ids = ResourceIds::derive(
            "ozp00SjY2xG",
            "1.2.840.113619.2.176.2025.1499492.7391.1171285944.390",
            "1.2.840.113619.2.176.2025.1499492.7391.1171285944.394",
            "1.2.840.113619.2.176.2025.1499492.7040.1171286242.109",
        );
        assert_eq!(ids.instance, "66a662ce-7430e543-bad44d47-0dc5a943-ec7a538d");
        assert_eq!(ids.series, "f2635388-f01d497a-15f7c06b-ad7dba06-c4c599fe");
        assert_eq!(ids.study, "b9c08539-26f93bde-c81ab0d7-bffaf2cb-a4d0bdd0");
        assert_eq!(ids.patient, "6816cb19-844d5aee-85245eba-28e841e6-2414fae2");
    }

    #[test]
    fn padding_is_stripped_at_the_end_only() {
        let padded = ResourceIds::derive("ID ", "1.2\0", "3.4 ", "5.6\0");
        let plain = ResourceIds::derive("ID", "1.2", "3.4", "5.6");
        assert_eq!(padded, plain);
        let leading = ResourceIds::derive(" ID", "1.2", "3.4", "5.6");
        assert_ne!(leading.patient, plain.patient);
    }

    #[test]
    fn missing_patient_id_hashes_the_empty_string() {
        // SHA-1("") = da39a3ee5e6b4b0d3255bfef95601890afd80709
        let ids = ResourceIds::derive("", "1", "2", "3");
        assert_eq!(ids.patient, "da39a3ee-5e6b4b0d-3255bfef-95601890-afd80709");
    }
}
