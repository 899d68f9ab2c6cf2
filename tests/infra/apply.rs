//! `infra/` applied for real, against the moto emulator on loopback: an override file points the
//! provider at it, the binary is the one this test run built. Then what the emulator holds is
//! checked (encryption, versioning, public access, what is open to the world, no secret in the
//! state), the configuration is destroyed, and the emulator must hold nothing of it any more.

use serde_json::Value;

use crate::common::moto::{MotoServer, REGION};
use crate::terraform::Workdir;

/// Every service the configuration calls, pointed at the emulator.
const SERVICES: &[&str] = &[
    "autoscaling",
    "cloudwatch",
    "ec2",
    "elbv2",
    "iam",
    "kms",
    "logs",
    "rds",
    "s3",
    "secretsmanager",
    "ssm",
    "sts",
];

fn provider_override(endpoint: &str) -> String {
    let endpoints: String = SERVICES
        .iter()
        .map(|s| format!("    {s} = \"{endpoint}\"\n"))
        .collect();
    format!(
        "# Written by tests/infra/apply.rs: the provider talks to the emulator only.\n\
         provider \"aws\" {{\n  region = \"{REGION}\"\n  access_key = \"test\"\n  \
         secret_key = \"test\"\n  skip_credentials_validation = true\n  \
         skip_metadata_api_check = true\n  s3_use_path_style = true\n  max_retries = 2\n  \
         endpoints {{\n{endpoints}  }}\n}}\n"
    )
}

fn variables() -> String {
    let binary = env!("CARGO_BIN_EXE_orthweb");
    format!(
        "https_allowed_cidrs      = [\"0.0.0.0/0\"]\n\
         dicom_allowed_cidrs      = [\"0.0.0.0/0\"]\n\
         orthweb_binary_path      = \"{binary}\"\n\
         deletion_protection      = false\n\
         db_skip_final_snapshot   = true\n\
         force_destroy            = true\n\
         kms_deletion_window_days = 7\n"
    )
}

