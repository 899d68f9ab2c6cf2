//! The AWS SDK's shared configuration, for every AWS client the server has (S3, Secrets
//! Manager): credentials and region from the standard chain (environment, profile, the EC2
//! instance role through IMDSv2), `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_<SERVICE>`) for an
//! S3-compatible server or an emulator, and HTTPS through rustls on ring.

use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

/// Loads the configuration once per client; cheap next to the first request it makes.
pub async fn sdk_config() -> aws_config::SdkConfig {
    // rustls with ring: the same crypto the rest of the server uses, and no C toolchain
    // beyond what ring needs.
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}
