//! The conformance suites: the behaviour every store adapter must show, exported so that
//! any adapter (`annals-memory`, `annals-sqlite`, `annals-postgres`, or your own) proves
//! the contracts with one line in an integration test:
//!
//! ```no_run
//! annals::conformance_tests!(async { annals_memory::MemoryStore::new() });
//! # fn main() {}
//! ```
//!
//! The argument is an `async` expression that yields a fresh, empty store; it is
//! evaluated once per case. [`conformance_tests!`](crate::conformance_tests) runs every
//! suite, each in its own module (`store::...`, `feed::...`, `snapshots::...`,
//! `upcasting::...`, `consumers::...`, `poison::...`); one suite alone is one macro:
//!
//! | macro | suite | the store must implement |
//! | --- | --- | --- |
//! | [`store_conformance_tests!`](crate::store_conformance_tests) | [`store`] | [`EventStore`](crate::EventStore), [`EventFeed`](crate::EventFeed) |
//! | [`feed_conformance_tests!`](crate::feed_conformance_tests) | [`feed`] | [`EventStore`](crate::EventStore), [`EventFeed`](crate::EventFeed) |
//! | [`snapshot_conformance_tests!`](crate::snapshot_conformance_tests) | [`snapshots`] | [`SnapshotStore`](crate::store::SnapshotStore) |
//! | [`upcasting_conformance_tests!`](crate::upcasting_conformance_tests) | [`upcasting`] | [`EventStore`](crate::EventStore) |
//! | [`consumer_conformance_tests!`](crate::consumer_conformance_tests) | [`consumers`] | [`EventStore`](crate::EventStore), [`EventFeed`](crate::EventFeed), [`CheckpointStore`](crate::store::CheckpointStore) |
//! | [`inspect_conformance_tests!`](crate::inspect_conformance_tests) | [`inspect`] | [`EventStore`](crate::EventStore), [`CheckpointStore`](crate::store::CheckpointStore), [`Inspect`](crate::store::Inspect) |
//! | [`process_conformance_tests!`](crate::process_conformance_tests) | [`process`] | [`EventStore`](crate::EventStore), [`EventFeed`](crate::EventFeed), [`CheckpointStore`](crate::store::CheckpointStore), [`DeadlineStore`](crate::store::DeadlineStore) |
//! | [`poison_conformance_tests!`](crate::poison_conformance_tests) | [`poison`] | [`EventStore`](crate::EventStore), [`EventFeed`](crate::EventFeed), [`CheckpointStore`](crate::store::CheckpointStore) with dead letters |
//!
//! [`blue_green`] is not a macro: its read model is SQL of each store, so an adapter's
//! test gives a [`blue_green::Fixture`] and calls its cases.
//!
//! Each macro expands to one `#[test]` per case, named after the case, that builds a
//! store and runs the case on a fresh multi-threaded runtime ([`run`]). Every case is a
//! public `async fn` of its suite module, generic over the store, so an adapter can also
//! call one directly. Cases assert by panicking, like any test, and stay small enough to
//! run in well under a few seconds against a database.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test assertions report failure by panicking"
)]

use std::future::Future;

pub mod blue_green;
pub mod consumers;
pub mod feed;
pub mod inspect;
pub mod poison;
pub mod process;
pub mod snapshots;
pub mod store;
mod support;
pub mod upcasting;

/// Runs `test` to completion on a fresh multi-threaded runtime.
pub fn run(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance test")
        .block_on(test)
}

/// Expands to one `#[test]` per case of every conformance suite, each suite in its own
/// module; see [`conformance`](crate::conformance).
///
/// ```no_run
/// annals::conformance_tests!(async { annals_memory::MemoryStore::new() });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make_store:expr $(,)?) => {
        #[allow(unused_imports)]
        mod store {
            use super::*;
            $crate::store_conformance_tests!($make_store);
        }
        #[allow(unused_imports)]
        mod feed {
            use super::*;
            $crate::feed_conformance_tests!($make_store);
        }
        #[allow(unused_imports)]
        mod inspect {
            use super::*;
            $crate::inspect_conformance_tests!($make_store);
        }
        #[allow(unused_imports)]
        mod snapshots {
            use super::*;
            $crate::snapshot_conformance_tests!($make_store);
        }
        #[allow(unused_imports)]
        mod upcasting {
            use super::*;
            $crate::upcasting_conformance_tests!($make_store);
        }
        #[allow(unused_imports)]
        mod consumers {
            use super::*;
            $crate::consumer_conformance_tests!($make_store);
        }
        #[allow(unused_imports)]
        mod poison {
            use super::*;
            $crate::poison_conformance_tests!($make_store);
        }
        #[allow(unused_imports)]
        mod process {
            use super::*;
            $crate::process_conformance_tests!($make_store);
        }
    };
}

