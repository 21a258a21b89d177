//! `fleetdb get`: objects as kubectl prints them, now or `--as-of` an instant, printed page
//! by page as the pages arrive.
//!
//! Tables and names are read as server-side Tables without their objects
//! (`includeObject=None`; `Metadata` only when a NAMESPACE column needs it), so neither the
//! server nor this client decodes an object to print a row: the 100,000-host fleet prints
//! in seconds where kubectl, which asks for every row's metadata and decodes it, needs a
//! minute. Table columns are as wide as the widest cell seen so far: a later page with a
//! wider cell widens the columns from there on, as `kubectl get --watch` does.

use std::io::Write;

use anyhow::Context;
use kube::Client;
use serde_json::Value;

use super::{Output, Resource, TABLE, aligned, as_of, get_json, query, resolve, serialize, widen};

/// Objects per page unless `--chunk-size` says otherwise (kubectl's default).
pub const CHUNK_SIZE: usize = 500;

/// What `fleetdb get` reads.
pub struct GetRequest<'a> {
    pub resource: &'a str,
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub all_namespaces: bool,
    pub as_of: Option<&'a str>,
    pub label_selector: Option<&'a str>,
    pub field_selector: Option<&'a str>,
    pub output: Output,
    /// Objects per page (`0`: [`CHUNK_SIZE`]).
    pub chunk_size: usize,
}

/// `fleetdb get`: writes the objects to `out` as kubectl prints them, each page as it comes.
pub async fn get(
    client: &Client,
    request: &GetRequest<'_>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let resource = resolve(client, request.resource).await?;
    let as_of = request.as_of.map(as_of).transpose()?;
    let namespace = if request.all_namespaces {
        None
    } else {
        Some(request.namespace.unwrap_or("default"))
    };
    let with_namespace = request.all_namespaces && resource.namespaced;
    let mut printer = Printer::new(&resource, request.output, with_namespace);
    // Rows carry what the printer reads of their objects: nothing, or the namespace.
    let include = (request.output != Output::Json && request.output != Output::Yaml)
        .then_some(if with_namespace { "Metadata" } else { "None" });
    let accept = include.map(|_| TABLE);
    if let Some(name) = request.name {
        let path = format!(
            "{}{}",
            resource.object(namespace.unwrap_or("default"), name),
            query(&[("asOf", as_of.as_deref()), ("includeObject", include)])
        );
        let answer = get_json(client, &path, accept).await?;
        printer.single(answer, out)?;
        return printer.finish(out);
    }
    let limit = match request.chunk_size {
        0 => CHUNK_SIZE,
        n => n,
    }
    .to_string();
    let mut token: Option<String> = None;
    loop {
        let path = format!(
            "{}{}",
            resource.collection(namespace),
            query(&[
                // A continued list keeps the revision its first page was read at.
                ("asOf", as_of.as_deref().filter(|_| token.is_none())),
                ("labelSelector", request.label_selector),
                ("fieldSelector", request.field_selector),
                ("limit", Some(&limit)),
                ("continue", token.as_deref()),
                ("includeObject", include),
            ])
        );
        let mut answer = get_json(client, &path, accept).await?;
        token = answer["metadata"]["continue"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        printer.page(&mut answer, out)?;
        if token.is_none() {
            break;
        }
    }
    printer.finish(out)
}

/// Prints pages of an answer in one output format.
struct Printer<'r> {
    resource: &'r Resource,
    output: Output,
    with_namespace: bool,
    /// Table columns: their definitions and which are shown.
    shown: Option<Vec<usize>>,
    widths: Vec<usize>,
    /// Rows or items printed so far.
    printed: usize,
    /// A single object was asked for (JSON and YAML print it alone, not in a List).
    single: bool,
}

impl<'r> Printer<'r> {
    fn new(resource: &'r Resource, output: Output, with_namespace: bool) -> Self {
        Self {
            resource,
            output,
            with_namespace,
            shown: None,
            widths: Vec::new(),
            printed: 0,
            single: false,
        }
    }

