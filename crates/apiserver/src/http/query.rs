//! Query parameters of API requests.
//!
//! Clients send odd but legal query strings: kube-rs starts them with `?&`, kubectl appends
//! `timeout=32s`, discovery clients add `hash=`. Empty segments and unknown parameters are
//! ignored; known ones with bad values are a 400 naming the parameter.

use std::collections::HashMap;

use crate::api::ApiError;

/// The parsed query string.
#[derive(Debug, Default)]
pub struct Query {
    values: HashMap<String, String>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let values = raw
            .map(|raw| {
                form_urlencoded::parse(raw.as_bytes())
                    .filter(|(k, _)| !k.is_empty())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self { values }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Whether the parameter is present at all, with or without a value (`?verbose`).
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A boolean parameter: `true`/`1` or `false`/`0`; absent is false.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.values.get(name).map(String::as_str) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value {other:?} for parameter {name}: expected true or false"
            ))),
        }
    }

    /// A non-negative integer parameter.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "invalid value {v:?} for parameter {name}: expected a non-negative integer"
                    ))
                })
            })
            .transpose()
    }
}
