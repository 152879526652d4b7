// SPDX-License-Identifier: GPL-2.0

//! The frame budget: all instances together hold at most `max_total_pages` frames.
//!
//! Owns [`BUDGET`]. The fault path reserves pages here before it allocates a frame and commits
//! them once the frame is in an instance's table; an instance's drop releases its frames.
//!
//! Calling context: any, including the fault path; nothing here sleeps or takes a lock. The
//! counters are atomics, and their ordering is `Relaxed`: the budget counts pages and
//! publishes nothing else, so no other memory access depends on what a reader sees here.

use kernel::{
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
};

use crate::shard::{
    this_shard,
    SHARDS, //
};

/// One CPU's stock of pages, on a cache line of its own.
#[repr(align(64))]
struct Stock(Atomic<usize>);

/// Counts live frames of all instances against the `max_total_pages` cap.
///
/// A frame is reserved before it is allocated, so concurrent faults can never overshoot the
/// cap; a reservation that is not committed gives its pages back when dropped.
///
/// Far from the cap, each CPU keeps a small stock of pages that are already counted, as the
/// memory cgroup keeps a per-CPU stock of charges: a fault reserves from its CPU's stock, and
/// the counter all CPUs share is written once per [`Self::BATCH`] faults instead of at every
/// one. Near the cap (closer than all stocks together could be) no stock is handed out, and a
/// reservation that does not fit takes every stock back before it gives up, so the cap is
/// exact: a reservation fails only when the live frames and the reservations in flight leave
/// no room.
pub(crate) struct FrameBudget {
    /// Pages counted against the cap: live frames, reservations in flight, and the stocks.
    charged: Atomic<usize>,
    cap: Atomic<usize>,
    stocks: [Stock; SHARDS],
}

impl FrameBudget {
    /// Pages a CPU takes into its stock at once.
    const BATCH: usize = 32;

    pub(crate) const fn new(cap: usize) -> Self {
        Self {
            charged: Atomic::new(0),
            cap: Atomic::new(cap),
            stocks: [const { Stock(Atomic::new(0)) }; SHARDS],
        }
    }

    /// The frames live now: exact when no reservation is in flight.
    pub(crate) fn live(&self) -> usize {
        let stocked = self
            .stocks
            .iter()
            .fold(0usize, |sum, stock| sum.wrapping_add(stock.0.load(Relaxed)));
        self.charged.load(Relaxed).saturating_sub(stocked)
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap.load(Relaxed)
    }

    /// Sets the cap: at load, before any frame exists.
    pub(crate) fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Relaxed);
    }

    /// Reserves `pages` pages, or returns `None` when they would pass the cap.
    pub(crate) fn reserve(&self, pages: usize) -> Option<Reservation<'_>> {
        self.reserve_on(this_shard(), pages)
    }

    /// Reserves `pages` pages as a fault on a CPU of `shard` would: [`Self::reserve`] with the
    /// shard chosen (tests must not depend on staying on one CPU).
    fn reserve_on(&self, shard: usize, pages: usize) -> Option<Reservation<'_>> {
        let reserved = || {
            Some(Reservation {
                budget: self,
                pages,
            })
        };
        let stock = &self.stocks[shard % SHARDS].0;
        let mut have = stock.load(Relaxed);
        while have >= pages {
            match stock.cmpxchg(have, have - pages, Relaxed) {
                Ok(_) => return reserved(),
                Err(now) => have = now,
            }
        }
        // A new stock for this CPU too, if that leaves room for every CPU's stock.
        if self.charge(pages + Self::BATCH, Self::BATCH * SHARDS) {
            stock.add(Self::BATCH, Relaxed);
            return reserved();
        }
        if self.charge(pages, 0) {
            return reserved();
        }
        // Near the cap: the stocks count as used, so take them all back and try once more.
        for stock in &self.stocks {
            let n = stock.0.xchg(0, Relaxed);
            if n > 0 {
                self.charged.fetch_sub(n, Relaxed);
            }
        }
        if self.charge(pages, 0) {
            return reserved();
        }
        None
    }

    /// Counts `pages` more against the cap if they fit with `headroom` pages to spare.
    fn charge(&self, pages: usize, headroom: usize) -> bool {
        let cap = self.cap();
        let mut charged = self.charged.load(Relaxed);
        loop {
            let fits = charged
                .checked_add(pages + headroom)
                .is_some_and(|need| need <= cap);
            if !fits {
                return false;
            }
            match self.charged.cmpxchg(charged, charged + pages, Relaxed) {
                Ok(_) => return true,
                Err(now) => charged = now,
            }
        }
    }

    /// Gives back `n` committed frames.
    pub(crate) fn release(&self, n: usize) {
        self.charged.fetch_sub(n, Relaxed);
    }
}

