//! HVM operations and parameters (`hvm/hvm_op.h`, `hvm/params.h`).

/// `HVMOP_set_param`: argument is a [`HvmParam`].
pub const HVMOP_SET_PARAM: u32 = 0;
/// `HVMOP_get_param`: argument is a [`HvmParam`].
pub const HVMOP_GET_PARAM: u32 = 1;
/// `HVMOP_set_evtchn_upcall_vector`: argument is a [`SetEvtchnUpcallVector`].
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u32 = 23;

/// `struct xen_hvm_param`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmParam {
    /// Domain; use [`crate::DOMID_SELF`].
    pub domid: u16,
    /// One of the `HVM_PARAM_*` indices.
    pub index: u32,
    /// The value read or written.
    pub value: u64,
}

/// `struct xen_hvm_evtchn_upcall_vector`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetEvtchnUpcallVector {
    /// The vCPU.
    pub vcpu: u32,
    /// The IDT vector to deliver event upcalls on.
    pub vector: u8,
}

/// `HVM_PARAM_CALLBACK_IRQ`: how event-channel upcalls are delivered.
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_STORE_PFN`: the xenstore ring page.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`: the xenstore event channel.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_CONSOLE_PFN`: the PV console ring page.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`: the PV console event channel.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;

/// `HVM_PARAM_CALLBACK_TYPE_VECTOR` in bits 63:56 of `HVM_PARAM_CALLBACK_IRQ`;
/// the vector goes in bits 7:0.
pub const CALLBACK_TYPE_VECTOR: u64 = 2;

/// Builds the `HVM_PARAM_CALLBACK_IRQ` value that delivers upcalls on `vector`.
pub const fn callback_via_vector(vector: u8) -> u64 {
    (CALLBACK_TYPE_VECTOR << 56) | vector as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_hvm_op_h() {
        assert_eq!(size_of::<HvmParam>(), 16);
        assert_eq!(offset_of!(HvmParam, index), 4);
        assert_eq!(offset_of!(HvmParam, value), 8);
        assert_eq!(size_of::<SetEvtchnUpcallVector>(), 8);
        assert_eq!(callback_via_vector(0xf3), 0x0200_0000_0000_00f3);
    }
}