#[test]
fn applies_on_the_emulator_holds_no_secret_and_destroys_to_nothing() {
    let Some(mut tf) = Workdir::new() else {
        return;
    };
    let Some(moto) = MotoServer::start_tls_only_policies() else {
        return;
    };
    tf.write("moto_override.tf", &provider_override(&moto.endpoint()));
    tf.write("emulator.auto.tfvars", &variables());
    let mut env = moto.env();
    // Nothing of a developer's own AWS set-up may leak in.
    env.push(("AWS_CONFIG_FILE".into(), "/dev/null".into()));
    env.push(("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()));
    env.push(("AWS_PROFILE".into(), String::new()));
    tf.set_env(env);
    tf.init();

    let (out, took) = tf.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    if !out.status.success() {
        panic!(
            "terraform apply failed after {took:?}:\n{}\n{}\nmoto:\n{}",
            tail(&String::from_utf8_lossy(&out.stdout), 80),
            String::from_utf8_lossy(&out.stderr),
            tail(&moto.log_text(), 40)
        );
    }
    let state: Value = serde_json::from_str(&tf.ok(&["show", "-json", "-no-color"])).unwrap();
    let resources = managed_resources(&state);
    eprintln!(
        "infra apply on the emulator: {} resources in {:.0} s",
        resources.len(),
        took.as_secs_f64()
    );

    let outputs = &state["values"]["outputs"];
    for name in ["site_address", "host_info", "s3_bucket", "db_endpoint"] {
        let value = outputs[name]["value"].as_str().unwrap_or("");
        assert!(!value.is_empty(), "output {name} is not set");
    }
    let one = |kind: &str, name: &str| -> Value {
        resources
            .iter()
            .find(|r| r["type"] == kind && r["name"] == name)
            .unwrap_or_else(|| panic!("{kind}.{name} is not in the state"))["values"]
            .clone()
    };
    let db = one("aws_db_instance", "main");
    let key_arn = one("aws_kms_key", "main")["arn"]
        .as_str()
        .unwrap()
        .to_string();
    let bucket = one("aws_s3_bucket", "data")["bucket"]
        .as_str()
        .unwrap()
        .to_string();
    let vpc_id = one("aws_vpc", "main")["id"].as_str().unwrap().to_string();
    let secret_arn = db["master_user_secret"][0]["secret_arn"]
        .as_str()
        .expect("RDS manages the master password in Secrets Manager")
        .to_string();

    the_database_is_encrypted_and_its_password_managed(&moto, &db, &key_arn);
    no_secret_is_in_the_state(&moto, &tf, &secret_arn);
    the_buckets_are_encrypted_versioned_and_private(&moto, &bucket, &key_arn);
    only_443_and_11112_are_open_to_the_world(&moto, &vpc_id);
    the_servers_require_imdsv2(&moto, &one("aws_launch_template", "server"));
    the_user_data_runs_the_bootstrap_with_every_input(&one("aws_launch_template", "server"));

    let (out, took) = tf.run(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    if !out.status.success() {
        panic!(
            "terraform destroy failed after {took:?}:\n{}\n{}",
            tail(&String::from_utf8_lossy(&out.stdout), 80),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("infra destroy on the emulator: {:.0} s", took.as_secs_f64());
    nothing_is_left(&moto, &vpc_id, &key_arn);
}

fn managed_resources(state: &Value) -> Vec<Value> {
    fn walk(module: &Value, into: &mut Vec<Value>) {
        for r in module["resources"].as_array().into_iter().flatten() {
            if r["mode"] == "managed" {
                into.push(r.clone());
            }
        }
        for child in module["child_modules"].as_array().into_iter().flatten() {
            walk(child, into);
        }
    }
    let mut all = Vec::new();
    walk(&state["values"]["root_module"], &mut all);
    all
}

fn the_database_is_encrypted_and_its_password_managed(moto: &MotoServer, db: &Value, key: &str) {
    assert_eq!(db["manage_master_user_password"], true, "{db}");
    assert!(
        db["password"].is_null(),
        "Terraform set a database password"
    );
    let xml = moto.query(
        "rds",
        &[
            ("Action", "DescribeDBInstances"),
            ("Version", "2014-10-31"),
            ("DBInstanceIdentifier", db["identifier"].as_str().unwrap()),
        ],
    );
    assert_eq!(first(&xml, "StorageEncrypted"), "true", "{xml}");
    assert_eq!(first(&xml, "KmsKeyId"), key, "{xml}");
    assert_eq!(first(&xml, "PubliclyAccessible"), "false", "{xml}");
    assert!(
        first(&xml, "SecretArn").starts_with("arn:aws:secretsmanager:"),
        "{xml}"
    );
}

fn no_secret_is_in_the_state(moto: &MotoServer, tf: &Workdir, secret_arn: &str) {
    let secret: Value = serde_json::from_str(&moto.secret_value(secret_arn))
        .expect("the RDS-managed secret holds JSON");
    let password = secret["password"]
        .as_str()
        .expect("the secret holds a password");
    assert!(password.len() >= 8, "a real-looking password: {password:?}");
    let state = std::fs::read_to_string(tf.path().join("terraform.tfstate")).unwrap();
    assert!(
        !state.contains(password),
        "the database password is in terraform.tfstate"
    );
    assert!(
        !state.contains("SecretString"),
        "a secret value is in terraform.tfstate"
    );
    for (name, text) in std::fs::read_dir(tf.path())
        .unwrap()
        .flatten()
        .filter_map(|e| Some((e.file_name(), std::fs::read(e.path()).ok()?)))
    {
        assert!(
            !String::from_utf8_lossy(&text).contains(password),
            "the database password is in {name:?}"
        );
    }
}

fn the_buckets_are_encrypted_versioned_and_private(moto: &MotoServer, bucket: &str, key: &str) {
    let (status, xml) = moto.s3("GET", &format!("/{bucket}?encryption"), b"");
    assert_eq!(status, 200, "{xml}");
    assert_eq!(first(&xml, "SSEAlgorithm"), "aws:kms", "{xml}");
    assert_eq!(first(&xml, "KMSMasterKeyID"), key, "{xml}");
    let (_, xml) = moto.s3("GET", &format!("/{bucket}?versioning"), b"");
    assert_eq!(first(&xml, "Status"), "Enabled", "{xml}");
    let (_, xml) = moto.s3("GET", &format!("/{bucket}?policy"), b"");
    assert!(
        xml.contains("aws:SecureTransport"),
        "no TLS-only policy: {xml}"
    );

    let (_, list) = moto.s3("GET", "/", b"");
    let buckets = all(&list, "Name");
    assert_eq!(buckets.len(), 2, "the data and the log bucket: {list}");
    for name in &buckets {
        let (status, xml) = moto.s3("GET", &format!("/{name}?publicAccessBlock"), b"");
        assert_eq!(status, 200, "{name} has no public access block: {xml}");
        for flag in [
            "BlockPublicAcls",
            "IgnorePublicAcls",
            "BlockPublicPolicy",
            "RestrictPublicBuckets",
        ] {
            assert_eq!(first(&xml, flag), "true", "{name}: {flag} in {xml}");
        }
        let (_, xml) = moto.s3("GET", &format!("/{name}?encryption"), b"");
        assert!(
            !first(&xml, "SSEAlgorithm").is_empty(),
            "{name} is not encrypted"
        );
    }
}

/// One security group rule, as the emulator lists it.
#[derive(Debug)]
struct Rule {
    group: String,
    egress: bool,
    protocol: String,
    from: i64,
    to: i64,
    cidr: String,
}

fn rules(moto: &MotoServer, vpc_id: &str) -> Vec<Rule> {
    let groups = moto.query(
        "ec2",
        &[
            ("Action", "DescribeSecurityGroups"),
            ("Version", "2016-11-15"),
            ("Filter.1.Name", "vpc-id"),
            ("Filter.1.Value.1", vpc_id),
        ],
    );
    let ours: Vec<String> = all(&groups, "groupId");
    assert!(
        ours.len() >= 5,
        "the deployment's security groups: {groups}"
    );
    let xml = moto.query(
        "ec2",
        &[
            ("Action", "DescribeSecurityGroupRules"),
            ("Version", "2016-11-15"),
        ],
    );
    // Each rule starts with its ID; its own fields come before any nested ones.
    xml.split("<securityGroupRuleId>")
        .skip(1)
        .map(|item| Rule {
            group: first(item, "groupId"),
            egress: first(item, "isEgress") == "true",
            protocol: first(item, "ipProtocol"),
            from: first(item, "fromPort").parse().unwrap_or(-1),
            to: first(item, "toPort").parse().unwrap_or(-1),
            cidr: first(item, "cidrIpv4") + &first(item, "cidrIpv6"),
        })
        .filter(|r| ours.contains(&r.group))
        .collect()
}

fn only_443_and_11112_are_open_to_the_world(moto: &MotoServer, vpc_id: &str) {
    let rules = rules(moto, vpc_id);
    let ingress: Vec<&Rule> = rules.iter().filter(|r| !r.egress).collect();
    let world: Vec<&Rule> = ingress
        .iter()
        .copied()
        .filter(|r| r.cidr == "0.0.0.0/0" || r.cidr == "::/0")
        .collect();
    let mut world_ports: Vec<i64> = world.iter().map(|r| r.from).collect();
    world_ports.sort();
    world_ports.dedup();
    assert_eq!(world_ports, [443, 11112], "open to the world: {world:#?}");
    for r in &world {
        assert!(r.protocol == "tcp" && r.from == r.to, "a port range: {r:?}");
    }
    for r in &ingress {
        let covers_22 = r.protocol == "-1" || (r.from <= 22 && 22 <= r.to);
        assert!(!covers_22, "port 22 is open: {r:?}");
    }
}

fn the_servers_require_imdsv2(moto: &MotoServer, template: &Value) {
    let xml = moto.query(
        "ec2",
        &[
            ("Action", "DescribeLaunchTemplateVersions"),
            ("Version", "2016-11-15"),
            ("LaunchTemplateId", template["id"].as_str().unwrap()),
        ],
    );
    assert_eq!(first(&xml, "httpTokens"), "required", "{xml}");
    assert_eq!(first(&xml, "encrypted"), "true", "{xml}");
}

/// The rendered user data is a valid shell script that hands the bootstrap every input it
/// requires (the names `${NAME:?…}` in the script).
fn the_user_data_runs_the_bootstrap_with_every_input(template: &Value) {
    use base64::Engine;
    let encoded = template["user_data"].as_str().unwrap();
    let script = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("user data is base64");
    let script = String::from_utf8(script).unwrap();
    assert!(script.len() < 16 * 1024, "user data over EC2's 16 KiB");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data.sh");
    std::fs::write(&path, &script).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash -n user data: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bootstrap = std::fs::read_to_string(
        crate::terraform::infra_dir().join("bootstrap/orthweb-bootstrap.sh"),
    )
    .unwrap();
    for required in bootstrap.split(": \"${").skip(1) {
        let name = required.split([':', '}']).next().unwrap();
        if required[name.len()..].starts_with(":?") {
            assert!(
                script.contains(&format!("\n{name}='")),
                "the user data does not set {name}"
            );
        }
    }
}

fn nothing_is_left(moto: &MotoServer, vpc_id: &str, key_arn: &str) {
    let ec2 = |action: &str, filter: Option<(&str, &str)>| {
        let mut params = vec![("Action", action), ("Version", "2016-11-15")];
        if let Some((name, value)) = filter {
            params.push(("Filter.1.Name", name));
            params.push(("Filter.1.Value.1", value));
        }
        moto.query("ec2", &params)
    };
    let xml = ec2("DescribeVpcs", None);
    assert!(!xml.contains(vpc_id), "the VPC is left: {xml}");
    for (action, filter, tag) in [
        ("DescribeSubnets", "vpc-id", "subnetId"),
        ("DescribeSecurityGroups", "vpc-id", "groupId"),
        ("DescribeRouteTables", "vpc-id", "routeTableId"),
        (
            "DescribeInternetGateways",
            "attachment.vpc-id",
            "internetGatewayId",
        ),
        ("DescribeFlowLogs", "resource-id", "flowLogId"),
    ] {
        let xml = ec2(action, Some((filter, vpc_id)));
        assert!(all(&xml, tag).is_empty(), "{action}: left {xml}");
    }
    for (action, tag) in [
        ("DescribeAddresses", "allocationId"),
        ("DescribeLaunchTemplates", "launchTemplateId"),
    ] {
        let xml = ec2(action, None);
        assert!(all(&xml, tag).is_empty(), "{action}: left {xml}");
    }
    // Deleted NAT gateways, endpoints and terminated instances stay listed for a while, as on AWS.
    for (action, tag, gone) in [
        ("DescribeNatGateways", "state", "deleted"),
        ("DescribeVpcEndpoints", "state", "deleted"),
    ] {
        let xml = ec2(action, None);
        assert!(all(&xml, tag).iter().all(|s| s == gone), "{action}: {xml}");
    }
    let xml = ec2("DescribeInstances", None);
    assert!(
        all(&xml, "name").iter().all(|s| s == "terminated"),
        "instances still running: {xml}"
    );

    let xml = moto.query(
        "rds",
        &[("Action", "DescribeDBInstances"), ("Version", "2014-10-31")],
    );
    assert!(all(&xml, "DBInstanceIdentifier").is_empty(), "{xml}");
    let xml = moto.query(
        "rds",
        &[("Action", "DescribeDBSnapshots"), ("Version", "2014-10-31")],
    );
    assert!(all(&xml, "DBSnapshotIdentifier").is_empty(), "{xml}");
    let xml = moto.query(
        "elasticloadbalancing",
        &[
            ("Action", "DescribeLoadBalancers"),
            ("Version", "2015-12-01"),
        ],
    );
    assert!(all(&xml, "LoadBalancerArn").is_empty(), "{xml}");
    let xml = moto.query(
        "elasticloadbalancing",
        &[
            ("Action", "DescribeTargetGroups"),
            ("Version", "2015-12-01"),
        ],
    );
    assert!(all(&xml, "TargetGroupArn").is_empty(), "{xml}");
    let xml = moto.query(
        "autoscaling",
        &[
            ("Action", "DescribeAutoScalingGroups"),
            ("Version", "2011-01-01"),
        ],
    );
    assert!(all(&xml, "AutoScalingGroupName").is_empty(), "{xml}");
    for (action, tag) in [
        ("ListRoles", "RoleName"),
        ("ListInstanceProfiles", "InstanceProfileName"),
    ] {
        let xml = moto.query("iam", &[("Action", action), ("Version", "2010-05-08")]);
        assert!(all(&xml, tag).is_empty(), "{action}: {xml}");
    }

    let (_, xml) = moto.s3("GET", "/", b"");
    assert!(all(&xml, "Name").is_empty(), "buckets left: {xml}");
    let groups = moto.json(
        "logs",
        "Logs_20140328.DescribeLogGroups",
        &serde_json::json!({}),
    );
    assert_eq!(
        groups["logGroups"].as_array().map(Vec::len),
        Some(0),
        "{groups}"
    );
    let secrets = moto.json(
        "secretsmanager",
        "secretsmanager.ListSecrets",
        &serde_json::json!({}),
    );
    assert_eq!(
        secrets["SecretList"].as_array().map(Vec::len),
        Some(0),
        "{secrets}"
    );
    // A KMS key cannot be deleted at once: it waits out its deletion window.
    let key = moto.json(
        "kms",
        "TrentService.DescribeKey",
        &serde_json::json!({ "KeyId": key_arn }),
    );
    assert_eq!(key["KeyMetadata"]["KeyState"], "PendingDeletion", "{key}");
    let aliases = moto.json("kms", "TrentService.ListAliases", &serde_json::json!({}));
    assert!(
        !aliases.to_string().contains("alias/orthweb\""),
        "the key alias is left: {aliases}"
    );
}

/// The text of the first `<tag>…</tag>` in `xml`, or "".
fn first(xml: &str, tag: &str) -> String {
    all(xml, tag).into_iter().next().unwrap_or_default()
}

/// The texts of every `<tag>…</tag>` in `xml` (flat elements only).
fn all(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next())
        .filter(|text| !text.contains('<'))
        .map(str::to_string)
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