/// Expands to one `#[test]` per case of the [`process`](crate::conformance::process)
/// suite: a fulfillment workflow run by a [`ProcessRunner`](crate::process::ProcessRunner)
/// on the store, with compensation, deadlines, restarts and killed runners.
#[macro_export]
macro_rules! process_conformance_tests {
    ($make_store:expr $(,)?) => {
        $crate::__conformance_cases!(process, $make_store;
            a_checkout_is_reserved_paid_and_shipped,
            a_rejected_payment_is_compensated,
            a_deadline_fires_after_a_restart,
            killed_runners_run_every_command_exactly_once,
            a_runner_that_crashed_after_recording_carries_the_reaction_out_once,
            a_process_that_cannot_proceed_is_parked,
        );
    };
}

/// Expands to one `#[test]` per case of the [`inspect`](crate::conformance::inspect)
/// suite: the [`Inspect`](crate::store::Inspect) listings of streams and consumers.
#[macro_export]
macro_rules! inspect_conformance_tests {
    ($make_store:expr $(,)?) => {
        $crate::__conformance_cases!(inspect, $make_store;
            streams_are_listed_by_id_and_category,
            consumers_are_listed_with_their_checkpoints,
            consumers_are_listed_with_the_events_after_their_checkpoints,
            events_are_found_by_correlation_id,
        );
    };
}

/// Expands to one `#[test]` per case of the [`poison`](crate::conformance::poison) suite:
/// poison events stop a consumer or are parked in the store's
/// [`CheckpointStore`](crate::store::CheckpointStore), listed, retried and skipped.
#[macro_export]
macro_rules! poison_conformance_tests {
    ($make_store:expr $(,)?) => {
        $crate::__conformance_cases!(poison, $make_store;
            exactly_once_parks_a_failing_event_and_retries_it_after_a_fix,
            exactly_once_park_stream_holds_back_the_rest_of_the_stream,
            a_permanent_failure_stops_at_once_or_is_parked_at_once,
            at_least_once_skips_a_parked_event_on_request,
            in_memory_parks_and_retries,
        );
    };
}

/// Expands to one `#[test]` per case of the [`store`](crate::conformance::store) suite:
/// appends, expected versions, stream reads, idempotent re-appends, failed appends that
/// write nothing, round trips and concurrent writers.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make_store:expr $(,)?) => {
        $crate::__conformance_cases!(store, $make_store;
            append_to_new_stream_numbers_from_one,
            append_many_is_contiguous_and_ordered,
            expected_version_exact,
            expected_version_zero_means_no_stream,
            expected_version_any,
            failed_append_writes_nothing,
            empty_append_only_checks_the_version,
            read_stream_ranges,
            long_streams_read_back_whole_and_in_order,
            reads_to_fold_return_what_a_fold_needs,
            missing_stream_reads_empty,
            global_positions_grow_across_streams,
            stream_version_tracks_appends,
            payload_and_metadata_round_trip_exactly,
            awkward_stream_ids_round_trip,
            invalid_stream_ids_are_rejected,
            reappending_the_same_events_is_idempotent,
            reappending_at_another_expected_version_is_a_duplicate,
            reusing_an_event_id_elsewhere_is_an_error,
            repeating_an_event_id_in_one_append_is_an_error,
            concurrent_writers_on_one_stream_lose_nothing,
            concurrent_writers_on_many_streams_get_unique_positions,
            stream_ids_up_to_the_limit_are_accepted_and_longer_ones_refused,
            invalid_event_types_are_rejected,
            json_nested_deeper_than_stores_read_back_is_refused,
            json_nested_to_the_limit_round_trips,
            doubles_round_trip_bit_for_bit,
            nul_characters_in_json_round_trip,
        );
    };
}

