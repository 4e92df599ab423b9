//! `xen_version` sub-operations (`version.h`).

/// `XENVER_version`: returns `major << 16 | minor`.
pub const XENVER_VERSION: u32 = 0;
/// `XENVER_extraversion`: fills a 16-byte [`ExtraVersion`].
pub const XENVER_EXTRAVERSION: u32 = 1;
/// `XENVER_get_features`: fills a [`FeatureInfo`].
pub const XENVER_GET_FEATURES: u32 = 6;

/// `xen_extraversion_t`: a NUL-padded string such as `".7"`.
pub type ExtraVersion = [u8; 16];

/// `struct xen_feature_info`: one 32-bit word of the feature bitmap.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureInfo {
    /// Which 32-bit word of the bitmap to read (in).
    pub submap_idx: u32,
    /// The 32 feature bits of that word (out).
    pub submap: u32,
}

/// Splits the `XENVER_version` result into `(major, minor)`.
pub const fn split_version(raw: u32) -> (u16, u16) {
    ((raw >> 16) as u16, (raw & 0xffff) as u16)
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_split() {
        assert_eq!(super::split_version(0x0004_0011), (4, 17));
        assert_eq!(core::mem::size_of::<super::FeatureInfo>(), 8);
    }
}
