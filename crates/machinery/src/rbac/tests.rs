use serde_json::json;

use super::*;

fn request<'a>(verb: &'a str, group: &'a str, resource: &'a str) -> Request<'a> {
    Request {
        verb,
        resource_request: true,
        api_group: group,
        resource,
        ..Request::default()
    }
}

#[test]
fn rules_match_verbs_groups_resources_subresources_and_names() {
    let hosts = PolicyRule::resources(&["get", "list"], &["fleetdb.io"], &["hosts"]);
    assert!(hosts.allows(&request("get", "fleetdb.io", "hosts")));
    assert!(!hosts.allows(&request("delete", "fleetdb.io", "hosts")));
    assert!(!hosts.allows(&request("get", "", "hosts")));
    let status = Request {
        subresource: "status",
        ..request("get", "fleetdb.io", "hosts")
    };
    assert!(!hosts.allows(&status), "a subresource is named on its own");
    let status_rule = PolicyRule::resources(&["patch"], &["fleetdb.io"], &["hosts/status"]);
    assert!(status_rule.allows(&Request {
        verb: "patch",
        ..status
    }));
    let any_status = PolicyRule::resources(&["patch"], &["*"], &["*/status"]);
    assert!(any_status.allows(&Request {
        verb: "patch",
        ..status
    }));
    assert!(!any_status.allows(&request("patch", "fleetdb.io", "hosts")));
    let everything = PolicyRule::resources(&["*"], &["*"], &["*"]);
    assert!(everything.allows(&Request {
        verb: "patch",
        ..status
    }));

    let named = PolicyRule {
        resource_names: vec!["web-1".into()],
        ..hosts.clone()
    };
    assert!(named.allows(&Request {
        name: "web-1",
        ..request("get", "fleetdb.io", "hosts")
    }));
    assert!(!named.allows(&Request {
        name: "web-2",
        ..request("get", "fleetdb.io", "hosts")
    }));
    assert!(
        !named.allows(&request("list", "fleetdb.io", "hosts")),
        "a list names nothing"
    );

    let urls = PolicyRule::urls(&["get"], &["/healthz", "/apis/*"]);
    let path = |path| Request {
        verb: "get",
        path,
        ..Request::default()
    };
    assert!(urls.allows(&path("/healthz")));
    assert!(urls.allows(&path("/apis/fleetdb.io")));
    assert!(!urls.allows(&path("/healthz/ping")));
    assert!(!urls.allows(&path("/api")));
    assert!(
        !urls.allows(&request("get", "", "healthz")),
        "URLs are not resources"
    );
}

