//! Blob store in an S3 bucket (or any S3-compatible server): `<prefix>/<key>`.
//!
//! Credentials and region come from the standard AWS chain (environment, profile, EC2 instance
//! role); `AWS_ENDPOINT_URL` points the client at an S3-compatible server.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::ResponseChecksumValidation;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use futures::StreamExt;

use super::{BlobPages, BlobReader, BlobStore, BlobStream, ListedBlob, QUARANTINE, StorageError};

/// S3 settings beyond the URL.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// "" (bucket default), "AES256" or "aws:kms".
    pub sse: String,
    pub kms_key_id: String,
    /// Objects above this size are uploaded in parts of this size.
    pub multipart_bytes: u64,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most S3-compatible servers.
    pub path_style: bool,
}

pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    options: S3Options,
}

fn s3_error(e: impl std::error::Error) -> StorageError {
    StorageError::S3(DisplayErrorContext(e).to_string())
}

impl S3Store {
    pub async fn connect(
        bucket: &str,
        prefix: &str,
        options: S3Options,
    ) -> Result<Self, StorageError> {
        let shared = crate::aws::sdk_config().await;
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(options.path_style)
            .build();
        Ok(S3Store {
            client: Client::from_conf(config),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            options,
        })
    }

    fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.folder())
    }

    /// `prefix/`, or nothing without a prefix: what every blob's object key starts with.
    fn folder(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    async fn get_object(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        verify_checksum: bool,
    ) -> Result<(ByteStream, u64), StorageError> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end.saturating_sub(1))))
            .customize();
        if !verify_checksum {
            request = request.config_override(
                aws_sdk_s3::config::Builder::default()
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired),
            );
        }
        let output = request
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(service) if service.is_no_such_key() => StorageError::NotFound(key.into()),
                _ => s3_error(e),
            })?;
        let size = output.content_length().unwrap_or(0).max(0) as u64;
        Ok((output.body, size))
    }

    fn sse(&self) -> Option<ServerSideEncryption> {
        (!self.options.sse.is_empty())
            .then(|| ServerSideEncryption::from(self.options.sse.as_str()))
    }

    fn kms_key(&self) -> Option<String> {
        (!self.options.kms_key_id.is_empty()).then(|| self.options.kms_key_id.clone())
    }

    async fn put_single(&self, object: &str, body: ByteStream) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(object)
            .content_type("application/dicom")
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.kms_key())
            .body(body)
            .send()
            .await
            .map_err(s3_error)?;
        Ok(())
    }

    /// Uploads in parts read straight from the file, so memory stays at one part at most.
    async fn put_multipart(
        &self,
        object: &str,
        local: &Path,
        size: u64,
    ) -> Result<(), StorageError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(object)
            .content_type("application/dicom")
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.kms_key())
            .send()
            .await
            .map_err(s3_error)?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| StorageError::S3("no upload id in CreateMultipartUpload".into()))?
            .to_string();
        let result = self.upload_parts(object, &upload_id, local, size).await;
        if result.is_err() {
            // Leave no half upload behind (it would be billed until a lifecycle rule ends it).
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(object)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(
        &self,
        object: &str,
        upload_id: &str,
        local: &Path,
        size: u64,
    ) -> Result<(), StorageError> {
        let part_size = self.options.multipart_bytes.max(5 * 1024 * 1024);
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        while offset < size {
            let length = part_size.min(size - offset);
            let body = ByteStream::read_from()
                .path(local)
                .offset(offset)
                .length(Length::Exact(length))
                .build()
                .await
                .map_err(s3_error)?;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(object)
                .upload_id(upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(s3_error)?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(part.e_tag().map(str::to_string))
                    .part_number(number)
                    .build(),
            );
            offset += length;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(object)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(s3_error)?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put_file(&self, key: &str, local: &Path, size: u64) -> Result<(), StorageError> {
        let object = self.object_key(key);
        if size > self.options.multipart_bytes {
            self.put_multipart(&object, local, size).await
        } else {
            self.put_single(
                &object,
                ByteStream::from_path(local).await.map_err(s3_error)?,
            )
            .await
        }
    }

    async fn put_pieces(&self, key: &str, pieces: Arc<Vec<Vec<u8>>>) -> Result<(), StorageError> {
        // One PUT of at most a write batch (a MiB), below any multipart threshold.
        let body = ByteStream::from(pieces.concat());
        self.put_single(&self.object_key(key), body).await
    }

    async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<(BlobReader, u64), StorageError> {
        let (body, size) = self.get_object(key, range, true).await?;
        Ok((Box::pin(body.into_async_read()), size))
    }

    async fn get_unverified(&self, key: &str) -> Result<(BlobReader, u64), StorageError> {
        let (body, size) = self.get_object(key, None, false).await?;
        Ok((Box::pin(body.into_async_read()), size))
    }

    async fn stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<(BlobStream, u64), StorageError> {
        let (body, length) = self.get_object(key, range, true).await?;
        // The HTTP client's own chunks, handed on as they arrive: no copy into a read buffer.
        let chunks = futures::stream::unfold(body, |mut body| async move {
            let chunk = body.next().await?;
            Some((chunk.map_err(std::io::Error::other), body))
        });
        Ok((Box::pin(chunks), length))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
            .map_err(s3_error)?;
        Ok(())
    }

    fn list(&self) -> BlobPages<'_> {
        let folder = self.folder();
        // The delimiter keeps `quarantine/` (a common prefix) out of the listing.
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&folder)
            .delimiter("/")
            .into_paginator()
            .send();
        futures::stream::unfold((pages, folder), |(mut pages, folder)| async move {
            let page = pages.next().await?.map_err(s3_error).map(|page| {
                page.contents()
                    .iter()
                    .filter_map(|object| {
                        let key = object.key()?.strip_prefix(folder.as_str())?;
                        let modified = object.last_modified()?;
                        Some(ListedBlob {
                            key: key.to_string(),
                            size: object.size().unwrap_or(0).max(0) as u64,
                            modified: std::time::SystemTime::try_from(*modified).ok()?,
                        })
                    })
                    .collect()
            });
            Some((page, (pages, folder)))
        })
        .boxed()
    }

    async fn quarantine(&self, key: &str) -> Result<(), StorageError> {
        // S3 cannot rename: a server-side copy, then the original goes.
        let source = format!("{}/{}", self.bucket, self.object_key(key));
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.object_key(&format!("{QUARANTINE}/{key}")))
            .copy_source(encode_copy_source(&source))
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.kms_key())
            .send()
            .await
            .map_err(|e| {
                // CopyObject names no NoSuchKey error; a missing source is a 404.
                if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) {
                    StorageError::NotFound(key.into())
                } else {
                    s3_error(e)
                }
            })?;
        self.delete(key).await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(s3_error)?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// `x-amz-copy-source` is `bucket/key`, URL-encoded except for its slashes.
fn encode_copy_source(source: &str) -> String {
    let mut encoded = String::with_capacity(source.len());
    for byte in source.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