    fn single(&mut self, answer: Value, out: &mut impl Write) -> anyhow::Result<()> {
        match self.output {
            Output::Json | Output::Yaml => {
                self.single = true;
                out.write_all(serialize(&answer, self.output)?.as_bytes())?;
                self.printed = 1;
                Ok(())
            }
            _ => {
                let mut answer = answer;
                self.page(&mut answer, out)
            }
        }
    }

    /// Prints one page: a Table's rows, or a list's items.
    fn page(&mut self, answer: &mut Value, out: &mut impl Write) -> anyhow::Result<()> {
        match self.output {
            Output::Table | Output::Wide => self.rows(answer, out)?,
            Output::Name => {
                let name = name_column(&answer["columnDefinitions"]);
                let mut text = String::new();
                for row in rows(answer) {
                    let name = row["cells"][name].as_str().unwrap_or_default();
                    text.push_str(&self.resource.name_for(name));
                    text.push('\n');
                    self.printed += 1;
                }
                out.write_all(text.as_bytes())?;
            }
            Output::Json | Output::Yaml => {
                let items = std::mem::take(&mut answer["items"]);
                for item in items.as_array().into_iter().flatten() {
                    self.item(item, out)?;
                }
            }
        }
        out.flush().context("writing the output")
    }

    fn rows(&mut self, answer: &Value, out: &mut impl Write) -> anyhow::Result<()> {
        let mut lines: Vec<Vec<String>> = Vec::new();
        if self.shown.is_none() {
            let columns = answer["columnDefinitions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let wide = self.output == Output::Wide;
            let shown: Vec<usize> = columns
                .iter()
                .enumerate()
                .filter(|(_, c)| wide || c["priority"].as_i64().unwrap_or(0) == 0)
                .map(|(i, _)| i)
                .collect();
            let mut header: Vec<String> = Vec::new();
            if self.with_namespace {
                header.push("NAMESPACE".into());
            }
            header.extend(shown.iter().map(|i| {
                columns[*i]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_uppercase()
            }));
            lines.push(header);
            self.shown = Some(shown);
        }
        let shown = self.shown.as_deref().unwrap_or_default();
        for row in rows(answer) {
            let mut line = Vec::with_capacity(shown.len() + 1);
            if self.with_namespace {
                line.push(
                    row["object"]["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            line.extend(shown.iter().map(|i| cell(&row["cells"][*i])));
            lines.push(line);
            self.printed += 1;
        }
        if self.printed == 0 {
            // Nothing yet: the header waits for a row.
            self.shown = None;
            return Ok(());
        }
        widen(&mut self.widths, &lines);
        out.write_all(aligned(&lines, &self.widths).as_bytes())?;
        Ok(())
    }

    /// One item of a JSON or YAML List, printed as it would be inside the whole List.
    fn item(&mut self, item: &Value, out: &mut impl Write) -> anyhow::Result<()> {
        let text = serialize(item, self.output)?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let mut printed = String::with_capacity(text.len() + text.len() / 8);
        match self.output {
            Output::Json => {
                printed.push_str(if self.printed == 0 {
                    "{\n  \"apiVersion\": \"v1\",\n  \"items\": [\n"
                } else {
                    ",\n"
                });
                for (i, line) in text.lines().enumerate() {
                    if i > 0 {
                        printed.push('\n');
                    }
                    printed.push_str("    ");
                    printed.push_str(line);
                }
            }
            _ => {
                if self.printed == 0 {
                    printed.push_str("apiVersion: v1\nitems:\n");
                }
                for (i, line) in text.lines().enumerate() {
                    printed.push_str(if i == 0 { "- " } else { "  " });
                    printed.push_str(line);
                    printed.push('\n');
                }
            }
        }
        self.printed += 1;
        out.write_all(printed.as_bytes())?;
        Ok(())
    }

    /// Ends the output: closes a List, or says nothing was found.
    fn finish(&mut self, out: &mut impl Write) -> anyhow::Result<()> {
        let end = match (self.output, self.printed, self.single) {
            (_, _, true) => "",
            (Output::Json, 0, _) => {
                "{\n  \"apiVersion\": \"v1\",\n  \"items\": [],\n  \"kind\": \"List\"\n}\n"
            }
            (Output::Json, _, _) => "\n  ],\n  \"kind\": \"List\"\n}\n",
            (Output::Yaml, 0, _) => "apiVersion: v1\nitems: []\nkind: List\n",
            (Output::Yaml, _, _) => "kind: List\n",
            (Output::Table | Output::Wide, 0, _) => "No resources found.\n",
            _ => "",
        };
        out.write_all(end.as_bytes())?;
        out.flush().context("writing the output")
    }
}

/// A Table's rows.
fn rows(answer: &Value) -> &[Value] {
    answer["rows"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The index of a Table's name column (`format: name`; the first column otherwise).
fn name_column(columns: &Value) -> usize {
    columns
        .as_array()
        .and_then(|c| c.iter().position(|c| c["format"] == "name"))
        .unwrap_or(0)
}

/// A cell as kubectl prints it (`<none>` for nothing).
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "<none>".to_owned(),
        Value::String(s) if s.is_empty() => "<none>".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hosts() -> Resource {
        Resource {
            base: "/apis/fleetdb.io/v1alpha1".into(),
            group: "fleetdb.io".into(),
            plural: "hosts".into(),
            kind: "Host".into(),
            namespaced: false,
        }
    }

    fn print(output: Output, pages: &[Value]) -> String {
        let resource = hosts();
        let mut printer = Printer::new(&resource, output, false);
        let mut out = Vec::new();
        for page in pages {
            printer.page(&mut page.clone(), &mut out).unwrap();
        }
        printer.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// A List printed item by item is the List printed whole.
    #[test]
    fn lists_printed_in_pages_are_the_whole_list() {
        let items: Vec<Value> = (0..3)
            .map(|i| json!({"metadata": {"name": format!("h{i}"), "labels": {"a": "b"}}, "spec": {"text": "two\nlines\n", "n": [1, 2]}}))
            .collect();
        let pages = [
            json!({"items": items[..2]}),
            json!({"items": []}),
            json!({"items": items[2..]}),
        ];
        let whole = json!({"apiVersion": "v1", "kind": "List", "items": items});
        assert_eq!(
            print(Output::Json, &pages),
            serialize(&whole, Output::Json).unwrap()
        );
        let yaml: Value = serde_saphyr::from_str(&print(Output::Yaml, &pages)).unwrap();
        assert_eq!(yaml, whole);
        let empty = json!({"apiVersion": "v1", "kind": "List", "items": []});
        let json_empty: Value = serde_json::from_str(&print(Output::Json, &[])).unwrap();
        assert_eq!(json_empty, empty);
        let yaml_empty: Value = serde_saphyr::from_str(&print(Output::Yaml, &[])).unwrap();
        assert_eq!(yaml_empty, empty);
    }

    #[test]
    fn tables_print_page_by_page_and_widen_as_needed() {
        let columns = json!([
            {"name": "Name", "format": "name", "priority": 0},
            {"name": "Role", "priority": 0},
            {"name": "Address", "priority": 1},
        ]);
        let pages = [
            json!({"columnDefinitions": columns, "rows": [{"cells": ["a", "web", "10.0.0.1"]}, {"cells": ["bb", "", "10.0.0.2"]}]}),
            json!({"columnDefinitions": columns, "rows": [{"cells": ["a-much-longer-name", "db", null]}]}),
        ];
        assert_eq!(
            print(Output::Table, &pages),
            "NAME   ROLE\na      web\nbb     <none>\na-much-longer-name   db\n"
        );
        assert_eq!(
            print(Output::Wide, &pages[..1]),
            "NAME   ROLE     ADDRESS\na      web      10.0.0.1\nbb     <none>   10.0.0.2\n"
        );
        assert_eq!(
            print(Output::Name, &pages),
            "host.fleetdb.io/a\nhost.fleetdb.io/bb\nhost.fleetdb.io/a-much-longer-name\n"
        );
        let empty = json!({"columnDefinitions": columns, "rows": []});
        assert_eq!(print(Output::Table, &[empty]), "No resources found.\n");
    }
}