/// Expands to one `#[test]` per case of the [`feed`](crate::conformance::feed) suite:
/// commit order, batches, pushed-down filters and partitions, resuming after checkpoints, `settle`,
/// wake-ups, and concurrent writers whose failed appends roll back.
#[macro_export]
macro_rules! feed_conformance_tests {
    ($make_store:expr $(,)?) => {
        $crate::__conformance_cases!(feed, $make_store;
            an_empty_store_has_an_empty_feed,
            the_feed_is_in_commit_order_across_streams,
            the_feed_reads_in_batches_of_at_most_the_limit,
            a_read_says_whether_more_follows_at_once,
            a_type_filter_is_pushed_down_and_next_moves_past_skipped_events,
            stream_and_category_filters_select_exactly_the_matching_events,
            partitions_split_the_feed_by_stream,
            a_read_resumes_strictly_after_its_checkpoint,
            checkpoints_increase_and_survive_text_bytes_and_serde,
            settle_then_read_sees_everything_appended_before,
            wakeups_fire_after_an_append,
            concurrent_writers_with_rollbacks_are_seen_exactly_once,
            checkpoint_of_is_where_the_feed_hands_the_event_out,
        );
    };
}

/// Expands to one `#[test]` per case of the [`snapshots`](crate::conformance::snapshots)
/// suite: the [`SnapshotStore`](crate::store::SnapshotStore) contract, repositories
/// loading from snapshots, and time travel.
#[macro_export]
macro_rules! snapshot_conformance_tests {
    ($make_store:expr $(,)?) => {
        $crate::__conformance_cases!(snapshots, $make_store;
            a_saved_snapshot_loads_back_exactly,
            an_older_snapshot_never_replaces_a_newer_one,
            every_n_events_snapshots_and_loads_from_it,
            a_snapshot_of_another_schema_version_is_ignored,
            a_snapshot_that_does_not_decode_is_ignored,
            a_long_read_triggers_a_snapshot,
            commands_after_a_snapshot_see_the_right_state,
            time_travel_by_time_and_version_range,
        );
    };
}

/// Expands to one `#[test]` per case of the [`upcasting`](crate::conformance::upcasting)
/// suite: events stored by older code (older versions, older names) load through
/// today's event types.
#[macro_export]
macro_rules! upcasting_conformance_tests {
    ($make_store:expr $(,)?) => {
        $crate::__conformance_cases!(upcasting, $make_store;
            old_versions_and_names_upcast,
            a_newer_version_is_rejected,
            a_failing_upcaster_names_the_event,
            an_unknown_event_type_names_the_event,
        );
    };
}

/// Expands to one `#[test]` per case of the [`consumers`](crate::conformance::consumers)
/// suite: the [`CheckpointStore`](crate::store::CheckpointStore) contract, and
/// subscriptions feeding an [`InMemoryProjection`](crate::subscription::InMemoryProjection),
/// an [`ExactlyOnce`](crate::subscription::ExactlyOnce) and an
/// [`AtLeastOnce`](crate::subscription::AtLeastOnce) consumer.
#[macro_export]
macro_rules! consumer_conformance_tests {
    ($make_store:expr $(,)?) => {
        $crate::__conformance_cases!(consumers, $make_store;
            checkpoints_move_only_from_the_stored_checkpoint,
            a_moving_transaction_fences_other_transactions_until_it_ends,
            in_memory_catch_up_delivers_matching_events_once_in_order,
            in_memory_filters_keep_only_those_streams,
            in_memory_follows_concurrent_writers_live,
            in_memory_a_failing_handler_is_retried_without_double_applying,
            in_memory_a_handler_that_keeps_failing_stops_visibly_and_resumes_after_a_fix,
            in_memory_a_restarted_subscription_resumes_from_the_checkpoint,
            in_memory_a_rebuild_while_running_loses_and_repeats_nothing,
            exactly_once_checkpoint_persists_and_a_new_instance_resumes,
            exactly_once_a_failing_handler_is_retried_then_stops_and_resumes_at_the_event,
            exactly_once_a_stale_instance_never_applies_a_batch_again,
            exactly_once_two_running_instances_apply_each_event_once,
            exactly_once_reset_replays_from_the_start,
            at_least_once_checkpoint_persists_and_a_new_instance_resumes,
            at_least_once_a_failing_handler_is_retried_then_stops_and_resumes_at_the_event,
            at_least_once_a_stale_instance_never_moves_the_checkpoint_back,
            at_least_once_reset_replays_from_the_start,
            at_least_once_checkpoint_every_n_events_saves_per_n_and_at_batch_end,
        );
    };
}

/// One `#[test]` per listed case of `$suite`, each on a fresh store.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($suite:ident, $make_store:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run(async {
                    let store = $make_store.await;
                    $crate::conformance::$suite::$case(store).await;
                });
            }
        )*
    };
}
