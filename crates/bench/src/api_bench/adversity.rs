//! The adversarial scenarios of the API benchmark: `hostile` (a pathological schema pattern),
//! `clients` (idle, slow and watch-looping clients beside a create load) and `authz` (what
//! RBAC costs on every request).

use super::*;

/// How hostile clients fared against the server's limits.
#[derive(Default)]
struct Hostility {
    idle_opened: AtomicUsize,
    idle_still_open: AtomicUsize,
    idle_refused: AtomicUsize,
    watches_opened: AtomicUsize,
    watches_refused: AtomicUsize,
    slow_header_closed_after_ms: AtomicUsize,
}

/// Opens `count` TLS connections without a certificate and holds them, sending nothing.
async fn hold_idle_connections(
    server: &FleetdbProcess,
    count: usize,
    hostility: &Hostility,
    stop: &std::sync::atomic::AtomicBool,
    opened: &tokio::sync::Notify,
) {
    let mut held = Vec::new();
    for _ in 0..count {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match crate::h2client::Credentials::connect_anonymous(&server.data_dir, server.address())
            .await
        {
            Ok(connection) => {
                hostility.idle_opened.fetch_add(1, Ordering::Relaxed);
                held.push(connection);
            }
            Err(_) => {
                hostility.idle_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    opened.notify_one();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Which of them the server still keeps open.
    use tokio::io::AsyncReadExt;
    let mut open = 0;
    for mut connection in held {
        let mut probe = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(1), connection.read(&mut probe))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    hostility.idle_still_open.store(open, Ordering::Relaxed);
}

/// Sends a request's headers one byte a second until the server closes the connection.
async fn slow_headers(
    server: &FleetdbProcess,
    hostility: &Hostility,
    stop: &std::sync::atomic::AtomicBool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut connection) =
        crate::h2client::Credentials::connect_anonymous(&server.data_dir, server.address()).await
    else {
        return;
    };
    let started = Instant::now();
    let headers = b"GET /healthz HTTP/1.1\r\nHost: fleetdb\r\nX-Slow: ".repeat(4);
    for byte in headers {
        if stop.load(Ordering::Relaxed) || connection.write_all(&[byte]).await.is_err() {
            break;
        }
        let mut probe = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(1), connection.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            _ => {}
        }
    }
    hostility
        .slow_header_closed_after_ms
        .store(started.elapsed().as_millis() as usize, Ordering::Relaxed);
}

/// One identity opening watches in a loop, each kept open.
async fn watch_loop(
    server: &FleetdbProcess,
    hostility: &Hostility,
    stop: &std::sync::atomic::AtomicBool,
) {
    // An identity that may watch hosts (the inventory reader's group), and nothing more.
    let Ok(credentials) = crate::h2client::Credentials::for_user(
        &server.data_dir,
        server.address(),
        "watch-looper",
        &[fleetdb::security::INVENTORY_GROUP],
    ) else {
        return;
    };
    let mut connection = None;
    let mut held = Vec::new();
    let mut on_connection = 0;
    while !stop.load(Ordering::Relaxed) {
        if connection.is_none() || on_connection >= WATCHES_PER_CONNECTION {
            connection = credentials.connect().await.ok();
            on_connection = 0;
        }
        let Some(client) = &connection else { break };
        match client
            .start(
                Method::GET,
                &format!("{HOSTS}?watch=true"),
                None,
                Bytes::new(),
            )
            .await
        {
            Ok(response) if response.status() == StatusCode::OK => {
                hostility.watches_opened.fetch_add(1, Ordering::Relaxed);
                held.push(response);
                on_connection += 1;
            }
            Ok(_) => {
                hostility.watches_refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                connection = None;
            }
        }
    }
}

pub(super) async fn hostile_clients(
    workspace: &Workspace,
    idle: usize,
    creates: usize,
) -> anyhow::Result<()> {
    println!(
        "\n## clients: {LOAD_CLIENTS} administrator clients creating {creates} hosts, alone and beside {idle} idle TLS connections without certificates, a slow-header client and one identity opening watches in a loop"
    );
    let server =
        FleetdbProcess::start(&workspace.server_dir("clients")?, Backend::Embedded).await?;
    let cpu_before = server.cpu_seconds().unwrap_or(0.0);
    let mut undisturbed = create_hosts(&server, "calm-", 0..creates, LOAD_CLIENTS).await?;
    let calm_cpu = server.cpu_seconds().unwrap_or(0.0) - cpu_before;
    let hostility = Hostility::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let opened = tokio::sync::Notify::new();
    let attack = async {
        tokio::join!(
            hold_idle_connections(&server, idle, &hostility, &stop, &opened),
            slow_headers(&server, &hostility, &stop),
            watch_loop(&server, &hostility, &stop),
        );
    };
    let load = async {
        // The idle connections are opened first (the server keeps some, closes the rest),
        // and held while the administrator's load runs beside the other two.
        let _ = tokio::time::timeout(Duration::from_secs(120), opened.notified()).await;
        let cpu_before = server.cpu_seconds().unwrap_or(0.0);
        let measured = create_hosts(&server, "busy-", 0..creates, LOAD_CLIENTS).await;
        let cpu = server.cpu_seconds().unwrap_or(0.0) - cpu_before;
        stop.store(true, Ordering::Relaxed);
        measured.map(|m| (m, cpu))
    };
    let ((), during) = tokio::join!(attack, load);
    let (mut during, busy_cpu) = during?;
    println!();
    println!(
        "| administrator's creates | creates/s | p50 ms | p99 ms | server CPU µs per create |"
    );
    println!("|---|---|---|---|---|");
    for (label, m, cpu) in [
        ("undisturbed", &mut undisturbed, calm_cpu),
        ("beside the hostile clients", &mut during, busy_cpu),
    ] {
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} | {:.0} |",
            m.per_second,
            m.p50_ms,
            m.p99_ms,
            cpu * 1e6 / creates as f64
        );
    }
    println!();
    println!(
        "Throughput kept: {:.0} %. Idle connections without a certificate: {} handshakes completed ({} failed), {} still open at the end. Slow-header client closed after {:.1} s. Watch loop: {} watches open, {} refused (429).",
        during.per_second / undisturbed.per_second * 100.0,
        hostility.idle_opened.load(Ordering::Relaxed),
        hostility.idle_refused.load(Ordering::Relaxed),
        hostility.idle_still_open.load(Ordering::Relaxed),
        hostility
            .slow_header_closed_after_ms
            .load(Ordering::Relaxed) as f64
            / 1000.0,
        hostility.watches_opened.load(Ordering::Relaxed),
        hostility.watches_refused.load(Ordering::Relaxed),
    );
    Ok(())
}

