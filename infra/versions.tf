terraform {
  # The Terraform this configuration is tested with (terraform test, and applied against an
  # emulator in CI); newer minor versions are refused until tested.
  required_version = "~> 1.11.0"

  required_providers {
    # The only provider: no random, tls, cloudinit or local (their jobs are done by the
    # instances' bootstrap and by templatefile).
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge({ Application = "orthweb", Deployment = var.name }, var.tags)
  }
}