#[test]
fn coverage_is_checked_rule_by_rule_and_reported_compactly() {
    let owned = vec![
        PolicyRule::resources(
            &["get", "list", "watch"],
            &["fleetdb.io"],
            &["hosts", "sources"],
        ),
        PolicyRule::resources(&["patch"], &["*"], &["*/status"]),
        PolicyRule::urls(&["get"], &["/apis/*"]),
    ];
    assert!(uncovered(&owned, &owned).is_empty());
    assert!(
        uncovered(
            &owned,
            &[PolicyRule::resources(
                &["patch"],
                &["fleetdb.io"],
                &["hosts/status"]
            )]
        )
        .is_empty()
    );
    assert!(uncovered(&owned, &[PolicyRule::urls(&["get"], &["/apis/fleetdb.io"])]).is_empty());
    let wanted = vec![
        PolicyRule::resources(
            &["get", "delete", "deletecollection"],
            &["fleetdb.io"],
            &["hosts"],
        ),
        PolicyRule::urls(&["get"], &["/metrics"]),
    ];
    assert_eq!(
        uncovered(&owned, &wanted),
        [
            r#"{APIGroups:["fleetdb.io"], Resources:["hosts"], Verbs:["delete" "deletecollection"]}"#,
            r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#,
        ]
    );
    // `*` in what is wanted is covered only by `*` in what is held.
    assert_eq!(
        uncovered(
            &owned,
            &[PolicyRule::resources(&["*"], &["fleetdb.io"], &["hosts"])]
        ),
        [r#"{APIGroups:["fleetdb.io"], Resources:["hosts"], Verbs:["*"]}"#]
    );
    // Names: a rule for every name is not covered by one for some.
    let some = vec![PolicyRule {
        resource_names: vec!["a".into()],
        ..PolicyRule::resources(&["get"], &[""], &["namespaces"])
    }];
    assert!(
        !uncovered(
            &some,
            &[PolicyRule::resources(&["get"], &[""], &["namespaces"])]
        )
        .is_empty()
    );
    assert!(uncovered(&some, &some).is_empty());
    let groups = ["admins".to_owned(), "system:authenticated".to_owned()];
    assert_eq!(
        escalation_message(
            &User {
                name: "alice",
                groups: &groups
            },
            &uncovered(&owned, &wanted)[..1]
        ),
        "user \"alice\" (groups=[\"admins\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"fleetdb.io\"], Resources:[\"hosts\"], Verbs:[\"delete\" \"deletecollection\"]}"
    );
}

fn cluster_role(
    name: &str,
    labels: serde_json::Value,
    rules: serde_json::Value,
) -> serde_json::Value {
    json!({"metadata": {"name": name, "labels": labels}, "rules": rules})
}

#[test]
fn a_policy_answers_with_the_binding_that_allowed() {
    let cluster_roles = vec![
        cluster_role(
            "reader",
            json!({}),
            json!([{"verbs": ["get", "list"], "apiGroups": ["fleetdb.io"], "resources": ["hosts"]}]),
        ),
        cluster_role(
            "admin-ish",
            json!({}),
            json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]),
        ),
    ];
    let roles = vec![
        json!({"metadata": {"name": "ns-writer", "namespace": "team-a"},
        "rules": [{"verbs": ["create"], "apiGroups": [""], "resources": ["configmaps"]}]}),
    ];
    let cluster_bindings = vec![json!({"metadata": {"name": "readers"},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "reader"},
        "subjects": [{"kind": "Group", "apiGroup": GROUP, "name": "fleet-readers"}]})];
    let bindings = vec![
        json!({"metadata": {"name": "writers", "namespace": "team-a"},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "ns-writer"},
            "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "bob"}]}),
        json!({"metadata": {"name": "local-admin", "namespace": "team-a"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "admin-ish"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer"}]}),
        json!({"metadata": {"name": "dangling", "namespace": "team-b"},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "gone"},
            "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "bob"}]}),
    ];
    let policy = Policy::build(&cluster_roles, &roles, &cluster_bindings, &bindings);
    let groups = ["fleet-readers".to_owned()];
    let bob = User {
        name: "bob",
        groups: &groups,
    };
    assert_eq!(
        policy.authorize(&bob, &request("list", "fleetdb.io", "hosts")),
        Verdict {
            allowed: true,
            reason: "RBAC: allowed by ClusterRoleBinding \"readers\" of ClusterRole \"reader\" to Group \"fleet-readers\"".into()
        }
    );
    let create_in = |namespace| Request {
        namespace,
        ..request("create", "", "configmaps")
    };
    let verdict = policy.authorize(&bob, &create_in("team-a"));
    assert_eq!(
        verdict.reason,
        "RBAC: allowed by RoleBinding \"writers/team-a\" of Role \"ns-writer\" to User \"bob\""
    );
    assert!(!policy.authorize(&bob, &create_in("team-c")).allowed);
    assert!(
        !policy.authorize(&bob, &create_in("")).allowed,
        "not at the cluster scope"
    );
    assert_eq!(
        policy.authorize(&bob, &create_in("team-b")),
        Verdict {
            allowed: false,
            reason: "RBAC: role.rbac.authorization.k8s.io \"gone\" not found".into()
        }
    );
    // A RoleBinding to a ClusterRole grants it in the binding's namespace only.
    let deployer = User {
        name: "system:serviceaccount:team-a:deployer",
        groups: &[],
    };
    assert!(policy.authorize(&deployer, &create_in("team-a")).allowed);
    assert!(!policy.authorize(&deployer, &create_in("team-b")).allowed);
    let (rules, errors) = policy.rules_for(&bob, "team-a");
    assert_eq!(rules.len(), 2);
    assert!(errors.is_empty());
}

#[test]
fn aggregated_roles_hold_the_rules_of_the_roles_they_select() {
    let select = |label: &str| json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
    let mut view = cluster_role(
        "view",
        json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
        json!([]),
    );
    view["aggregationRule"] = select("rbac.authorization.k8s.io/aggregate-to-view");
    let mut edit = cluster_role("edit", json!({}), json!([]));
    edit["aggregationRule"] = select("rbac.authorization.k8s.io/aggregate-to-edit");
    // A cycle is followed once.
    let mut loop_a = cluster_role("loop-a", json!({"loop": "b"}), json!([]));
    loop_a["aggregationRule"] = select("loop");
    let roles = vec![
        view,
        edit,
        loop_a,
        cluster_role(
            "fleet-view",
            json!({"rbac.authorization.k8s.io/aggregate-to-view": "true", "loop": "true"}),
            json!([{"verbs": ["get"], "apiGroups": ["fleetdb.io"], "resources": ["hosts"]}]),
        ),
        cluster_role(
            "fleet-edit",
            json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
            json!([{"verbs": ["patch"], "apiGroups": ["fleetdb.io"], "resources": ["hosts"]}]),
        ),
    ];
    let policy = Policy::build(&roles, &[], &[], &[]);
    assert_eq!(policy.cluster_role("view").unwrap().len(), 1);
    let edit = policy.cluster_role("edit").unwrap();
    assert_eq!(edit.len(), 2, "{edit:?}");
    assert_eq!(policy.aggregated().len(), 3);
    assert_eq!(policy.cluster_role("loop-a").unwrap().len(), 1);
    let labels = std::collections::BTreeMap::from([("a".to_owned(), "1".to_owned())]);
    assert!(selector_matches(&json!({}), &labels));
    assert!(selector_matches(
        &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}, {"key": "b", "operator": "DoesNotExist"}]}),
        &labels
    ));
    assert!(!selector_matches(
        &json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}),
        &labels
    ));
    assert!(!selector_matches(
        &json!({"matchLabels": {"a": "2"}}),
        &labels
    ));
}