/// The CRD of the hostile scenario: `spec.text` must match nested bounded repetitions.
const HOSTILE_PATTERN: &str = "^(a|aa|a{1,20}){1,20}(b+b+)+$";

/// Clients reading hosts beside the hostile creates.
const READERS: usize = 4;

/// Reads of one host by `READERS` clients until `stop`; their latencies.
async fn read_hosts(
    server: &FleetdbProcess,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Latencies> {
    let mut tasks = Vec::new();
    for connection in connections(server, READERS).await? {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let (status, _) = connection
                    .call(
                        Method::GET,
                        &format!("{HOSTS}/{}", hosts::name("host-", 0)),
                        None,
                        Bytes::new(),
                    )
                    .await?;
                latencies.record(sent.elapsed());
                anyhow::ensure!(status == StatusCode::OK, "read: {status}");
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Latencies::default();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(latencies)
}

pub(super) async fn hostile(workspace: &Workspace, creates: usize) -> anyhow::Result<()> {
    println!(
        "\n## hostile: {creates} creates of a 1 MiB string against `{HOSTILE_PATTERN}`, {READERS} clients reading a host beside them"
    );
    let server =
        FleetdbProcess::start(&workspace.server_dir("hostile")?, Backend::Embedded).await?;
    create_hosts(&server, "host-", 0..1, 1).await?;
    let admin = server.connect().await?;
    let crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                    "type": "object", "properties": {"text": {"type": "string", "pattern": HOSTILE_PATTERN}}}}}}}]}});
    let (status, answer) = admin
        .call(
            Method::POST,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Some("application/json"),
            Bytes::from(crd.to_string()),
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "CRD: {status}: {}",
        String::from_utf8_lossy(&answer)
    );
    // Reads on an idle server first.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (idle_reads, ()) = tokio::join!(read_hosts(&server, stop.clone()), async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
    });
    let mut idle_reads = idle_reads?;
    // Then the same reads while the hostile creates run.
    let body = Bytes::from(
        serde_json::json!({"apiVersion": "example.com/v1", "kind": "Thing",
            "metadata": {"name": "big"}, "spec": {"text": "a".repeat(1 << 20)}})
        .to_string(),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let creating = async {
        let mut latencies = Latencies::default();
        let result = async {
            for _ in 0..creates {
                let sent = Instant::now();
                let (status, _) = admin
                    .call(
                        Method::POST,
                        "/apis/example.com/v1/namespaces/default/things",
                        Some("application/json"),
                        body.clone(),
                    )
                    .await?;
                latencies.record(sent.elapsed());
                anyhow::ensure!(
                    status == StatusCode::UNPROCESSABLE_ENTITY,
                    "hostile create: {status}"
                );
            }
            anyhow::Ok(())
        }
        .await;
        // The readers stop whatever happened.
        stop.store(true, Ordering::Relaxed);
        result.map(|()| latencies)
    };
    let (busy_reads, creates_latency) = tokio::join!(read_hosts(&server, stop.clone()), creating);
    let (mut busy_reads, mut creates_latency) = (busy_reads?, creates_latency?);
    println!();
    println!("| what | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|");
    println!(
        "| create of a 1 MiB string (refused, 422) | {:.2} | {:.2} | {:.2} |",
        creates_latency.quantile_ms(0.5),
        creates_latency.quantile_ms(0.99),
        creates_latency.quantile_ms(1.0)
    );
    println!(
        "| host reads, idle server | {:.2} | {:.2} | {:.2} |",
        idle_reads.quantile_ms(0.5),
        idle_reads.quantile_ms(0.99),
        idle_reads.quantile_ms(1.0)
    );
    println!(
        "| host reads beside the creates | {:.2} | {:.2} | {:.2} |",
        busy_reads.quantile_ms(0.5),
        busy_reads.quantile_ms(0.99),
        busy_reads.quantile_ms(1.0)
    );
    Ok(())
}

