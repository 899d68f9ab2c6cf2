//! A small, deliberately unforgiving DICOM client for fault tests, on dicom-ul's *sync*
//! association API: it sends hand-made command sets and data PDVs (arbitrary bytes, truncated
//! data sets, unknown commands) and reads the response command set back.
//!
//! Everything here blocks: call it from `tokio::task::spawn_blocking` (see [`blocking`]).

use std::io;
use std::net::TcpStream;
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use dicom_ul::association::client::{ClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{
    AbortRQSource, PDataValue, PDataValueType, Pdu, PresentationContextResultReason, write_pdu,
};

pub const VERIFICATION: &str = "1.2.840.10008.1.1";
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";

/// Command Field values.
pub const C_STORE_RQ: u16 = 0x0001;
pub const C_FIND_RQ: u16 = 0x0020;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_CANCEL_RQ: u16 = 0x0FFF;
/// Command Data Set Type: no data set follows.
pub const NO_DATA_SET: u16 = 0x0101;
/// Command Data Set Type: a data set follows (any other value means the same).
pub const HAS_DATA_SET: u16 = 0x0000;

/// Bytes of data-set payload per PDV (and per P-DATA-TF PDU): well under any max PDU length.
const CHUNK: usize = 16 * 1024;

/// Runs blocking client code on the blocking pool, propagating its panics.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task failed: {e}"),
    }
}

/// The parts of a response command set a test asserts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub command_field: u16,
    pub message_id_responded_to: u16,
    pub status: u16,
    pub affected_sop_instance_uid: Option<String>,
    pub error_comment: Option<String>,
}

/// An established association.
pub struct Scu {
    association: ClientAssociation<TcpStream>,
    next_message_id: u16,
}

impl Scu {
    /// Associates with `127.0.0.1:port`, proposing each `(abstract syntax, transfer syntaxes)`.
    pub fn connect(
        port: u16,
        calling: &str,
        called: &str,
        contexts: &[(&str, &[&str])],
    ) -> Result<Scu, dicom_ul::association::Error> {
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(calling.to_string())
            .called_ae_title(called.to_string())
            .max_pdu_length(64 * 1024)
            .read_timeout(Duration::from_secs(60))
            .write_timeout(Duration::from_secs(60))
            .connection_timeout(Duration::from_secs(10));
        for (abstract_syntax, syntaxes) in contexts {
            options = options.with_presentation_context(
                abstract_syntax.to_string(),
                syntaxes.iter().map(|s| s.to_string()).collect(),
            );
        }
        let mut association = options.establish(("127.0.0.1", port))?;
        // Without it, each request after the first waits out the server's delayed ACK.
        let _ = association.inner_stream().set_nodelay(true);
        Ok(Scu {
            association,
            next_message_id: 1,
        })
    }

    /// Verification + CT Image Storage (Explicit VR LE), as `TESTSCU` → `ORTHWEB`.
    pub fn connect_default(port: u16) -> Scu {
        Scu::connect(
            port,
            "TESTSCU",
            "ORTHWEB",
            &[
                (VERIFICATION, &[IMPLICIT_LE]),
                (CT_IMAGE_STORAGE, &[EXPLICIT_LE]),
            ],
        )
        .expect("association accepted")
    }

    /// The transfer syntaxes of the accepted presentation contexts, in proposal order.
    pub fn accepted_transfer_syntaxes(&self) -> Vec<String> {
        self.association
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
            .map(|pc| pc.transfer_syntax.trim_end_matches('\0').to_string())
            .collect()
    }

