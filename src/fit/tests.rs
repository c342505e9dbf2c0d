use super::requests::{self, ContainerResources};
use super::*;

fn c<'a>(name: &'a str, requests: &[(&'a str, &'a str)]) -> ContainerResources<'a> {
    ContainerResources {
        name,
        requests: requests.to_vec(),
        ..Default::default()
    }
}

#[test]
fn requests_aggregate_as_the_scheduler_does() {
    const GI: f64 = 1024.0 * 1024.0 * 1024.0;
    // Containers summed; a limit stands in for a missing request.
    let mut gpu = c("b", &[("cpu", "1")]);
    gpu.limits = vec![("nvidia.com/gpu", "2"), ("cpu", "4")];
    let r = requests::pod(
        &[c("a", &[("cpu", "500m"), ("memory", "1Gi")]), gpu],
        &[],
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(r["cpu"], 1.5, "the request wins over the limit");
    assert_eq!(r["nvidia.com/gpu"], 2.0);
    assert_eq!(r["memory"], GI);

    // Init containers: the largest is a floor; a sidecar runs alongside the
    // later init containers and the main ones; the overhead comes on top.
    let mut sidecar = c("mesh", &[("cpu", "1"), ("memory", "1Gi")]);
    sidecar.sidecar = true;
    let init = [
        c("early", &[("cpu", "3")]),
        sidecar,
        c("late", &[("memory", "10Gi"), ("cpu", "1")]),
    ];
    let r = requests::pod(
        &[c("main", &[("cpu", "2"), ("memory", "2Gi")])],
        &init,
        &[("cpu", "250m")],
        &[],
    )
    .unwrap();
    // cpu: max(main 2 + sidecar 1, early 3, late 1 + sidecar 1) + 0.25
    assert_eq!(r["cpu"], 3.25);
    // memory: max(2 + 1, late 10 + sidecar 1)
    assert_eq!(r["memory"], 11.0 * GI);

    // Pod-level requests replace the aggregate for their resources.
    let r = requests::pod(
        &[c("main", &[("cpu", "2"), ("nvidia.com/gpu", "1")])],
        &[],
        &[],
        &[("cpu", "8")],
    )
    .unwrap();
    assert_eq!((r["cpu"], r["nvidia.com/gpu"]), (8.0, 1.0));

    let err = requests::pod(&[c("main", &[("memory", "lots")])], &[], &[], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "containers[main].resources.requests: memory: \"lots\" is not a Kubernetes quantity"
    );
}

#[test]
fn amounts_are_shown_in_the_units_people_write() {
    use requests::show;
    assert_eq!(show("cpu", 0.25), "250m");
    assert_eq!(show("cpu", 7.91), "7.91");
    assert_eq!(show("cpu", 96.0), "96");
    assert_eq!(show("memory", 1.5 * 1024.0 * 1024.0 * 1024.0), "1.5Gi");
    assert_eq!(show("memory", 512.0 * 1024.0 * 1024.0), "512Mi");
    assert_eq!(show("nvidia.com/gpu", 8.0), "8");
}

fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.into(),
        effect: effect.into(),
    }
}

fn tol(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
    Toleration {
        key: key.into(),
        operator: operator.into(),
        value: value.into(),
        effect: effect.into(),
    }
}

#[test]
fn tolerations_match_as_kubernetes_defines_them() {
    let t = taint("nvidia.com/gpu", "present", "NoSchedule");
    let cases = [
        (tol("nvidia.com/gpu", "Exists", "", ""), true),
        (tol("nvidia.com/gpu", "Exists", "", "NoSchedule"), true),
        (tol("nvidia.com/gpu", "Exists", "", "NoExecute"), false),
        (
            tol("nvidia.com/gpu", "Equal", "present", "NoSchedule"),
            true,
        ),
        (tol("nvidia.com/gpu", "", "present", ""), true),
        (tol("nvidia.com/gpu", "Equal", "absent", ""), false),
        (tol("", "Exists", "", ""), true),
        (tol("", "Exists", "", "NoExecute"), false),
        (tol("other", "Exists", "", ""), false),
        (tol("nvidia.com/gpu", "Gt", "1", ""), false),
    ];
    for (toleration, tolerates) in cases {
        assert_eq!(toleration.tolerates(&t), tolerates, "{toleration:?}");
    }
}