/// Bindings of other users beside the measured identity's, in `authz`: RBAC looks at the
/// asking user's and groups' grants only, so their number should not show.
const DECOY_BINDINGS: usize = 1_000;

/// The cost of authorization. The same server answers three identities in turn:
/// the administrator (`system:masters`, allowed before RBAC is consulted), a second member
/// of `system:masters` issued like the editor (the control: a second identity on connections
/// of its own, without RBAC), and an editor whose permission comes through RBAC — its group
/// bound to `edit`, which aggregates `view` and the fleet's rules — beside
/// [`DECOY_BINDINGS`] other bindings. RBAC's cost is the editor against the control. Rounds
/// rotate the order; medians are compared.
pub(super) async fn authorization(
    workspace: &Workspace,
    writes: usize,
    hosts: usize,
) -> anyhow::Result<()> {
    const ROUNDS: usize = 5;
    const WHO: [&str; 3] = [
        "administrator (system:masters)",
        "control: second identity in system:masters",
        "editor through RBAC",
    ];
    println!(
        "\n## authz: RBAC on every request — {LOAD_CLIENTS} clients creating {writes} hosts per round, and the unpaged list of {hosts} hosts, as the administrator, a second member of system:masters, and an editor bound through RBAC beside {DECOY_BINDINGS} other bindings ({ROUNDS} rounds each, order rotating; medians)"
    );
    let server = FleetdbProcess::start(&workspace.server_dir("authz")?, Backend::Embedded).await?;
    let (control, editor) = identities_beside_decoys(&server).await?;
    let mut creates: [Vec<f64>; 3] = Default::default();
    for round in 0..ROUNDS {
        // The store grows as the run goes on: each identity takes each place in turn.
        let mut order = [(0, &server.credentials), (1, &control), (2, &editor)];
        order.rotate_left(round % 3);
        for (who, credentials) in order {
            let prefix = format!("a{round}-{who}-");
            let measured = create_hosts_as(credentials, &prefix, 0..writes, LOAD_CLIENTS).await?;
            creates[who].push(measured.per_second);
        }
    }
    drop(server);
    // The list: a server with `hosts` hosts and the same policy; each identity lists once
    // before the measured rounds (connections warmed alike).
    let server =
        FleetdbProcess::start(&workspace.server_dir("authz-list")?, Backend::Embedded).await?;
    let (control, editor) = identities_beside_decoys(&server).await?;
    create_hosts(&server, "host-", 0..hosts, LOAD_CLIENTS).await?;
    let clients = [
        server.connect().await?,
        control.connect().await?,
        editor.connect().await?,
    ];
    for client in &clients {
        timed_list(client, HOSTS, false).await?;
    }
    let mut lists: [Vec<f64>; 3] = Default::default();
    for round in 0..ROUNDS {
        let mut order = [0, 1, 2];
        order.rotate_left(round % 3);
        for who in order {
            let (time, items, _, _) = timed_list(&clients[who], HOSTS, false).await?;
            anyhow::ensure!(items == hosts, "the list had {items} hosts of {hosts}");
            lists[who].push(time.as_secs_f64() * 1e3);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let creates: Vec<f64> = creates.iter_mut().map(median).collect();
    let lists: Vec<f64> = lists.iter_mut().map(median).collect();
    println!();
    println!("| identity | creates/s ({LOAD_CLIENTS} clients) | list of {hosts} hosts, ms |");
    println!("|---|---|---|");
    for who in 0..3 {
        println!("| {} | {:.0} | {:.0} |", WHO[who], creates[who], lists[who]);
    }
    println!(
        "| RBAC's cost (editor against the control) | {:+.1} % | {:+.1} % |",
        (creates[1] / creates[2] - 1.0) * 100.0,
        (lists[2] / lists[1] - 1.0) * 100.0
    );
    println!(
        "\none RBAC decision for the editor, beside {DECOY_BINDINGS} other bindings, in this process: {:.2} µs",
        decision_micros()
    );
    Ok(())
}

/// Creates [`DECOY_BINDINGS`] bindings of other users and binds group `bench-editors` to
/// `edit`; returns the credentials of a second member of `system:masters` and of
/// `bench-editor` in that group.
async fn identities_beside_decoys(
    server: &FleetdbProcess,
) -> anyhow::Result<(crate::h2client::Credentials, crate::h2client::Credentials)> {
    const BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
    let admin = server.connect().await?;
    let binding = |name: &str, role: &str, kind: &str, subject: &str| {
        Bytes::from(
            serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": subject}],
            })
            .to_string(),
        )
    };
    let mut bindings: Vec<Bytes> = (0..DECOY_BINDINGS)
        .map(|i| {
            let name = format!("decoy-{i}");
            binding(&name, "view", "User", &name)
        })
        .collect();
    bindings.push(binding("bench-editors", "edit", "Group", "bench-editors"));
    for body in bindings {
        let (status, answer) = admin
            .call(Method::POST, BINDINGS, Some("application/json"), body)
            .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "{status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let issue = |user: &str, group: &str| {
        crate::h2client::Credentials::for_user(&server.data_dir, server.address(), user, &[group])
    };
    Ok((
        issue("bench-admin", "system:masters")?,
        issue("bench-editor", "bench-editors")?,
    ))
}

