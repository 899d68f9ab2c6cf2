# Storage: the deployment's encryption key, the bucket of DICOM files (SSE-KMS, versioned,
# private, TLS only), its access-log bucket (SSE-S3: S3 access logging supports no KMS target),
# and what Terraform puts in the bucket for the servers (the binary, a provided certificate).

resource "aws_kms_key" "main" {
  description             = "${var.name}: DICOM files, database, its credentials secret, logs"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # The account's IAM policies decide who uses the key (the servers' role, admins).
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncrypt"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = [
              "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/${var.name}/*",
              "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/rds/instance/${var.name}/*",
            ]
          }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}

# --- The bucket of DICOM files ----------------------------------------------------------------

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_144: Cross-region replication doubles storage cost and needs a second region's key; versioning and RDS backups cover mistakes. Add a replication rule where a second copy is required.
  #checkov:skip=CKV2_AWS_62: Nothing consumes bucket events: the index is written by the servers themselves.
  bucket        = local.data_bucket_name
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    id     = "noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

resource "aws_s3_bucket_logging" "data" {
  bucket        = aws_s3_bucket.data.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3-access/"

  # S3 checks the target's policy when logging is turned on.
  depends_on = [aws_s3_bucket_policy.logs]
}

resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [local.deny_insecure_transport.data]
  })

  depends_on = [aws_s3_bucket_public_access_block.data]
}

locals {
  # For each bucket: refuse any request that does not come over TLS.
  deny_insecure_transport = {
    for name, arn in { data = aws_s3_bucket.data.arn, logs = aws_s3_bucket.logs.arn } :
    name => {
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = { AWS = "*" }
      Action    = "s3:*"
      Resource  = [arn, "${arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }
  }
}

# --- The access-log bucket --------------------------------------------------------------------

resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18: This is the access-log target; logging it into itself would loop.
  #checkov:skip=CKV_AWS_144: Access logs are not replicated to a second region.
  #checkov:skip=CKV_AWS_145: S3 server access logging delivers only to SSE-S3 buckets, not SSE-KMS.
  #checkov:skip=CKV2_AWS_62: Nothing consumes events of the log bucket.
  bucket        = local.log_bucket_name
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.access_log_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.logs]
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "S3ServerAccessLogs"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.logs.arn}/s3-access/*"
        Condition = {
          ArnLike      = { "aws:SourceArn" = aws_s3_bucket.data.arn }
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
      local.deny_insecure_transport.logs,
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.logs]
}

# --- What Terraform hands the servers through the bucket --------------------------------------

locals {
  binary_sha256 = var.orthweb_binary_path != "" ? filesha256(var.orthweb_binary_path) : var.orthweb_binary_sha256
  # A new binary is a new key, hence new user data and a rolling replacement of the servers.
  binary_s3_key = var.orthweb_binary_path != "" ? "release/orthweb-${local.binary_sha256}" : ""
  tls_provided  = var.tls_cert_path != ""
}

resource "aws_s3_object" "binary" {
  count = var.orthweb_binary_path != "" ? 1 : 0

  bucket      = aws_s3_bucket.data.id
  key         = local.binary_s3_key
  source      = var.orthweb_binary_path
  source_hash = local.binary_sha256

  depends_on = [aws_s3_bucket_server_side_encryption_configuration.data, aws_s3_bucket_policy.data]
}

# A provided certificate: `source` keeps the files' content (the private key) out of the state.
resource "aws_s3_object" "tls_cert" {
  count = local.tls_provided ? 1 : 0

  bucket      = aws_s3_bucket.data.id
  key         = "tls/provided/site.crt"
  source      = var.tls_cert_path
  source_hash = filesha256(var.tls_cert_path)

  depends_on = [aws_s3_bucket_server_side_encryption_configuration.data, aws_s3_bucket_policy.data]
}

resource "aws_s3_object" "tls_key" {
  count = local.tls_provided ? 1 : 0

  bucket      = aws_s3_bucket.data.id
  key         = "tls/provided/site.key"
  source      = var.tls_key_path
  source_hash = filesha256(var.tls_key_path)

  depends_on = [aws_s3_bucket_server_side_encryption_configuration.data, aws_s3_bucket_policy.data]
}
