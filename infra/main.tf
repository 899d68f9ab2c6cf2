# What every file shares: the account, the region, the zones, and names derived from them.

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394: Only the first az_count zones in name order are used (local.azs); a zone AWS adds later does not change them.
  state = "available"

  lifecycle {
    postcondition {
      condition     = length(self.names) >= var.az_count
      error_message = "The region has fewer available zones than az_count."
    }
  }
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  azs        = slice(data.aws_availability_zones.available.names, 0, var.az_count)

  # Bucket names are global: the account and region make them unique.
  data_bucket_name = "${var.name}-data-${local.account_id}-${local.region}"
  log_bucket_name  = "${var.name}-logs-${local.account_id}-${local.region}"

  # The name clients connect to, which the self-signed certificate is made for.
  site_name = var.site_name != "" ? var.site_name : aws_lb.main.dns_name
}
