//! What the SCP negotiates: abstract syntaxes (Verification and storage SOP classes), the
//! transfer syntaxes we keep as sent, and the SCP role a C-GET requester asks for.

use dicom_dictionary_std::uids;

pub const VERIFICATION: &str = uids::VERIFICATION;

/// Transfer syntaxes accepted as offered; the file is stored in the syntax it came in.
pub const TRANSFER_SYNTAXES: &[&str] = &[
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    // Explicit VR Big Endian: retired, but old modalities still send it.
    "1.2.840.10008.1.2.2",
    uids::JPEG_BASELINE8_BIT,
    uids::JPEG_EXTENDED12_BIT,
    uids::JPEG_LOSSLESS,
    uids::JPEG_LOSSLESS_SV1,
    uids::JPEGLS_LOSSLESS,
    uids::JPEGLS_NEAR_LOSSLESS,
    uids::JPEG2000_LOSSLESS,
    uids::JPEG2000,
    uids::JPEG2000MC_LOSSLESS,
    uids::JPEG2000MC,
    uids::HTJ2K_LOSSLESS,
    uids::HTJ2K_LOSSLESS_RPCL,
    uids::HTJ2K,
    uids::RLE_LOSSLESS,
    uids::MPEG2MPML,
    uids::MPEG2MPHL,
    uids::MPEG4HP41,
    uids::MPEG4HP41BD,
    uids::HEVCMP51,
    uids::HEVCM10P51,
];

/// Whether `uid` is a standard storage SOP class (used when unknown SOP classes are refused).
pub fn is_standard_storage_class(uid: &str) -> bool {
    use dicom_core::dictionary::UidDictionary;
    dicom_dictionary_std::StandardSopClassDictionary
        .by_uid(uid)
        .is_some_and(|entry| {
            entry.name.contains("Storage")
                && !entry.name.contains("Commitment")
                && !entry.name.contains("Media Storage Directory")
        })
}

/// Role selection (PS3.7 D.3.3.4): a C-GET requester takes the SCP role for the storage
/// classes it wants to receive; we grant whatever roles it asks for on storage classes (it
/// only ever receives what it asked for), and answer nothing for other classes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Roles;

impl dicom_ul::association::server::Negotiation for Roles {
    fn negotiate_roles(
        &self,
        sop_class_uid: &str,
        scu_role: bool,
        scp_role: bool,
    ) -> Option<dicom_ul::pdu::RequestorRoles> {
        let class = sop_class_uid.trim_end_matches(['\0', ' ']);
        (is_standard_storage_class(class) || !class.starts_with("1.2.840.10008.")).then_some(
            dicom_ul::pdu::RequestorRoles {
                scu: scu_role,
                scp: scp_role,
            },
        )
    }
}
