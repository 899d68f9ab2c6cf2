# Inputs. Only the two client address lists and the binary have no default: who may reach the
# archive, and what it runs, are choices to make knowingly.

# --- Where and what ---------------------------------------------------------------------------

variable "aws_region" {
  description = "AWS region to deploy in."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.aws_region))
    error_message = "aws_region must be a region name such as us-east-1 or eu-west-3."
  }
}

variable "name" {
  description = "Name of this deployment: prefixes every resource (buckets, database, load balancer)."
  type        = string
  default     = "orthweb"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3 to 20 characters: lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# --- Who may connect --------------------------------------------------------------------------

variable "https_allowed_cidrs" {
  description = "IPv4 ranges allowed to reach the web UI and REST API (TCP 443), e.g. [\"203.0.113.0/24\"]."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.https_allowed_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "https_allowed_cidrs must hold IPv4 CIDR blocks such as 203.0.113.0/24."
  }
}

variable "dicom_allowed_cidrs" {
  description = "IPv4 ranges allowed to send and query over DICOM TLS (TCP 11112): the modalities' and workstations' networks."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.dicom_allowed_cidrs : can(cidrhost(c, 0)) && !strcontains(c, ":")])
    error_message = "dicom_allowed_cidrs must hold IPv4 CIDR blocks such as 198.51.100.0/24."
  }
}

# --- Network ----------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "Address range of the VPC (a /16 to /24); public and private subnets are carved from it."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && !strcontains(var.vpc_cidr, ":") && try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 24, false)
    error_message = "vpc_cidr must be an IPv4 CIDR block from /16 to /24."
  }
}

variable "az_count" {
  description = "Availability zones to spread subnets, servers and (with db_multi_az) the database over."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4 && floor(var.az_count) == var.az_count
    error_message = "az_count must be 2, 3 or 4: RDS and the load balancer need two zones at least."
  }
}

variable "nat_gateway_per_az" {
  description = "One NAT gateway in each zone (true) or a single one for all (false, cheaper). The servers use it only at boot, to fetch packages and the RDS CA bundle."
  type        = bool
  default     = false
}

variable "interface_endpoints" {
  description = "Reach Secrets Manager, Session Manager and CloudWatch Logs through interface endpoints in the private subnets (about $15 a month per service and zone); false sends that traffic through the NAT gateway."
  type        = bool
  default     = true
}

# --- Servers ----------------------------------------------------------------------------------

variable "instance_count" {
  description = "Orthweb servers behind the load balancer, spread over the zones. Two or more for availability."
  type        = number
  default     = 2

  validation {
    condition     = var.instance_count >= 1 && var.instance_count <= 10 && floor(var.instance_count) == var.instance_count
    error_message = "instance_count must be a whole number from 1 to 10."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the servers (x86_64 unless ami_ssm_parameter names an arm64 image)."
  type        = string
  default     = "t3.medium"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like t3.medium."
  }
}

variable "ami_ssm_parameter" {
  description = "Public SSM parameter naming the Amazon Linux 2023 image to boot."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"

  validation {
    condition     = startswith(var.ami_ssm_parameter, "/aws/service/")
    error_message = "ami_ssm_parameter must be a public AWS parameter (/aws/service/...)."
  }
}

variable "root_volume_gb" {
  description = "Size of each server's encrypted root volume (system, binary, and the spool of instances being received), in GiB."
  type        = number
  default     = 30

  validation {
    condition     = var.root_volume_gb >= 10 && var.root_volume_gb <= 1000
    error_message = "root_volume_gb must be between 10 and 1000."
  }
}

variable "orthweb_binary_path" {
  description = "Local path of the orthweb binary to deploy (a stripped release build for Linux x86_64, glibc 2.34 or older); Terraform uploads it to the bucket. Leave empty to use orthweb_binary_url."
  type        = string
  default     = ""

  validation {
    condition     = var.orthweb_binary_path == "" ? true : fileexists(var.orthweb_binary_path)
    error_message = "orthweb_binary_path names no file; build one with `cargo build --release` and strip it."
  }
}

variable "orthweb_binary_url" {
  description = "HTTPS URL the servers download the orthweb binary from, instead of orthweb_binary_path. Needs orthweb_binary_sha256."
  type        = string
  default     = ""

  validation {
    condition     = var.orthweb_binary_url == "" || startswith(var.orthweb_binary_url, "https://")
    error_message = "orthweb_binary_url must be an https:// URL."
  }
  validation {
    condition     = (var.orthweb_binary_url == "") != (var.orthweb_binary_path == "")
    error_message = "Set exactly one of orthweb_binary_path and orthweb_binary_url."
  }
}

variable "orthweb_binary_sha256" {
  description = "SHA-256 (hex) of the file at orthweb_binary_url; the servers refuse a download that does not match."
  type        = string
  default     = ""

  validation {
    condition     = var.orthweb_binary_sha256 == "" || can(regex("^[0-9a-f]{64}$", var.orthweb_binary_sha256))
    error_message = "orthweb_binary_sha256 must be 64 lower-case hex digits."
  }
  validation {
    condition     = var.orthweb_binary_url == "" || var.orthweb_binary_sha256 != ""
    error_message = "orthweb_binary_url needs orthweb_binary_sha256."
  }
}