/// The time of one RBAC decision for an editor (its group bound to an aggregated role) in
/// a policy of [`DECOY_BINDINGS`] other bindings: `Policy::authorize` alone.
fn decision_micros() -> f64 {
    use fleetdb_machinery::rbac::{Policy, Request, User};
    let role = |name: &str, rules: serde_json::Value| serde_json::json!({"metadata": {"name": name}, "rules": rules});
    let cluster_roles = vec![
        role(
            "view",
            serde_json::json!([{"verbs": ["get", "list", "watch"], "apiGroups": ["fleetdb.io"], "resources": ["hosts", "clusters", "sources"]}]),
        ),
        role(
            "edit",
            serde_json::json!([
                {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["namespaces"]},
                {"verbs": ["create", "update", "patch", "delete"], "apiGroups": ["fleetdb.io"], "resources": ["hosts", "clusters", "sources"]},
            ]),
        ),
    ];
    let binding = |name: String, role: &str, kind: &str, subject: &str| {
        serde_json::json!({"metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": subject}]})
    };
    let mut bindings: Vec<serde_json::Value> = (0..DECOY_BINDINGS)
        .map(|i| binding(format!("decoy-{i}"), "view", "User", &format!("decoy-{i}")))
        .collect();
    bindings.push(binding("editors".into(), "edit", "Group", "bench-editors"));
    let policy = Policy::build(&cluster_roles, &[], &bindings, &[]);
    let groups = [
        "bench-editors".to_owned(),
        "system:authenticated".to_owned(),
    ];
    let user = User {
        name: "bench-editor",
        groups: &groups,
    };
    let request = Request {
        verb: "create",
        resource_request: true,
        api_group: "fleetdb.io",
        resource: "hosts",
        ..Request::default()
    };
    const DECISIONS: u32 = 200_000;
    let started = Instant::now();
    for _ in 0..DECISIONS {
        assert!(
            std::hint::black_box(&policy)
                .authorize(&user, &request)
                .allowed
        );
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(DECISIONS)
}