/// Pages reserved in a [`FrameBudget`]: given back on drop unless committed.
#[must_use]
pub(crate) struct Reservation<'a> {
    budget: &'a FrameBudget,
    pages: usize,
}

impl Reservation<'_> {
    /// Keeps `pages` of the reserved pages counted ([`FrameBudget::release`] gives them back
    /// later) and gives the rest back now.
    pub(crate) fn commit(mut self, pages: usize) {
        self.pages -= pages.min(self.pages);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.pages > 0 {
            self.budget.release(self.pages);
        }
    }
}

/// The budget of all instances; its cap is set at load, from the checked `max_total_pages`.
pub(crate) static BUDGET: FrameBudget = FrameBudget::new(0);

#[kunit_tests(rust_pagefault_demo_budget)]
mod tests {
    use super::*;

    #[test]
    fn budget_stops_at_the_cap_and_gives_back() {
        let budget = FrameBudget::new(4);
        budget.reserve(1).expect("first page").commit(1);
        let pending = budget.reserve(2).expect("two more");
        assert!(budget.reserve(2).is_none());
        assert_eq!(budget.live(), 3);
        drop(pending);
        assert_eq!(budget.live(), 1);
        // A reservation is all or nothing: 3 fit, 4 do not.
        assert!(budget.reserve(4).is_none());
        // Committing part of a reservation gives the rest back.
        budget.reserve(3).expect("the rest").commit(2);
        assert_eq!(budget.live(), 3);
        budget.reserve(1).expect("the last").commit(1);
        budget.release(4);
        assert_eq!(budget.live(), 0);
    }

    #[test]
    fn budget_stocks_far_from_the_cap_and_is_exact_near_it() {
        let budget = FrameBudget::new(1000);
        // Far from the cap, the first reservation also fills its CPU's stock, the next ones
        // come out of it, and what is reported live is what was committed. The shards are
        // chosen, so moving to another CPU during the test changes nothing.
        budget.reserve_on(0, 1).expect("first").commit(1);
        assert_eq!(budget.charged.load(Relaxed), 1 + FrameBudget::BATCH);
        budget.reserve_on(0, 1).expect("from the stock").commit(1);
        assert_eq!(budget.charged.load(Relaxed), 1 + FrameBudget::BATCH);
        assert_eq!(budget.live(), 2);
        // Another CPU faults once, and gets a stock of its own.
        budget.reserve_on(1, 1).expect("another CPU").commit(1);
        assert_eq!(budget.charged.load(Relaxed), 2 + 2 * FrameBudget::BATCH);
        assert_eq!(budget.live(), 3);
        // All the rest of the cap, in one: only fits once every stock is taken back.
        budget.reserve_on(2, 997).expect("the rest").commit(997);
        assert_eq!(budget.live(), 1000);
        assert!(budget.reserve_on(0, 1).is_none());
        assert_eq!(budget.live(), 1000);
        budget.release(1000);
        assert_eq!((budget.live(), budget.charged.load(Relaxed)), (0, 0));
    }
}
