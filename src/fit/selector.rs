//! Required node affinity: `nodeSelectorTerms`, any one of which must match;
//! within a term every `matchExpressions` (on labels) and `matchFields` (on
//! `metadata.name`, the only field Kubernetes allows) requirement must hold.

use super::NodeShape;

/// One `NodeSelectorRequirement`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`.
    pub operator: String,
    pub values: Vec<String>,
}

/// One `NodeSelectorTerm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Term {
    pub match_expressions: Vec<Requirement>,
    pub match_fields: Vec<Requirement>,
}

impl Requirement {
    /// Whether the requirement holds for `value` (the label or field, if set).
    fn holds(&self, value: Option<&str>) -> bool {
        let int = |s: &str| s.parse::<i64>().ok();
        let first = self.values.first().and_then(|v| int(v));
        match self.operator.as_str() {
            "In" => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            "NotIn" => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            "Gt" => matches!((value.and_then(int), first), (Some(v), Some(x)) if v > x),
            "Lt" => matches!((value.and_then(int), first), (Some(v), Some(x)) if v < x),
            _ => false,
        }
    }

    fn describe(&self, actual: Option<&str>) -> String {
        let values = match self.operator.as_str() {
            "Exists" | "DoesNotExist" => String::new(),
            _ => format!(" [{}]", self.values.join(", ")),
        };
        let actual = match actual {
            Some(a) => format!("a new node has {a:?}"),
            None => "a new node does not have it".to_owned(),
        };
        format!("{} {}{values}: {actual}", self.key, self.operator)
    }
}

/// `Ok` if some term matches; otherwise why each term does not.
pub fn any_matches(terms: &[Term], node: &NodeShape) -> Result<(), Vec<String>> {
    if terms.is_empty() {
        return Err(vec![
            "the pod lists no nodeSelectorTerms, which match no node".into(),
        ]);
    }
    let mut why = Vec::new();
    for (i, term) in terms.iter().enumerate() {
        let label = |r: &Requirement| node.labels.get(&r.key).map(String::as_str);
        let field = |r: &Requirement| (r.key == "metadata.name").then_some(node.name.as_str());
        let failed = term
            .match_expressions
            .iter()
            .map(|r| (r, label(r)))
            .chain(term.match_fields.iter().map(|r| (r, field(r))))
            .find(|(r, actual)| !r.holds(*actual));
        let empty = term.match_expressions.is_empty() && term.match_fields.is_empty();
        match failed {
            None if !empty => return Ok(()),
            None => why.push(format!("term {}: empty, matches no node", i + 1)),
            Some((r, actual)) => why.push(format!("term {}: {}", i + 1, r.describe(actual))),
        }
    }
    Err(why)
}
