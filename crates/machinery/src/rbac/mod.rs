//! Role-based access control as `rbac.authorization.k8s.io/v1` defines it, without I/O:
//! policy rules and how a request matches them ([`PolicyRule::allows`]), whether one set of
//! rules covers another (escalation prevention, [`uncovered`]), the rules' compact form in
//! kube-apiserver's messages, the evaluated policy of a set of roles and bindings
//! ([`Policy`]), and the validation of the four kinds ([`validation`]).

mod policy;
pub mod validation;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use policy::{Grant, Policy, Verdict, rules_of};

/// The API group of the RBAC kinds.
pub const GROUP: &str = "rbac.authorization.k8s.io";
/// `*`: every verb, group, resource or URL.
pub const ALL: &str = "*";

/// One rule of a Role or ClusterRole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(
        rename = "nonResourceURLs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

/// Who asks (Kubernetes' `user.Info`, the parts RBAC reads).
#[derive(Clone, Copy, Debug)]
pub struct User<'a> {
    pub name: &'a str,
    pub groups: &'a [String],
}

/// What a request does, as RBAC sees it (`authorizer.Attributes`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    pub verb: &'a str,
    /// A request for a resource; otherwise for the non-resource `path`.
    pub resource_request: bool,
    pub api_group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    /// Empty at the cluster scope.
    pub namespace: &'a str,
    pub path: &'a str,
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|item| has(set, item))
}