fn node() -> NodeShape {
    NodeShape {
        name: "template-node-for-g".into(),
        labels: [("gpu.count", "8"), ("zone", "a"), ("kind", "gpu")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        taints: vec![
            taint("nvidia.com/gpu", "present", "NoSchedule"),
            taint("soft", "", "PreferNoSchedule"),
        ],
        allocatable: [("cpu".to_owned(), 8.0)].into(),
        devices: Vec::new(),
    }
}

fn req(key: &str, operator: &str, values: &[&str]) -> Requirement {
    Requirement {
        key: key.into(),
        operator: operator.into(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

#[test]
fn node_affinity_operators_and_terms() {
    let n = node();
    let term = |reqs: Vec<Requirement>| Term {
        match_expressions: reqs,
        match_fields: Vec::new(),
    };
    let holds = |r: Requirement| {
        let pod = PodShape {
            required_terms: Some(vec![term(vec![r])]),
            tolerations: vec![tol("", "Exists", "", "")],
            ..Default::default()
        };
        placement(&pod, &n).is_empty()
    };
    assert!(holds(req("zone", "In", &["a", "b"])));
    assert!(!holds(req("zone", "In", &["b"])));
    assert!(holds(req("zone", "NotIn", &["b"])));
    assert!(holds(req("missing", "NotIn", &["b"])));
    assert!(holds(req("kind", "Exists", &[])));
    assert!(holds(req("missing", "DoesNotExist", &[])));
    assert!(!holds(req("kind", "DoesNotExist", &[])));
    assert!(holds(req("gpu.count", "Gt", &["4"])));
    assert!(!holds(req("gpu.count", "Lt", &["4"])));
    assert!(!holds(req("zone", "Gt", &["4"])), "not a number");

    // Terms are ORed; an empty term matches nothing; matchFields see the name.
    let pod = |terms: Vec<Term>| PodShape {
        required_terms: Some(terms),
        tolerations: vec![tol("", "Exists", "", "")],
        ..Default::default()
    };
    let other_node = Term {
        match_expressions: Vec::new(),
        match_fields: vec![req("metadata.name", "In", &["node-7"])],
    };
    let reasons = placement(&pod(vec![Term::default(), other_node.clone()]), &n);
    assert_eq!(
        reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "required node affinity: no term matches (term 1: empty, matches no node; term 2: metadata.name In [node-7]: a new node has \"template-node-for-g\")"
        ]
    );
    assert!(
        placement(
            &pod(vec![other_node, term(vec![req("zone", "In", &["a"])])]),
            &n
        )
        .is_empty()
    );
    assert!(!placement(&pod(Vec::new()), &n).is_empty());
}

#[test]
fn only_hard_taints_keep_a_pod_off() {
    let reasons = placement(&PodShape::default(), &node());
    assert_eq!(
        reasons,
        [Reason::Untolerated(taint(
            "nvidia.com/gpu",
            "present",
            "NoSchedule"
        ))]
    );
}

#[test]
fn max_size_is_reached_when_the_target_is_at_it() {
    let pod = PodShape {
        tolerations: vec![tol("", "Exists", "", "")],
        ..Default::default()
    };
    let none = Resources::new();
    let at = |max, target| check(&pod, &node(), &none, GroupSize { max, target });
    assert!(at(4, None).fits());
    assert!(at(4, Some(3)).fits());
    assert_eq!(
        at(4, Some(4))
            .reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["max size reached: target 4 of max 4"]
    );
    assert_eq!(at(0, None).reasons[0].to_string(), "max size is 0");
}
