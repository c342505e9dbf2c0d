//! The cloud permissions as code (`deploy/permissions/`): each file is the
//! README's block, and each grants exactly what the backend's code calls.
//! The calls are read from the provider crates' sources: the AWS SDK
//! operations (`.describe_instances()`…), and the REST method names the GCP
//! and Azure backends name each call by (`"instances.bulkInsert"`,
//! `"virtualMachines.createOrUpdate …"`). Permissions a call needs besides
//! its own (what a VM is made with) are listed here with the call.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `.rs` file under `dir`, concatenated.
fn sources(dir: &str) -> String {
    fn walk(dir: &Path, out: &mut String) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&path).expect("source"));
                out.push('\n');
            }
        }
    }
    let mut out = String::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut out);
    out
}

/// The fenced block of `lang` after `marker` in the README.
fn readme_block(marker: &str, lang: &str) -> String {
    let readme = read("README.md");
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"));
    let fence = format!("```{lang}\n");
    let start = readme[at..].find(&fence).expect("a fenced block") + at + fence.len();
    let end = readme[start..].find("\n```").expect("its end") + start;
    readme[start..=end].to_owned()
}

/// `method.names` after each `"<resource>.` in `text`.
fn rest_methods(text: &str, resources: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in resources {
        let needle = format!("\"{r}.");
        for (at, _) in text.match_indices(&needle) {
            let method: String = text[at + needle.len()..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            if !method.is_empty() {
                out.insert(format!("{r}.{method}"));
            }
        }
    }
    out
}

fn strings(v: &Value) -> BTreeSet<String> {
    match v {
        Value::String(s) => BTreeSet::from([s.clone()]),
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        _ => BTreeSet::new(),
    }
}

fn assert_exact(granted: &BTreeSet<String>, needed: &BTreeSet<String>, what: &str) {
    let missing: Vec<_> = needed.difference(granted).collect();
    let extra: Vec<_> = granted.difference(needed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, granted but not needed {extra:?}"
    );
}

#[test]
fn the_aws_policy_is_the_readmes_and_grants_exactly_the_calls() {
    let file = read("deploy/permissions/aws-iam-policy.json");
    let policy: Value = serde_json::from_str(&file).expect("JSON");
    let readme: Value =
        serde_json::from_str(&readme_block("**IAM policy** for gpupool", "json")).expect("JSON");
    assert_eq!(
        policy, readme,
        "the README's IAM policy and the file differ"
    );
    let granted: BTreeSet<String> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| strings(&s["Action"]))
        .collect();
    let mut needed = BTreeSet::new();
    for (dir, service) in [
        ("providers/aws/src/ec2", "ec2"),
        ("providers/aws/src/pricing", "pricing"),
    ] {
        for line in sources(dir).lines() {
            let Some(op) = line
                .trim()
                .strip_prefix('.')
                .and_then(|l| l.strip_suffix("()"))
            else {
                continue;
            };
            let verbs = [
                "describe_",
                "create_",
                "run_",
                "terminate_",
                "get_",
                "delete_",
            ];
            if !verbs.iter().any(|v| op.starts_with(v)) {
                continue;
            }
            let action: String = op
                .split('_')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect();
            // The spot price history is EC2's, read from the pricing module.
            let service = if action == "DescribeSpotPriceHistory" {
                "ec2"
            } else {
                service
            };
            needed.insert(format!("{service}:{action}"));
        }
    }
    assert!(needed.contains("ec2:CreateFleet"), "{needed:?}");
    // CreateFleet (type instant) launches with RunInstances and tags at
    // launch with CreateTags, both checked against the caller; the launch
    // template's instance profile is passed to the instances (PassRole).
    needed.extend(["ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"].map(str::to_owned));
    assert_exact(&granted, &needed, "IAM policy");
}

