//! A lock-free memo of user-agent classifications.
//!
//! Classifying a browser's user agent scans it for dozens of tokens (about
//! 450 ns for a desktop Chrome string, over half of the whole per-request
//! decision in the benchmarks), yet a service sees the same few hundred
//! user-agent strings over and over. The cache is a direct-mapped table of
//! 1,024 atomic words, each holding a 62-bit hash of a user agent and its
//! class: a hit costs one hash pass over the string and one load.
//!
//! Correctness: a slot is one `AtomicU64` written whole, so a reader sees
//! either an old or a new complete entry, never a torn one. A wrong answer
//! needs two user agents with the same 62-bit hash (about one pair in 2^31
//! among 2^16 distinct strings), and costs only a device class.

use std::sync::atomic::{AtomicU64, Ordering};

use headroom_config::Device;

use super::classify_user_agent;

/// Slots in the table (a power of two).
const SLOTS: usize = 1_024;

/// Bits of an entry holding the device class.
const CLASS_BITS: u32 = 2;

/// Remembers the device class of recently seen user agents.
pub struct DeviceCache {
    slots: Box<[AtomicU64]>,
}

impl Default for DeviceCache {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceCache {
    /// An empty cache (8 KiB).
    pub fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The device class of `user_agent`, classified once and then remembered.
    pub fn classify(&self, user_agent: &str) -> Device {
        let hash = hash(user_agent.as_bytes()) | 1; // never 0, the empty slot
        let slot = &self.slots[(hash as usize >> CLASS_BITS) % SLOTS];
        let entry = slot.load(Ordering::Relaxed);
        if entry >> CLASS_BITS == hash >> CLASS_BITS && entry != 0 {
            return decode(entry);
        }
        let device = classify_user_agent(user_agent);
        let tag = (hash >> CLASS_BITS) << CLASS_BITS;
        slot.store(tag | encode(device), Ordering::Relaxed);
        device
    }
}

fn encode(device: Device) -> u64 {
    match device {
        Device::Desktop => 0,
        Device::Mobile => 1,
        Device::Bot => 2,
        Device::Other => 3,
    }
}

fn decode(entry: u64) -> Device {
    match entry & ((1 << CLASS_BITS) - 1) {
        0 => Device::Desktop,
        1 => Device::Mobile,
        2 => Device::Bot,
        _ => Device::Other,
    }
}

/// A fast 64-bit hash (8 bytes per multiply), good enough to tell user
/// agents apart; not for adversarial keys (a collision only mislabels a
/// device).
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
        h = (h ^ word).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENTS: [&str; 5] = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "curl/8.5.0",
        "",
    ];

    #[test]
    fn cached_answers_equal_the_classifier_on_first_and_later_calls() {
        let cache = DeviceCache::new();
        for _ in 0..3 {
            for ua in AGENTS {
                assert_eq!(cache.classify(ua), classify_user_agent(ua), "{ua}");
            }
        }
    }

    #[test]
    fn agents_sharing_a_slot_replace_each_other_without_mixing_up() {
        // Many distinct agents through a small table: every answer stays right.
        let cache = DeviceCache::new();
        for i in 0..5_000 {
            let ua = format!("Mozilla/5.0 (iPhone; build {i}) Mobile");
            assert_eq!(cache.classify(&ua), Device::Mobile);
            let bot = format!("crawler-{i} bot");
            assert_eq!(cache.classify(&bot), classify_user_agent(&bot));
        }
    }
}