#[test]
fn objects_are_checked_with_kube_apiserver_wording() {
    let problems = |errors: Vec<crate::field::FieldError>| -> Vec<String> {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
    };
    assert_eq!(
        problems(validation::role(&json!({"rules": [
            {"verbs": [], "apiGroups": ["fleetdb.io"], "resources": ["hosts"]},
            {"verbs": ["get"], "nonResourceURLs": ["/x"]},
            {"verbs": ["get"]},
        ]}))),
        [
            "rules[0].verbs: Required value: verbs must contain at least one value",
            "rules[1].nonResourceURLs: Invalid value: []string{\"/x\"}: namespaced rules cannot apply to non-resource URLs",
            "rules[2].apiGroups: Required value: resource rules must supply at least one api group",
            "rules[2].resources: Required value: resource rules must supply at least one resource",
        ]
    );
    assert!(
        validation::cluster_role(
            &json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}]})
        )
        .is_empty()
    );
    assert_eq!(
        problems(validation::cluster_role(&json!({"aggregationRule": {}}))),
        [
            "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"
        ]
    );
    let mut binding = json!({
        "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "x"},
        "subjects": [{"kind": "User", "name": "bob"}, {"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "r"}],
    });
    validation::default_subjects(&mut binding);
    assert_eq!(binding["subjects"][0]["apiGroup"], GROUP);
    assert_eq!(binding["subjects"][1]["apiGroup"], "");
    assert_eq!(
        problems(validation::binding(&binding, false)),
        [
            "subjects[2].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""
        ]
    );
    assert_eq!(
        problems(validation::binding(&binding, true)),
        [
            "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
            "subjects[1].namespace: Required value",
            "subjects[2].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
        ]
    );
    let mut changed = binding.clone();
    changed["roleRef"]["name"] = json!("y");
    assert!(validation::role_ref_change(&changed, &binding).is_some());
    assert!(validation::role_ref_change(&binding, &binding).is_none());
    assert_eq!(
        validation::name_problems("system:discovery"),
        Vec::<String>::new()
    );
    assert_eq!(validation::name_problems("a/b"), ["may not contain '/'"]);
}