# --- Site and TLS -----------------------------------------------------------------------------

variable "site_name" {
  description = "DNS name clients use (a CNAME to the load balancer that you create). Empty: the load balancer's own DNS name."
  type        = string
  default     = ""

  validation {
    condition     = var.site_name == "" || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.site_name))
    error_message = "site_name must be a lower-case DNS name such as pacs.example.org."
  }
}

variable "tls_cert_path" {
  description = "Local PEM certificate chain for site_name (with tls_key_path). Empty: the servers share one self-signed certificate made at first boot."
  type        = string
  default     = ""

  validation {
    condition     = var.tls_cert_path == "" ? true : fileexists(var.tls_cert_path)
    error_message = "tls_cert_path names no file."
  }
}

variable "tls_key_path" {
  description = "Local PEM private key of tls_cert_path. Uploaded to the bucket (KMS-encrypted); its content never enters the Terraform state."
  type        = string
  default     = ""

  validation {
    condition     = var.tls_key_path == "" ? true : fileexists(var.tls_key_path)
    error_message = "tls_key_path names no file."
  }
  validation {
    condition     = (var.tls_key_path == "") == (var.tls_cert_path == "")
    error_message = "Set both tls_cert_path and tls_key_path, or neither."
  }
}

# --- Storage ----------------------------------------------------------------------------------

variable "s3_prefix" {
  description = "Folder of the bucket that holds the DICOM files."
  type        = string
  default     = "dicom"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.s3_prefix)) && !contains(["release", "tls"], var.s3_prefix)
    error_message = "s3_prefix must be 1 to 31 lower-case letters, digits or dashes, and neither release nor tls."
  }
}

variable "noncurrent_version_days" {
  description = "Days a deleted or replaced DICOM file stays recoverable (S3 noncurrent versions) before it is removed for good."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_days >= 1 && var.noncurrent_version_days <= 3650
    error_message = "noncurrent_version_days must be between 1 and 3650."
  }
}

variable "access_log_days" {
  description = "Days the S3 access logs are kept in the log bucket."
  type        = number
  default     = 365

  validation {
    condition     = var.access_log_days >= 1 && var.access_log_days <= 3650
    error_message = "access_log_days must be between 1 and 3650."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the server logs and VPC flow logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention value (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "kms_deletion_window_days" {
  description = "Days a scheduled deletion of the encryption key can still be cancelled after terraform destroy."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

# --- Database ---------------------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class of the index database."
  type        = string
  default     = "db.t4g.small"

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS class such as db.t4g.small."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL major version (RDS applies minor upgrades in the maintenance window)."
  type        = string
  default     = "16"

  validation {
    condition     = contains(["14", "15", "16", "17"], var.db_engine_version)
    error_message = "db_engine_version must be 14, 15, 16 or 17."
  }
}

variable "db_allocated_storage_gb" {
  description = "Initial storage of the database, in GiB (it grows by itself up to db_max_allocated_storage_gb)."
  type        = number
  default     = 20

  validation {
    condition     = var.db_allocated_storage_gb >= 20 && var.db_allocated_storage_gb <= 65536
    error_message = "db_allocated_storage_gb must be between 20 and 65536."
  }
}

variable "db_max_allocated_storage_gb" {
  description = "Ceiling for the database's storage autoscaling, in GiB."
  type        = number
  default     = 200

  validation {
    condition     = var.db_max_allocated_storage_gb >= var.db_allocated_storage_gb && var.db_max_allocated_storage_gb <= 65536
    error_message = "db_max_allocated_storage_gb must be at least db_allocated_storage_gb, and at most 65536."
  }
}

variable "db_multi_az" {
  description = "A standby database in a second zone with automatic failover (doubles the database cost). Recommended for production."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Days of automated database backups (point-in-time recovery)."
  type        = number
  default     = 7

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "db_name" {
  description = "Name of the index database."
  type        = string
  default     = "orthweb"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_name)) && !contains(["postgres", "template0", "template1", "rdsadmin"], var.db_name)
    error_message = "db_name must be a lower-case identifier (letters, digits, _), not a reserved database."
  }
}

variable "db_username" {
  description = "Master user of the database; its password is generated and rotated by RDS in Secrets Manager."
  type        = string
  default     = "orthweb"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,15}$", var.db_username)) && !contains(["postgres", "admin", "rdsadmin", "root"], var.db_username)
    error_message = "db_username must be a lower-case identifier of 1 to 16 characters, not a reserved name."
  }
}

variable "db_performance_insights" {
  description = "RDS Performance Insights (encrypted with the deployment's key). Not offered on every small instance class."
  type        = bool
  default     = false
}

# --- Safety switches --------------------------------------------------------------------------

variable "deletion_protection" {
  description = "Refuse to delete the database and the load balancer. Set to false (and apply) before terraform destroy."
  type        = bool
  default     = true
}

variable "db_skip_final_snapshot" {
  description = "Delete the database on destroy without a final snapshot."
  type        = bool
  default     = false
}

variable "force_destroy" {
  description = "Let terraform destroy delete the buckets with everything in them, DICOM files included."
  type        = bool
  default     = false
}