/// Whether a rule's URL (exact, `*`, or a prefix ending in `*`) matches `path`.
fn url_matches(rule_url: &str, path: &str) -> bool {
    rule_url == ALL
        || rule_url == path
        || rule_url
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

impl PolicyRule {
    /// A rule for resources.
    pub fn resources(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Self {
        let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        Self {
            verbs: owned(verbs),
            api_groups: owned(groups),
            resources: owned(resources),
            ..Self::default()
        }
    }

    /// A rule for non-resource URLs.
    pub fn urls(verbs: &[&str], urls: &[&str]) -> Self {
        let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        Self {
            verbs: owned(verbs),
            non_resource_urls: owned(urls),
            ..Self::default()
        }
    }

    /// Whether this rule allows the request (`rbac.RuleAllows`): verb, group, resource (with
    /// `resource/subresource` and `*/subresource`) and name for resource requests; verb and
    /// URL for the others.
    pub fn allows(&self, request: &Request<'_>) -> bool {
        let verb = has(&self.verbs, ALL) || has(&self.verbs, request.verb);
        if !verb {
            return false;
        }
        if !request.resource_request {
            return self
                .non_resource_urls
                .iter()
                .any(|url| url_matches(url, request.path));
        }
        let group = has(&self.api_groups, ALL) || has(&self.api_groups, request.api_group);
        let resource = self.resources.iter().any(|rule| {
            if rule == ALL {
                return true;
            }
            if request.subresource.is_empty() {
                return rule == request.resource;
            }
            rule.strip_prefix(request.resource)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|sub| sub == request.subresource)
                || rule
                    .strip_prefix("*/")
                    .is_some_and(|sub| sub == request.subresource)
        });
        let name = self.resource_names.is_empty() || has(&self.resource_names, request.name);
        group && resource && name
    }

    /// kube-apiserver's compact form in escalation messages, e.g.
    /// `{APIGroups:["fleetdb.io"], Resources:["hosts"], Verbs:["delete"]}`.
    pub fn compact_string(&self) -> String {
        let list = |items: &[String]| {
            let quoted: Vec<String> = items.iter().map(|s| crate::gofmt::quote(s)).collect();
            format!("[{}]", quoted.join(" "))
        };
        let mut parts = Vec::new();
        for (name, items) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !items.is_empty() {
                parts.push(format!("{name}:{}", list(items)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }

    /// The rule split into rules of one group, resource, verb and name (or one URL and verb)
    /// each (`BreakdownRule`).
    fn atoms(&self) -> Vec<PolicyRule> {
        let mut atoms = Vec::new();
        let one = |s: &String| vec![s.clone()];
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    let base = PolicyRule {
                        verbs: one(verb),
                        api_groups: one(group),
                        resources: one(resource),
                        ..PolicyRule::default()
                    };
                    if self.resource_names.is_empty() {
                        atoms.push(base);
                    } else {
                        for name in &self.resource_names {
                            atoms.push(PolicyRule {
                                resource_names: one(name),
                                ..base.clone()
                            });
                        }
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                atoms.push(PolicyRule::urls(&[verb], &[url]));
            }
        }
        atoms
    }

    /// Whether this rule covers everything `sub` allows (`ruleCovers`).
    fn covers(&self, sub: &PolicyRule) -> bool {
        let verbs = has(&self.verbs, ALL) || has_all(&self.verbs, &sub.verbs);
        let groups = has(&self.api_groups, ALL) || has_all(&self.api_groups, &sub.api_groups);
        let resources = has(&self.resources, ALL)
            || sub.resources.iter().all(|wanted| {
                has(&self.resources, wanted)
                    || wanted.split_once('/').is_some_and(|(_, subresource)| {
                        has(&self.resources, &format!("*/{subresource}"))
                    })
            });
        let urls = sub.non_resource_urls.iter().all(|wanted| {
            self.non_resource_urls.iter().any(|owned| {
                owned == wanted
                    || owned
                        .strip_suffix('*')
                        .is_some_and(|prefix| wanted.starts_with(prefix))
            })
        });
        let names = self.resource_names.is_empty()
            || (!sub.resource_names.is_empty()
                && has_all(&self.resource_names, &sub.resource_names));
        verbs && groups && resources && urls && names
    }

    /// Whether the rule names one group and one resource (and at most one name) and no URL:
    /// such rules are merged by verb in messages.
    fn simple_key(&self) -> Option<(String, String, Option<String>)> {
        if !self.non_resource_urls.is_empty()
            || self.api_groups.len() != 1
            || self.resources.len() != 1
            || self.resource_names.len() > 1
        {
            return None;
        }
        Some((
            self.api_groups[0].clone(),
            self.resources[0].clone(),
            self.resource_names.first().cloned(),
        ))
    }
}

/// The parts of `wanted` that no rule of `owned` covers, one rule per group, resource and
/// name with the verbs merged (`Covers` then `CompactRules`), as compact strings sorted.
/// Empty when `owned` covers all of `wanted`.
pub fn uncovered(owned: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<String> {
    let mut missing: Vec<PolicyRule> = Vec::new();
    for rule in wanted {
        for atom in rule.atoms() {
            if !owned.iter().any(|o| o.covers(&atom)) {
                missing.push(atom);
            }
        }
    }
    let mut merged: Vec<PolicyRule> = Vec::new();
    let mut simple: std::collections::BTreeMap<(String, String, Option<String>), PolicyRule> =
        std::collections::BTreeMap::new();
    for rule in missing {
        match rule.simple_key() {
            Some(key) => match simple.get_mut(&key) {
                Some(existing) => existing.verbs.extend(rule.verbs),
                None => {
                    simple.insert(key, rule);
                }
            },
            None => merged.push(rule),
        }
    }
    merged.extend(simple.into_values());
    let mut descriptions: Vec<String> = merged.iter().map(PolicyRule::compact_string).collect();
    descriptions.sort();
    descriptions.dedup();
    descriptions
}

/// kube-apiserver's wording for an attempt to grant what one does not hold (the message of
/// the 403 that wraps it).
pub fn escalation_message(user: &User<'_>, missing: &[String]) -> String {
    let groups: Vec<String> = user.groups.iter().map(|g| crate::gofmt::quote(g)).collect();
    format!(
        "user {} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        crate::gofmt::quote(user.name),
        groups.join(" "),
        missing.join("\n")
    )
}

/// Whether a structured label selector (`matchLabels`, `matchExpressions` with `In`,
/// `NotIn`, `Exists`, `DoesNotExist`) matches `labels`. A selector that cannot be read
/// matches nothing; an empty one matches everything.
pub fn selector_matches(
    selector: &serde_json::Value,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let Some(selector) = selector.as_object() else {
        return false;
    };
    if let Some(match_labels) = selector.get("matchLabels") {
        let Some(match_labels) = match_labels.as_object() else {
            return false;
        };
        for (key, value) in match_labels {
            if labels.get(key).map(String::as_str) != value.as_str() {
                return false;
            }
        }
    }
    if let Some(expressions) = selector.get("matchExpressions") {
        let Some(expressions) = expressions.as_array() else {
            return false;
        };
        for expression in expressions {
            let (Some(key), Some(operator)) =
                (expression["key"].as_str(), expression["operator"].as_str())
            else {
                return false;
            };
            let values: Vec<&str> = expression["values"]
                .as_array()
                .map(|v| v.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let value = labels.get(key).map(String::as_str);
            let holds = match operator {
                "In" => value.is_some_and(|v| values.contains(&v)),
                "NotIn" => value.is_none_or(|v| !values.contains(&v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            };
            if !holds {
                return false;
            }
        }
    }
    true
}