#[test]
fn the_gcp_role_is_the_readmes_and_grants_exactly_the_calls() {
    let file = read("deploy/permissions/gcp-role.yaml");
    let role: serde_yaml::Value = serde_yaml::from_str(&file).expect("YAML");
    let readme: serde_yaml::Value =
        serde_yaml::from_str(&readme_block("**Custom role** for gpupool", "yaml")).expect("YAML");
    assert_eq!(role, readme, "the README's custom role and the file differ");
    let granted: BTreeSet<String> = role["includedPermissions"]
        .as_sequence()
        .expect("permissions")
        .iter()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    let calls = rest_methods(
        &sources("providers/gcp/src/compute"),
        &[
            "regions",
            "machineTypes",
            "acceleratorTypes",
            "instanceTemplates",
            "instances",
            "zoneOperations",
        ],
    );
    assert!(calls.contains("instances.bulkInsert"), "{calls:?}");
    let mut needed = BTreeSet::new();
    for call in &calls {
        let (resource, method) = call.split_once('.').expect("resource.method");
        let verb = match method {
            "get" | "wait" => "get",
            "list" | "aggregatedList" => "list",
            "bulkInsert" | "insert" => "create",
            "delete" => "delete",
            other => panic!("no permission known for {resource}.{other}"),
        };
        needed.insert(format!("compute.{resource}.{verb}"));
        if call == "instances.bulkInsert" {
            // What an instance is made with: its labels, metadata, tags
            // and service account, its boot disk from an image, its subnet,
            // and the template it is made from.
            needed.extend(
                [
                    "compute.instances.setLabels",
                    "compute.instances.setMetadata",
                    "compute.instances.setTags",
                    "compute.instances.setServiceAccount",
                    "compute.disks.create",
                    "compute.images.useReadOnly",
                    "compute.subnetworks.use",
                    "compute.instanceTemplates.useReadOnly",
                ]
                .map(str::to_owned),
            );
        }
    }
    assert_exact(&granted, &needed, "GCP custom role");
}

#[test]
fn the_azure_role_is_the_readmes_and_grants_exactly_the_calls() {
    let file = read("deploy/permissions/azure-role.json");
    let role: Value = serde_json::from_str(&file).expect("JSON");
    let readme: Value =
        serde_json::from_str(&readme_block("**Role definition** for gpupool", "json"))
            .expect("JSON");
    assert_eq!(
        role, readme,
        "the README's role definition and the file differ"
    );
    let granted = strings(&role["Actions"]);
    let calls = rest_methods(
        &sources("providers/azure/src/compute"),
        &["virtualMachines", "virtualMachineScaleSets", "resourceSkus"],
    );
    assert!(
        calls.contains("virtualMachines.createOrUpdate"),
        "{calls:?}"
    );
    let mut needed = BTreeSet::new();
    for call in &calls {
        let (resource, method) = call.split_once('.').expect("resource.method");
        let resource = if resource == "resourceSkus" {
            "skus"
        } else {
            resource
        };
        let verb = match method {
            "get" | "list" => "read",
            "createOrUpdate" => "write",
            "delete" => "delete",
            "instanceView" => "instanceView/read",
            other => panic!("no permission known for {resource}.{other}"),
        };
        needed.insert(format!("Microsoft.Compute/{resource}/{verb}"));
        if matches!(method, "createOrUpdate" | "delete") {
            // Both are awaited through their operation's status.
            needed.insert("Microsoft.Compute/locations/operations/read".to_owned());
        }
        if method == "createOrUpdate" {
            // What a VM is made with: its OS disk and NIC (made and deleted
            // with it), the subnet, NSG, ASG and load-balancer pools they
            // join, its identities, a gallery image, and the scale set it
            // joins.
            needed.extend(
                [
                    "Microsoft.Compute/disks/read",
                    "Microsoft.Compute/disks/write",
                    "Microsoft.Compute/disks/delete",
                    "Microsoft.Compute/galleries/images/versions/read",
                    "Microsoft.Compute/virtualMachineScaleSets/write",
                    "Microsoft.Network/networkInterfaces/read",
                    "Microsoft.Network/networkInterfaces/write",
                    "Microsoft.Network/networkInterfaces/delete",
                    "Microsoft.Network/networkInterfaces/join/action",
                    "Microsoft.Network/virtualNetworks/subnets/join/action",
                    "Microsoft.Network/networkSecurityGroups/join/action",
                    "Microsoft.Network/applicationSecurityGroups/joinIpConfiguration/action",
                    "Microsoft.Network/loadBalancers/backendAddressPools/join/action",
                    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
                ]
                .map(str::to_owned),
            );
        }
    }
    assert_exact(&granted, &needed, "Azure role definition");
}
