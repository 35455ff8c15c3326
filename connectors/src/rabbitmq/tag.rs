//! Acknowledgement tags: a broker delivery tag plus the connection
//! generation it belongs to, packed into the pipeline's `u64` tag.
//!
//! Delivery tags are only meaningful on the channel that delivered them.
//! After a reconnection the broker redelivers everything that was not
//! acknowledged, under new tags; outcomes that come back for the old
//! generation must not be acknowledged on the new channel. The generation in
//! the upper bits lets the connector tell them apart.

/// Bits of the packed tag that hold the delivery tag.
const DELIVERY_BITS: u32 = 44;
const DELIVERY_MASK: u64 = (1 << DELIVERY_BITS) - 1;

/// One delivery on one connection generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryRef {
    /// Which connection (counts reconnections, wrapping).
    pub generation: u32,
    /// The broker's delivery tag on that connection's channel.
    pub delivery_tag: u64,
}

impl DeliveryRef {
    /// Packs into a pipeline tag. Delivery tags beyond 2^44 (17 trillion
    /// deliveries on one channel) would wrap; the connector reconnects long
    /// before.
    pub fn pack(self) -> u64 {
        (u64::from(self.generation & 0xF_FFFF) << DELIVERY_BITS)
            | (self.delivery_tag & DELIVERY_MASK)
    }

    /// Unpacks a pipeline tag.
    pub fn unpack(tag: u64) -> Self {
        DeliveryRef {
            generation: (tag >> DELIVERY_BITS) as u32,
            delivery_tag: tag & DELIVERY_MASK,
        }
    }

    /// The generation as packed (the low 20 bits), for comparisons.
    pub fn packed_generation(generation: u32) -> u32 {
        generation & 0xF_FFFF
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (generation, delivery_tag) in [(0, 1), (1, 42), (0xF_FFFF, DELIVERY_MASK), (7, 1 << 40)]
        {
            let r = DeliveryRef {
                generation,
                delivery_tag,
            };
            assert_eq!(DeliveryRef::unpack(r.pack()), r);
        }
        let wrapped = DeliveryRef {
            generation: 0x10_0001,
            delivery_tag: 5,
        };
        assert_eq!(
            DeliveryRef::unpack(wrapped.pack()).generation,
            DeliveryRef::packed_generation(wrapped.generation)
        );
    }
}