/// Size of the ConfigMap's one value in [`large_objects`]: near kube's 1 MiB ConfigMap limit.
const LARGE_OBJECT_BYTES: usize = 900 << 10;

/// Watchers of ConfigMaps in [`large_objects`] that never read: half resume from before the
/// watch cache (the store serves them), half from now (the watch cache does).
const IDLE_WATCHERS: usize = 10;

/// Updates of a large object beside watchers that never read: the server's memory must not
/// follow the updates (watch histories and channels are bounded in bytes, and an unread watch
/// holds no events).
pub(super) async fn large_objects(workspace: &Workspace, updates: usize) -> anyhow::Result<()> {
    println!(
        "\n## large objects: {updates} updates of a {} KiB ConfigMap beside {IDLE_WATCHERS} watchers that never read (half resuming from before the watch cache)",
        LARGE_OBJECT_BYTES >> 10
    );
    let server = FleetdbProcess::start(&workspace.server_dir("large")?, Backend::Embedded).await?;
    let admin = server.connect().await?;
    const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
    let data = |n: usize| {
        let mut data = n.to_string();
        data.push_str(&"x".repeat(LARGE_OBJECT_BYTES - data.len()));
        data
    };
    let created = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "big"}, "data": {"d": data(0)}});
    let (status, body) = admin
        .call(
            Method::POST,
            CONFIGMAPS,
            Some("application/json"),
            Bytes::from(created.to_string()),
        )
        .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "create: {status}");
    let first = resource_version_of(&body).unwrap_or_default();
    let update = |n: usize| {
        let admin = &admin;
        async move {
            let patch = serde_json::json!({"data": {"d": data(n)}});
            let (status, body) = admin
                .call(
                    Method::PATCH,
                    &format!("{CONFIGMAPS}/big"),
                    Some("application/merge-patch+json"),
                    Bytes::from(patch.to_string()),
                )
                .await?;
            anyhow::ensure!(status == StatusCode::OK, "update: {status}");
            anyhow::Ok(resource_version_of(&body).unwrap_or_default())
        }
    };
    // Enough changes first that the creation is older than what the watch cache keeps.
    let mut now = first.clone();
    for n in 1..=40 {
        now = update(n).await?;
    }
    let rss = || server.rss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64;
    let before = rss();
    let mut idle = Vec::new();
    for i in 0..IDLE_WATCHERS {
        let from = if i % 2 == 0 { &first } else { &now };
        let connection = server.connect().await?;
        let response = connection
            .start(
                Method::GET,
                &format!("{CONFIGMAPS}?watch=true&resourceVersion={from}"),
                None,
                Bytes::new(),
            )
            .await?;
        anyhow::ensure!(
            response.status() == StatusCode::OK,
            "watch: {}",
            response.status()
        );
        idle.push((connection, response));
    }
    let started = Instant::now();
    let mut peak = before;
    for n in 41..41 + updates {
        update(n).await?;
        if n % 50 == 0 {
            peak = peak.max(rss());
        }
    }
    let elapsed = started.elapsed();
    let after = rss();
    drop(idle);
    println!();
    println!("| server RSS, MiB | before the updates | highest during them | after them |");
    println!("|---|---|---|---|");
    println!(
        "| {IDLE_WATCHERS} unread watches of ConfigMaps | {before:.0} | {:.0} | {after:.0} |",
        peak.max(after)
    );
    println!();
    println!(
        "{updates} updates in {:.1} s ({:.0} MiB written).",
        elapsed.as_secs_f64(),
        (updates * LARGE_OBJECT_BYTES) as f64 / (1 << 20) as f64
    );
    Ok(())
}
