//! The sticky-weights extension (`meshsimStickyWeights`): weighted rendezvous
//! hashing picks the weighted destination from a request key, so a user
//! stays on one subset while the weights stay, the split follows the
//! weights, and a weight change moves only the keys that must move.
//!
//! The properties are checked on [`rendezvous`] directly (fast, many
//! cases) and once end to end through a config and an [`Engine`].

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use xxhash_rust::xxh64::xxh64;

use super::{config, engine, pick_subset};
use crate::affinity::{destination_seed, rendezvous};
use crate::{Engine, EngineEvent, Request, Time};

/// Keys hashed per property case.
const KEYS: u64 = 20_000;

/// The seeds of subsets v1..vn of reviews, as the engine derives them.
fn seeds(n: usize) -> Vec<u64> {
    (1..=n)
        .map(|i| destination_seed("reviews.default.svc.cluster.local", Some(&format!("v{i}"))))
        .collect()
}

/// The hash of key `i` in a key population named by `salt`.
fn key(salt: u64, i: u64) -> u64 {
    xxh64(&i.to_le_bytes(), salt)
}

fn choose(hash: u64, seeds: &[u64], weights: &[u32]) -> usize {
    rendezvous(hash, seeds.iter().copied().zip(weights.iter().copied()))
        .expect("some weight is positive")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// (a) While the weights stay, a key always lands on the same subset,
    /// whatever the order the destinations are listed in, and lowering
    /// another subset's weight never moves it away.
    #[test]
    fn a_key_stays_on_its_subset_while_the_weights_stay(
        weights in prop::collection::vec(1u32..=100, 2..=4),
        hashes in prop::collection::vec(any::<u64>(), 1..200),
        lowered in any::<prop::sample::Index>(),
    ) {
        let n = weights.len();
        let s = seeds(n);
        let rev_s: Vec<u64> = s.iter().rev().copied().collect();
        let rev_w: Vec<u32> = weights.iter().rev().copied().collect();
        for &h in &hashes {
            let first = choose(h, &s, &weights);
            prop_assert_eq!(choose(h, &s, &weights), first);
            // Listing the destinations in another order names the same one.
            prop_assert_eq!(n - 1 - choose(h, &rev_s, &rev_w), first);
            // Another subset losing weight cannot take the key away.
            let j = lowered.index(n);
            if j != first && weights[j] > 1 {
                let mut w = weights.clone();
                w[j] /= 2;
                prop_assert_eq!(choose(h, &s, &w), first);
            }
        }
    }

    /// (b) Over many keys the split follows the weights within ±2 % (the
    /// standard deviation of a share over 20,000 keys is at most 0.35 %),
    /// for 2, 3 and 4 subsets.
    #[test]
    fn the_split_follows_the_weights_for_two_three_and_four_subsets(
        weights in prop::array::uniform4(1u32..=100),
        salt in any::<u64>(),
    ) {
        for n in 2..=4 {
            let w = &weights[..n];
            let s = seeds(n);
            let mut counts = vec![0u64; n];
            for i in 0..KEYS {
                counts[choose(key(salt, i), &s, w)] += 1;
            }
            let total: u32 = w.iter().sum();
            for (c, wi) in counts.iter().zip(w) {
                let share = *c as f64 / KEYS as f64;
                let want = f64::from(*wi) / f64::from(total);
                prop_assert!(
                    (share - want).abs() <= 0.02,
                    "weights {:?}: share {} vs {}", w, share, want
                );
            }
        }
    }

    /// (c) Raising one subset from 10 to 20 (the others scaled from 90 to
    /// 80 in total, so the config still adds up to 100) moves about 10 % of
    /// the keys (the grown share, 20 % − 10 %), and every key that moves
    /// moves to the subset that grew, for 3 and 4 subsets.
    #[test]
    fn raising_one_weight_moves_only_keys_towards_that_subset(
        a1 in 1u32..=8,
        a2 in 1u32..=8,
        grown in 0usize..4,
        salt in any::<u64>(),
    ) {
        // The other subsets get 9·aᵢ before and 8·aᵢ after, Σaᵢ = 10.
        let mut cases = vec![vec![a1, 10 - a1]];
        if a1 + a2 < 10 {
            cases.push(vec![a1, a2, 10 - a1 - a2]);
        }
        for parts in cases {
            let n = parts.len() + 1;
            let g = grown % n;
            let mut others = parts.iter();
            let (mut before, mut after) = (Vec::new(), Vec::new());
            for i in 0..n {
                if i == g {
                    before.push(10);
                    after.push(20);
                } else {
                    let a = *others.next().unwrap();
                    before.push(9 * a);
                    after.push(8 * a);
                }
            }
            prop_assert_eq!(before.iter().sum::<u32>(), 100);
            prop_assert_eq!(after.iter().sum::<u32>(), 100);
            let s = seeds(n);
            let mut moved = 0u64;
            for i in 0..KEYS {
                let h = key(salt, i);
                let (old, new) = (choose(h, &s, &before), choose(h, &s, &after));
                if old != new {
                    prop_assert_eq!(new, g, "a key moved between subsets that did not grow");
                    moved += 1;
                }
            }
            let share = moved as f64 / KEYS as f64;
            prop_assert!(
                (share - 0.10).abs() <= 0.02,
                "{:?} → {:?}: {} of the keys moved", before, after, share
            );
        }
    }
}

