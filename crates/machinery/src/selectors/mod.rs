//! Kubernetes label and field selectors.
//!
//! [`LabelSelector`] parses the `labelSelector` query-parameter syntax
//! (`env in (prod,dev),!foo,tier!=db,x,count>5`) with the semantics of
//! Kubernetes' `labels.Parse`; [`FieldSelector`] parses the `fieldSelector`
//! syntax (`metadata.name=h1,metadata.namespace!=x`) with the semantics of
//! `fields.ParseSelector`. Error messages use the Kubernetes wording.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::validation;
use crate::gofmt::quote;

/// A selector that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    /// Human-readable description naming the problem and the offending text.
    pub message: String,
}

impl SelectorError {
    fn new(message: impl Into<String>) -> Self {
        SelectorError {
            message: message.into(),
        }
    }
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SelectorError {}

// ---------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------

/// Operator of a single label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One ANDed term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and de-duplicated, like Kubernetes' `sets.String.List()`.
    values: Vec<String>,
}

impl Requirement {
    /// Checks the operator/value combination and the values, like
    /// Kubernetes' `NewRequirement` (the key has already been validated).
    fn new(key: &str, operator: Operator, values: BTreeSet<String>) -> Result<Self, String> {
        let values: Vec<String> = values.into_iter().collect();
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (i, value) in values.iter().enumerate() {
                if value.parse::<i64>().is_err() {
                    return Err(format!(
                        "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                        quote(value)
                    ));
                }
            }
        }
        for value in &values {
            let errs = validation::label_value(value);
            if !errs.is_empty() {
                return Err(format!(
                    "invalid label value: {}: at key: {}: {}",
                    quote(value),
                    quote(key),
                    errs.join("; ")
                ));
            }
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    fn matches(&self, actual: Option<&str>) -> bool {
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                actual.is_some_and(|v| self.has_value(v))
            }
            Operator::NotEquals | Operator::NotIn => actual.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => actual.is_some(),
            Operator::DoesNotExist => actual.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(Ok(actual)) = actual.map(|v| v.parse::<i64>()) else {
                    return false;
                };
                let Some(Ok(bound)) = self.values.first().map(|v| v.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Exists => return f.write_str(&self.key),
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
        };
        let values = self.values.join(",");
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            write!(f, "{}{op}({values})", self.key)
        } else {
            write!(f, "{}{op}{values}", self.key)
        }
    }
}

/// Token kinds of the label-selector lexer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    Identifier,
    In,
    NotIn,
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    OpenParen,
    CloseParen,
    Comma,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits a label selector into tokens, always ending with [`Token::End`].
///
/// Scanning bytes is safe for slicing: every delimiter is ASCII, and bytes of
/// multi-byte UTF-8 characters are never delimiters.
fn lex(input: &str) -> Vec<(Token, &str)> {
    let bytes = input.as_bytes();
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && is_whitespace(bytes[i]) {
            i += 1;
        }
        if i >= bytes.len() {
            items.push((Token::End, ""));
            return items;
        }
        if is_special(bytes[i]) {
            let next_is_eq = bytes.get(i + 1) == Some(&b'=');
            let (token, len) = match bytes[i] {
                b'!' if next_is_eq => (Token::NotEquals, 2),
                b'=' if next_is_eq => (Token::DoubleEquals, 2),
                b'!' => (Token::DoesNotExist, 1),
                b'=' => (Token::Equals, 1),
                b'(' => (Token::OpenParen, 1),
                b')' => (Token::CloseParen, 1),
                b',' => (Token::Comma, 1),
                b'>' => (Token::GreaterThan, 1),
                _ => (Token::LessThan, 1),
            };
            items.push((token, &input[i..i + len]));
            i += len;
        } else {
            let start = i;
            while i < bytes.len() && !is_whitespace(bytes[i]) && !is_special(bytes[i]) {
                i += 1;
            }
            let literal = &input[start..i];
            let token = match literal {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            };
            items.push((token, literal));
        }
    }
}

/// Whether `in`/`notin` are keywords (operator position) or plain
/// identifiers (key and value positions).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

/// Recursive-descent parser over the token list.
struct Parser<'a> {
    items: Vec<(Token, &'a str)>,
    position: usize,
}

impl<'a> Parser<'a> {
    fn lookahead(&self, context: Context) -> (Token, &'a str) {
        let (token, literal) = self.items[self.position];
        match (context, token) {
            (Context::Values, Token::In | Token::NotIn) => (Token::Identifier, literal),
            _ => (token, literal),
        }
    }