    /// The id of the accepted presentation context for `abstract_syntax`.
    pub fn context_id(&self, abstract_syntax: &str) -> u8 {
        self.association
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.reason == PresentationContextResultReason::Acceptance
                    && pc.abstract_syntax.trim_end_matches('\0') == abstract_syntax
            })
            .unwrap_or_else(|| {
                panic!(
                    "no accepted context for {abstract_syntax}: {:?}",
                    self.association.presentation_contexts()
                )
            })
            .id
    }

    /// A fresh Message ID.
    pub fn message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        id
    }

    /// Sends an encoded command set as one PDV.
    pub fn send_command(&mut self, context_id: u8, command: &[u8]) -> io::Result<()> {
        self.send_pdvs(context_id, true, command, true)
    }

    /// Sends data-set bytes as PDVs of at most 16 KiB; `last` marks the final fragment.
    pub fn send_data(&mut self, context_id: u8, bytes: &[u8], last: bool) -> io::Result<()> {
        self.send_pdvs(context_id, false, bytes, last)
    }

    /// Sends `bytes` as command (`command`) or data PDVs of at most 16 KiB, one per P-DATA-TF;
    /// `last` marks the final fragment.
    pub fn send_pdvs(
        &mut self,
        context_id: u8,
        command: bool,
        bytes: &[u8],
        last: bool,
    ) -> io::Result<()> {
        let value_type = if command {
            PDataValueType::Command
        } else {
            PDataValueType::Data
        };
        let chunks: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[][..]]
        } else {
            bytes.chunks(CHUNK).collect()
        };
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let pdu = Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context_id,
                    value_type: value_type.clone(),
                    is_last: last && i + 1 == n,
                    data: chunk.to_vec(),
                }],
            };
            self.association.send(&pdu).map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// Reads PDUs until a complete command set arrives and decodes it.
    pub fn receive_response(&mut self) -> io::Result<Response> {
        let mut command = Vec::new();
        loop {
            match self.association.receive().map_err(io::Error::other)? {
                Pdu::PData { data } => {
                    for pdv in data {
                        if pdv.value_type != PDataValueType::Command {
                            return Err(io::Error::other("unexpected data PDV in a response"));
                        }
                        command.extend_from_slice(&pdv.data);
                        if pdv.is_last {
                            return decode_response(&command);
                        }
                    }
                }
                other => {
                    return Err(io::Error::other(format!(
                        "expected a response, got {other:?}"
                    )));
                }
            }
        }
    }

    /// Reads responses to an operation with pending responses (C-FIND) until its final one:
    /// each response's command, with the data set that followed it, if any.
    pub fn receive_until_final(&mut self) -> io::Result<Vec<(Response, Vec<u8>)>> {
        let mut responses: Vec<(Response, Vec<u8>)> = Vec::new();
        let mut command = Vec::new();
        loop {
            let Pdu::PData { data } = self.association.receive().map_err(io::Error::other)? else {
                return Err(io::Error::other("expected P-DATA"));
            };
            for pdv in data {
                if pdv.value_type == PDataValueType::Data {
                    let (_, data_set) = responses
                        .last_mut()
                        .ok_or_else(|| io::Error::other("a data set before any response"))?;
                    data_set.extend_from_slice(&pdv.data);
                    continue;
                }
                command.extend_from_slice(&pdv.data);
                if pdv.is_last {
                    let response = decode_response(&std::mem::take(&mut command))?;
                    let pending = matches!(response.status, 0xFF00 | 0xFF01);
                    responses.push((response, Vec::new()));
                    if !pending {
                        return Ok(responses);
                    }
                }
            }
        }
    }

    /// C-STORE-RQ (announcing `sop_class` / `sop_instance`) followed by `dataset` as sent on the
    /// first accepted context for `sop_class`; returns the response.
    pub fn store(
        &mut self,
        sop_class: &str,
        sop_instance: &str,
        dataset: &[u8],
    ) -> io::Result<Response> {
        let context = self.context_id(sop_class);
        let id = self.message_id();
        self.send_command(context, &store_rq(id, sop_class, sop_instance))?;
        self.send_data(context, dataset, true)?;
        let response = self.receive_response()?;
        assert_eq!(response.message_id_responded_to, id, "{response:?}");
        assert_eq!(response.command_field, 0x8001, "{response:?}");
        Ok(response)
    }

    /// C-ECHO-RQ on the Verification context; returns the response.
    pub fn echo(&mut self) -> io::Result<Response> {
        let context = self.context_id(VERIFICATION);
        let id = self.message_id();
        self.send_command(context, &echo_rq(id))?;
        let response = self.receive_response()?;
        assert_eq!(response.message_id_responded_to, id, "{response:?}");
        Ok(response)
    }

    /// The largest PDU the peer takes (0: no limit announced).
    pub fn peer_max_pdu_length(&self) -> u32 {
        self.association.acceptor_max_pdu_length()
    }

    /// Sends the last fragment of a request's data set and a C-CANCEL for `message_id` in one
    /// socket write, so the cancel is already waiting when the server starts answering.
    pub fn send_data_and_cancel(
        &mut self,
        context_id: u8,
        data: &[u8],
        message_id: u16,
    ) -> io::Result<()> {
        assert!(
            data.len() <= CHUNK,
            "one PDV: the data set must fit one fragment"
        );
        let mut bytes = Vec::new();
        for (value_type, data) in [
            (PDataValueType::Data, data.to_vec()),
            (PDataValueType::Command, cancel_rq(message_id)),
        ] {
            let pdu = Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context_id,
                    value_type,
                    is_last: true,
                    data,
                }],
            };
            write_pdu(&mut bytes, &pdu).map_err(io::Error::other)?;
        }
        self.write_raw(&bytes)
    }

    /// Writes bytes already framed as PDUs straight to the socket.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        self.association.inner_stream().write_all(bytes)
    }

    /// The next PDU from the server, whatever it is.
    pub fn receive_pdu(&mut self) -> Result<Pdu, dicom_ul::association::Error> {
        self.association.receive()
    }

    /// Waits for the server to end the association: an A-ABORT, or the connection closing.
    /// Panics if anything else arrives.
    pub fn expect_abort(mut self) {
        match self.association.receive() {
            Ok(Pdu::AbortRQ { .. }) | Err(_) => {}
            Ok(other) => panic!("expected the association to be aborted, got {other:?}"),
        }
    }

    /// A-RELEASE-RQ, waiting for A-RELEASE-RP.
    pub fn release(self) -> Result<(), dicom_ul::association::Error> {
        self.association.release()
    }

    /// A-ABORT (service user), then close.
    pub fn abort(mut self) -> io::Result<()> {
        self.association
            .send(&Pdu::AbortRQ {
                source: AbortRQSource::ServiceUser,
            })
            .map_err(io::Error::other)?;
        self.association
            .inner_stream()
            .shutdown(std::net::Shutdown::Both)
    }

    /// Drops the TCP connection without any DICOM goodbye.
    pub fn drop_connection(mut self) {
        let _ = self
            .association
            .inner_stream()
            .shutdown(std::net::Shutdown::Both);
    }
}

