// SPDX-License-Identifier: GPL-2.0

//! Per-CPU shards: how the counters ([`crate::stats`]) and the frame budget's stocks
//! ([`crate::budget`]) keep faults on different CPUs off each other's cache lines.
//!
//! A fault adds to the shard of the CPU it runs on, found once per handler call. Being moved
//! to another CPU right after is harmless: every reader sums all the shards, so a value added
//! on one shard and taken away on another still balances; only a cache line may bounce.
//! CPUs beyond [`SHARDS`] share.
//!
//! Calling context: any, including the fault path; nothing here sleeps or takes a lock.

use kernel::cpu::CpuId;

/// How many per-CPU shards the counters and the budget have.
pub(crate) const SHARDS: usize = 8;

/// The shard that this CPU uses.
pub(crate) fn this_shard() -> usize {
    CpuId::current().as_u32() as usize % SHARDS
}