    fn consume(&mut self, context: Context) -> (Token, &'a str) {
        let item = self.lookahead(context);
        if self.position + 1 < self.items.len() {
            self.position += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement = self.parse_requirement().map_err(|e| {
                        SelectorError::new(format!("unable to parse requirement: {e}"))
                    })?;
                    requirements.push(requirement);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let (next, next_literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(SelectorError::new(format!(
                                    "found '{next_literal}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::new(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Token::End => return Ok(requirements),
                _ => {
                    return Err(SelectorError::new(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = inferred {
            return Requirement::new(key, operator, BTreeSet::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(key, operator, values)
    }

    /// Reads `key` or `!key`; returns the operator when it is already known
    /// (`Exists`/`DoesNotExist`), `None` when a binary operator must follow.
    fn parse_key_and_infer_operator(&mut self) -> Result<(&'a str, Option<Operator>), String> {
        let (mut token, mut literal) = self.consume(Context::Values);
        let negated = token == Token::DoesNotExist;
        if negated {
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        let errs = validation::label_key(literal);
        if !errs.is_empty() {
            return Err(format!(
                "invalid label key {}: {}",
                quote(literal),
                errs.join("; ")
            ));
        }
        if negated {
            return Ok((literal, Some(Operator::DoesNotExist)));
        }
        let (next, _) = self.lookahead(Context::Values);
        if next == Token::End || next == Token::Comma {
            return Ok((literal, Some(Operator::Exists)));
        }
        Ok((literal, None))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            _ => {
                return Err(format!(
                    "found '{literal}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    /// Parses `( v1, v2, ... )`. Like Kubernetes, missing entries (`()`,
    /// `(a,)`, `(,a)`, `(a,,b)`) stand for the empty value.
    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenParen {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (token, _) = self.consume(Context::Values);
                if token != Token::CloseParen {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::CloseParen => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            )),
        }
    }

    /// Parses the inside of a value list, stopping before the `)`.
    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut values = BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.insert(literal.to_string());
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => {}
                        Token::CloseParen => return Ok(values),
                        _ => return Err(format!("found '{next_literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new()); // "(,"
                    }
                    match self.lookahead(Context::Values).0 {
                        Token::CloseParen => {
                            values.insert(String::new()); // ",)"
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.consume(Context::Values);
                            values.insert(String::new()); // ",,"
                        }
                        _ => {}
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    /// Parses the single value after `=`, `==`, `!=`, `>` or `<`; a missing
    /// value (end of input or `,`) is the empty value.
    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (token, _) = self.lookahead(Context::Values);
        if token == Token::End || token == Token::Comma {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(BTreeSet::from([literal.to_string()]))
        } else {
            Err(format!("found '{literal}', expected: identifier"))
        }
    }
}

/// A label selector: a list of requirements that must all hold.
///
/// The [`Display`](fmt::Display) form is the canonical Kubernetes string
/// (requirements sorted by key, set values sorted and de-duplicated), which
/// parses back to an equal selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key (stable), as Kubernetes does.
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the query-parameter form, e.g.
    /// `env in (prod,dev),!foo,tier!=db,x,count>5`.
    ///
    /// Requirements are separated by commas and ANDed; whitespace is allowed
    /// around tokens. Supported forms: `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
    /// `k notin (a,b)`, `k`, `!k`, `k>N`, `k<N`. Keys must be valid label
    /// keys and values valid label values (empty values are allowed). An
    /// empty or all-whitespace input gives [`LabelSelector::everything`].
    pub fn parse(input: &str) -> Result<LabelSelector, SelectorError> {
        let mut parser = Parser {
            items: lex(input),
            position: 0,
        };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// The selector without requirements, which matches every object.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// Whether every requirement holds for `labels`.
    ///
    /// `!=` and `notin` hold when the key is absent; `>`/`<` fail when the
    /// key is absent or its value is not a 64-bit integer.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_by(|key| labels.get(key).map(String::as_str))
    }

    /// [`LabelSelector::matches`] for labels kept in another shape: `label` gives the
    /// value of a key.
    pub fn matches_by<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| r.matches(label(&r.key)))
    }

    /// Whether the selector has no requirements (and so matches everything).
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The `(key, value)` pairs of requirements that pin a key to exactly one
    /// value: `key=value`, `key==value` and `key in (value)`. Useful for an
    /// index lookup; the remaining requirements still have to be checked
    /// with [`LabelSelector::matches`]. Sorted by key.
    pub fn equality_requirements(&self) -> Vec<(&str, &str)> {
        self.requirements
            .iter()
            .filter(|r| {
                matches!(
                    r.operator,
                    Operator::Equals | Operator::DoubleEquals | Operator::In
                ) && r.values.len() == 1
            })
            .map(|r| (r.key.as_str(), r.values[0].as_str()))
            .collect()
    }
}

/// A requirement only an object carrying a given label key can meet, as an index sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositiveRequirement<'a> {
    /// `key=v`, `key==v` or `key in (v1,v2)`: the label has one of these values (sorted,
    /// de-duplicated, never empty).
    Values(&'a str, &'a [String]),
    /// `key`, and also `key>N` / `key<N` (which fail when the key is absent): the label exists.
    Exists(&'a str),
}

impl PositiveRequirement<'_> {
    /// The label key the requirement is about.
    pub fn key(&self) -> &str {
        match self {
            PositiveRequirement::Values(key, _) | PositiveRequirement::Exists(key) => key,
        }
    }
}

impl LabelSelector {
    /// The requirements that only objects carrying some label can meet, in key order: what a
    /// label index can look up. An object matching the selector meets every one of them (the
    /// converse does not hold: `!=`, `notin`, `!key` and the bounds of `>`/`<` still have to be
    /// checked with [`LabelSelector::matches`]). Empty when no requirement is positive, e.g.
    /// for `env!=prod` or the empty selector.
    pub fn positive_requirements(&self) -> Vec<PositiveRequirement<'_>> {
        self.requirements
            .iter()
            .filter_map(|r| match r.operator {
                Operator::Equals | Operator::DoubleEquals | Operator::In
                    if !r.values.is_empty() =>
                {
                    Some(PositiveRequirement::Values(&r.key, &r.values))
                }
                Operator::Exists | Operator::GreaterThan | Operator::LessThan => {
                    Some(PositiveRequirement::Exists(&r.key))
                }
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------

/// Operator of one field-selector term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldOperator {
    Equals,
    DoubleEquals,
    NotEquals,
}

/// One ANDed term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    operator: FieldOperator,
    /// Unescaped value.
    value: String,
}

/// Splits on commas not preceded by an escaping backslash.
fn split_terms(input: &str) -> Vec<&str> {
    if input.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&input[start..i]);
            start = i + 1;
        }
    }
    terms.push(&input[start..]);
    terms
}

/// Splits `lhs op rhs` at the first operator (`!=`, `==` or `=`).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    const OPERATORS: [(&str, FieldOperator); 3] = [
        ("!=", FieldOperator::NotEquals),
        ("==", FieldOperator::DoubleEquals),
        ("=", FieldOperator::Equals),
    ];
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (text, operator) in OPERATORS {
            if let Some(rhs) = rest.strip_prefix(text) {
                return Some((&term[..i], operator, rhs));
            }
        }
    }
    None
}

/// Removes the backslash escapes `\\`, `\,` and `\=` from a value; any other
/// escape, a trailing backslash, or an unescaped `,`/`=` is an error.
fn unescape_value(value: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::new(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' || c == '=' {
            return Err(SelectorError::new(format!(
                "invalid field selector: unescaped character in value: {c}"
            )));
        } else {
            out.push(c);
        }
    }
    if escaped {
        return Err(SelectorError::new(
            "invalid field selector: invalid escape sequence: \\",
        ));
    }
    Ok(out)
}

/// Escapes `\`, `,` and `=` in a value (inverse of [`unescape_value`]).
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A field selector: a list of `field=value`/`field!=value` terms that must
/// all hold.
///
/// Like Kubernetes, terms are kept sorted by their source text. The
/// [`Display`](fmt::Display) form (`f=v` / `f!=v`, values re-escaped) parses
/// back to an equal selector up to `==` being written as `=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses `metadata.name=h1,metadata.namespace!=x`.
    ///
    /// Terms are separated by unescaped commas (empty terms are ignored);
    /// each is `field=value`, `field==value` or `field!=value`, split at the
    /// first operator. Values may be empty and may contain the escapes
    /// `\,`, `\=` and `\\`. Field names are not checked here; see
    /// [`FieldSelector::fields`].
    pub fn parse(input: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_terms(input);
        parts.sort_unstable();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, operator, raw_value)) = split_term(part) else {
                return Err(SelectorError::new(format!(
                    "invalid selector: '{input}'; can't understand '{part}'"
                )));
            };
            terms.push(FieldTerm {
                field: field.to_string(),
                operator,
                value: unescape_value(raw_value)?,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// The selector without terms, which matches every object.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// Whether the selector has no terms (and so matches everything).
    pub fn is_everything(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether every field the selector mentions is one of `names` (without allocating:
    /// asked once per object of a selected list).
    pub fn names_only(&self, names: &[&str]) -> bool {
        self.terms
            .iter()
            .all(|term| names.contains(&term.field.as_str()))
    }

    /// The distinct field names the selector mentions, in term order, so the
    /// caller can reject unsupported ones.
    pub fn fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = Vec::new();
        for term in &self.terms {
            if !fields.contains(&term.field.as_str()) {
                fields.push(&term.field);
            }
        }
        fields
    }

    /// Whether every term holds. `lookup` returns the value of a field for
    /// the object; `None` (field absent) is treated as the empty string, so
    /// `f!=x` matches an object without `f` and `f=` matches it too.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|term| {
            let actual = lookup(&term.field).unwrap_or_default();
            match term.operator {
                FieldOperator::Equals | FieldOperator::DoubleEquals => actual == term.value,
                FieldOperator::NotEquals => actual != term.value,
            }
        })
    }

    /// If a term pins `field` to one value with `=` or `==`, that value
    /// (e.g. `metadata.name` for a single-object watch). With several such
    /// terms the first in sorted order wins, as in Kubernetes.
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.operator != FieldOperator::NotEquals)
            .map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, term) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match term.operator {
                FieldOperator::NotEquals => "!=",
                _ => "=",
            };
            write!(f, "{}{op}{}", term.field, escape_value(&term.value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