#[test]
fn rendezvous_skips_weight_zero_and_needs_a_positive_weight() {
    let s = seeds(3);
    for i in 0..1000 {
        assert_ne!(choose(key(1, i), &s, &[5, 0, 5]), 1);
    }
    assert_eq!(rendezvous(42, s.iter().copied().zip([0, 0, 0])), None);
}

fn sticky_mesh(w1: u32, w2: u32, w3: u32) -> String {
    super::three_versions(&format!(
        r#"
[[virtualService]]
name = "reviews"
hosts = ["reviews"]
[[virtualService.http]]
meshsimStickyWeights = {{ httpHeaderName = "x-user" }}
route = [
  {{ destination = {{ host = "reviews", subset = "v1" }}, weight = {w1} }},
  {{ destination = {{ host = "reviews", subset = "v2" }}, weight = {w2} }},
  {{ destination = {{ host = "reviews", subset = "v3" }}, weight = {w3} }},
]
"#
    ))
}

fn subset_for(e: &mut Engine, user: &str) -> String {
    let headers = [("x-user", user)];
    pick_subset(e, &Request::get("reviews:9080", "/").with_headers(&headers))
}

#[test]
fn sticky_weights_end_to_end_keep_users_split_by_weight_and_move_few_on_a_change() {
    const USERS: usize = 20_000;
    let users: Vec<String> = (0..USERS).map(|i| format!("user-{i}")).collect();
    let mut e = engine(&sticky_mesh(10, 45, 45));

    // Every user, asked twice in different orders (with other users'
    // requests in between), gets the same subset.
    let first: Vec<String> = users.iter().map(|u| subset_for(&mut e, u)).collect();
    for i in (0..USERS).rev().step_by(7) {
        assert_eq!(subset_for(&mut e, &users[i]), first[i], "{}", users[i]);
    }

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &first {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    for (subset, weight) in [("v1", 0.10), ("v2", 0.45), ("v3", 0.45)] {
        let share = counts.get(subset).copied().unwrap_or(0) as f64 / USERS as f64;
        assert!((share - weight).abs() <= 0.02, "{subset}: {share}");
    }

    // v1 grows from 10 to 20; the others are scaled 45 → 40. (The helpers
    // decide at time zero, so the push is at time zero too.)
    e.reconfigure(Arc::new(config(&sticky_mesh(20, 40, 40))), Time::ZERO);
    assert!(matches!(
        e.poll_event(),
        Some((Time::ZERO, EngineEvent::ConfigApplied { .. }))
    ));
    let mut moved = 0;
    for (u, before) in users.iter().zip(&first) {
        let after = subset_for(&mut e, u);
        if after != *before {
            assert_eq!(after, "v1", "{u} moved from {before} to {after}");
            moved += 1;
        }
    }
    let share = moved as f64 / USERS as f64;
    assert!((share - 0.10).abs() <= 0.02, "{share} of the users moved");
}

#[test]
fn sticky_weights_without_the_key_fall_back_to_the_random_split() {
    let mut e = engine(&sticky_mesh(50, 50, 0));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..2000 {
        *counts
            .entry(pick_subset(&mut e, &Request::get("reviews", "/")))
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(
        counts.values().all(|&c| (800..=1200).contains(&c)),
        "{counts:?}"
    );
}