fn element(tag: Tag, vr: VR, value: PrimitiveValue) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, value)
}

/// UIDs are padded to even length with a NUL.
fn uid_value(uid: &str) -> PrimitiveValue {
    let mut uid = uid.to_string();
    if uid.len() % 2 == 1 {
        uid.push('\0');
    }
    PrimitiveValue::from(uid)
}

/// A request command set: Affected SOP Class UID (if any), Command Field, Message ID, Priority
/// (for C-STORE/C-FIND), Command Data Set Type, Affected SOP Instance UID (if any).
pub fn request(
    field: u16,
    message_id: u16,
    sop_class: Option<&str>,
    sop_instance: Option<&str>,
    data_set_type: u16,
) -> InMemDicomObject {
    let mut object = InMemDicomObject::new_empty();
    if let Some(class) = sop_class {
        object.put(element(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            uid_value(class),
        ));
    }
    object.put(element(
        tags::COMMAND_FIELD,
        VR::US,
        PrimitiveValue::from(field),
    ));
    object.put(element(
        tags::MESSAGE_ID,
        VR::US,
        PrimitiveValue::from(message_id),
    ));
    if field != C_ECHO_RQ {
        object.put(element(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)));
    }
    object.put(element(
        tags::COMMAND_DATA_SET_TYPE,
        VR::US,
        PrimitiveValue::from(data_set_type),
    ));
    if let Some(instance) = sop_instance {
        object.put(element(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            uid_value(instance),
        ));
    }
    object
}

/// C-CANCEL-RQ for the request `message_id`.
pub fn cancel_rq(message_id: u16) -> Vec<u8> {
    encode_command(&InMemDicomObject::from_element_iter([
        element(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(C_CANCEL_RQ),
        ),
        element(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(message_id),
        ),
        element(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(NO_DATA_SET),
        ),
    ]))
}

/// Encodes a command set in Implicit VR Little Endian behind its (0000,0000) group length.
pub fn encode_command(object: &InMemDicomObject) -> Vec<u8> {
    let mut body = Vec::new();
    object
        .write_dataset_with_ts(&mut body, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("encode a command set");
    let mut bytes = vec![0, 0, 0, 0, 4, 0, 0, 0];
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

pub fn store_rq(message_id: u16, sop_class: &str, sop_instance: &str) -> Vec<u8> {
    encode_command(&request(
        C_STORE_RQ,
        message_id,
        Some(sop_class),
        Some(sop_instance),
        HAS_DATA_SET,
    ))
}

pub fn echo_rq(message_id: u16) -> Vec<u8> {
    encode_command(&request(
        C_ECHO_RQ,
        message_id,
        Some(VERIFICATION),
        None,
        NO_DATA_SET,
    ))
}

fn decode_response(bytes: &[u8]) -> io::Result<Response> {
    let object = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(io::Error::other)?;
    let uint = |tag| -> io::Result<u16> {
        object
            .get(tag)
            .ok_or_else(|| io::Error::other(format!("response has no {tag}")))?
            .to_int::<u16>()
            .map_err(io::Error::other)
    };
    let text = |tag| {
        object
            .get(tag)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
    };
    Ok(Response {
        command_field: uint(tags::COMMAND_FIELD)?,
        message_id_responded_to: uint(tags::MESSAGE_ID_BEING_RESPONDED_TO)?,
        status: uint(tags::STATUS)?,
        affected_sop_instance_uid: text(tags::AFFECTED_SOP_INSTANCE_UID),
        error_comment: text(tags::ERROR_COMMENT),
    })
}

/// Encodes a data set in Explicit VR Little Endian (what the default contexts carry).
pub fn encode_explicit_le(object: &InMemDicomObject) -> Vec<u8> {
    let mut bytes = Vec::new();
    object
        .write_dataset_with_ts(&mut bytes, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("encode a data set");
    bytes
}
