//! Runs the store conformance suite against both backends: the embedded store in a temporary
//! directory, and a real etcd (Debian `etcd-server`) started on 127.0.0.1 for each test.

#[path = "support/contract.rs"]
mod contract;

use std::sync::Arc;

use fleetdb_store::Store;
use fleetdb_store::embedded::EmbeddedStore;
use fleetdb_store::etcd::{EtcdOptions, EtcdStore};
use fleetdb_testkit::EtcdServer;

/// Keeps a backend's resources alive for the duration of a test.
pub struct Backend {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _etcd: Option<EtcdServer>,
}

pub async fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).expect("open the embedded store");
    Backend {
        store: Arc::new(store),
        _dir: Some(dir),
        _etcd: None,
    }
}

pub async fn etcd() -> Backend {
    let server = EtcdServer::start();
    let store = EtcdStore::connect(EtcdOptions::new(vec![server.client_url().to_owned()]))
        .await
        .expect("connect to etcd");
    Backend {
        store: Arc::new(store),
        _dir: None,
        _etcd: Some(server),
    }
}

macro_rules! conformance_suite {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = super::$backend().await;
                    super::contract::$test(backend.store.clone()).await;
                }
            )*
        }
    };
}

macro_rules! both_backends {
    ($($test:ident),* $(,)?) => {
        conformance_suite!(embedded: $($test),*);
        conformance_suite!(etcd: $($test),*);
    };
}

both_backends!(
    put_then_get_returns_value_and_revisions,
    every_write_advances_the_revision,
    create_of_existing_key_fails_with_current_value,
    update_requires_the_current_mod_revision,
    delete_requires_the_current_mod_revision,
    recreated_key_starts_a_new_incarnation,
    invalid_keys_are_refused,
    values_above_the_limit_are_refused,
    range_returns_only_the_prefix_in_key_order,
    range_pages_with_limit_and_from_key,
    paging_at_a_revision_neither_skips_nor_repeats_during_writes,
    reads_at_past_revisions_see_past_state,
    watch_delivers_changes_in_order_with_previous_values,
    watch_resumes_from_a_past_revision,
    watch_replays_long_histories_in_order,
    concurrent_writers_get_distinct_revisions,
    current_reads_are_the_state_at_their_revision,
    compaction_discards_history_but_keeps_current_state,
    watch_from_a_compacted_revision_fails_distinctly,
    retention_compacts_only_history_older_than_the_policy,
    get_many_reads_every_key_at_one_revision,
    changed_keys_names_the_keys_changed_between_two_revisions,
    history_keeps_every_change_with_its_time_and_note,
    revision_at_maps_instants_to_revisions,
);
