//! The CLOCK replacement policy shared by the normalization caches: each
//! slot has a reference bit set on a hit; the hand sweeps the slots,
//! clearing bits, and evicts the first slot found unreferenced. Texts and
//! shapes seen once leave before ones seen again, at the cost of one bit.

/// A cache slot with a reference bit.
pub(crate) trait Referenced {
    fn referenced(&mut self) -> &mut bool;
}

/// The slot to evict (at most one full turn plus one step); `slots` must
/// not be empty.
pub(crate) fn victim<T: Referenced>(slots: &mut [T], hand: &mut usize) -> usize {
    let len = slots.len();
    loop {
        let i = *hand;
        *hand = (*hand + 1) % len;
        let bit = slots[i].referenced();
        if !*bit {
            return i;
        }
        *bit = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slot(bool);
    impl Referenced for Slot {
        fn referenced(&mut self) -> &mut bool {
            &mut self.0
        }
    }

    #[test]
    fn the_hand_passes_referenced_slots_once_and_clears_them() {
        let mut slots = vec![Slot(true), Slot(false), Slot(true)];
        let mut hand = 0;
        assert_eq!(victim(&mut slots, &mut hand), 1);
        assert!(!slots[0].0, "passed over, so its bit is cleared");
        assert_eq!(hand, 2);
        // Slot 2 is referenced: cleared and passed; slot 0 is now the victim.
        assert_eq!(victim(&mut slots, &mut hand), 0);
        assert!(!slots[2].0);
    }
}
