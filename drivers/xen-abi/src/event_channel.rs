//! Event channel operations (`event_channel.h`) and virtual IRQ numbers (`xen.h`).
//!
//! Source: `xen/include/public/event_channel.h` and the `VIRQ_*` list of
//! `xen/include/public/xen.h` (Xen 4.17). Each `EVTCHNOP_*` is the first argument
//! of `__HYPERVISOR_event_channel_op`; the second is a pointer to the matching
//! struct below. Ports (`evtchn_port_t`) are `u32`.

use crate::DomId;

/// `evtchn_port_t`: an event channel port number.
pub type EvtchnPort = u32;

/// `EVTCHNOP_bind_interdomain`: argument is an [`EvtchnBindInterdomain`].
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// `EVTCHNOP_bind_virq`: argument is an [`EvtchnBindVirq`].
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// `EVTCHNOP_bind_pirq` (physical IRQs; not used by a PVH domU).
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// `EVTCHNOP_close`: argument is an [`EvtchnClose`].
pub const EVTCHNOP_CLOSE: u32 = 3;
/// `EVTCHNOP_send`: notify the remote end of a port; argument is an [`EvtchnSend`].
pub const EVTCHNOP_SEND: u32 = 4;
/// `EVTCHNOP_status`: argument is an [`EvtchnStatus`].
pub const EVTCHNOP_STATUS: u32 = 5;
/// `EVTCHNOP_alloc_unbound`: argument is an [`EvtchnAllocUnbound`].
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// `EVTCHNOP_bind_ipi`: argument is an [`EvtchnBindIpi`].
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// `EVTCHNOP_bind_vcpu`: argument is an [`EvtchnBindVcpu`].
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// `EVTCHNOP_unmask`: argument is an [`EvtchnUnmask`].
pub const EVTCHNOP_UNMASK: u32 = 9;
/// `EVTCHNOP_reset`: argument is an [`EvtchnReset`].
pub const EVTCHNOP_RESET: u32 = 10;
/// `EVTCHNOP_init_control` (FIFO ABI; not used here).
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
/// `EVTCHNOP_expand_array` (FIFO ABI; not used here).
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
/// `EVTCHNOP_set_priority` (FIFO ABI; not used here).
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;

/// `EVTCHN_2L_NR_CHANNELS`: ports in the 2-level ABI on x86_64
/// (`sizeof(xen_ulong_t) * sizeof(xen_ulong_t) * 64` = 4096).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 8 * 8 * 64;

/// `struct evtchn_alloc_unbound`: allocate a port in `dom` that `remote_dom`
/// may bind to. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    /// IN: the domain to allocate in; a domU must pass [`crate::DOMID_SELF`].
    pub dom: DomId,
    /// IN: the domain allowed to bind the port.
    pub remote_dom: DomId,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_interdomain`: connect to an unbound port of
/// `remote_dom`. 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindInterdomain {
    /// IN: the remote domain.
    pub remote_dom: DomId,
    /// IN: the remote domain's unbound port.
    pub remote_port: EvtchnPort,
    /// OUT: the new local port.
    pub local_port: EvtchnPort,
}

/// `struct evtchn_bind_virq`: bind a virtual IRQ (`VIRQ_*`) on a vCPU. 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    /// IN: one of the `VIRQ_*` numbers.
    pub virq: u32,
    /// IN: the vCPU to deliver on (global VIRQs must start on vCPU 0).
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_ipi`: a port for inter-vCPU notifications. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindIpi {
    /// IN: the vCPU to notify.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}

/// `struct evtchn_close`: close a local port (an interdomain peer goes back to
/// unbound). 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnClose {
    /// IN: the local port.
    pub port: EvtchnPort,
}

/// `struct evtchn_send`. 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSend {
    /// The local port to notify through.
    pub port: u32,
}

/// `EVTCHNSTAT_closed`: the port is not in use.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// `EVTCHNSTAT_unbound`: waiting for an interdomain connection.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// `EVTCHNSTAT_interdomain`: connected to a remote domain.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// `EVTCHNSTAT_pirq`: bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// `EVTCHNSTAT_virq`: bound to a virtual IRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// `EVTCHNSTAT_ipi`: bound to an IPI.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// `struct evtchn_status`: query a port. 24 bytes.
///
/// The C union `u` (8 bytes, 4-aligned) is kept as two words; use the accessor
/// matching [`EvtchnStatus::status`]. The accessors assume little-endian x86.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatus {
    /// IN: the domain owning the port ([`crate::DOMID_SELF`] for a domU).
    pub dom: DomId,
    /// IN: the port.
    pub port: EvtchnPort,
    /// OUT: one of the `EVTCHNSTAT_*` values.
    pub status: u32,
    /// OUT: the vCPU the port notifies.
    pub vcpu: u32,
    /// OUT: the raw union `u`.
    pub u: [u32; 2],
}

impl EvtchnStatus {
    /// `u.unbound.dom` / `u.interdomain.dom`: the remote domain.
    pub const fn remote_dom(&self) -> DomId {
        self.u[0] as DomId
    }
    /// `u.interdomain.port`: the remote port.
    pub const fn remote_port(&self) -> EvtchnPort {
        self.u[1]
    }
    /// `u.pirq` / `u.virq`: the bound IRQ number.
    pub const fn irq(&self) -> u32 {
        self.u[0]
    }
}

/// `struct evtchn_bind_vcpu`: choose the vCPU a port notifies. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVcpu {
    /// IN: the port.
    pub port: EvtchnPort,
    /// IN: the vCPU.
    pub vcpu: u32,
}

/// `struct evtchn_unmask`: unmask a port and redeliver if it is pending. 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnUnmask {
    /// IN: the port.
    pub port: EvtchnPort,
}

/// `struct evtchn_reset`: close all of a domain's ports. 2 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnReset {
    /// IN: the domain ([`crate::DOMID_SELF`]).
    pub dom: DomId,
}

/// `VIRQ_TIMER` (per vCPU): the single-shot or periodic timer fired.
pub const VIRQ_TIMER: u32 = 0;
/// `VIRQ_DEBUG` (per vCPU): asked to dump debug state.
pub const VIRQ_DEBUG: u32 = 1;
/// `VIRQ_CONSOLE` (global, dom0): emergency console input.
pub const VIRQ_CONSOLE: u32 = 2;
/// `VIRQ_DOM_EXC` (global, dom0): a domain had an exceptional event.
pub const VIRQ_DOM_EXC: u32 = 3;
/// `VIRQ_TBUF` (global, dom0): trace buffer records available.
pub const VIRQ_TBUF: u32 = 4;
/// `VIRQ_DEBUGGER` (global, dom0): a domain paused for debugging.
pub const VIRQ_DEBUGGER: u32 = 6;
/// `VIRQ_XENOPROF` (per vCPU): profiling sample available.
pub const VIRQ_XENOPROF: u32 = 7;
/// `VIRQ_CON_RING` (global, dom0): console ring input.
pub const VIRQ_CON_RING: u32 = 8;
/// `VIRQ_PCPU_STATE` (global, dom0): a physical CPU changed state.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// `VIRQ_MEM_EVENT` (global, dom0): a memory event occurred.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// `VIRQ_ARGO` (global): Argo message notification.
pub const VIRQ_ARGO: u32 = 11;
/// `VIRQ_ENOMEM` (global, dom0): Xen is low on heap memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// `VIRQ_XENPMU` (per vCPU): performance counter interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// `VIRQ_ARCH_0`: first of the 8 architecture-specific VIRQs (16..=23).
pub const VIRQ_ARCH_0: u32 = 16;
/// `NR_VIRQS`: one past the highest VIRQ number.
pub const NR_VIRQS: u32 = 24;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn op_numbers_match_event_channel_h() {
        let ops = [
            EVTCHNOP_BIND_INTERDOMAIN,
            EVTCHNOP_BIND_VIRQ,
            EVTCHNOP_BIND_PIRQ,
            EVTCHNOP_CLOSE,
            EVTCHNOP_SEND,
            EVTCHNOP_STATUS,
            EVTCHNOP_ALLOC_UNBOUND,
            EVTCHNOP_BIND_IPI,
            EVTCHNOP_BIND_VCPU,
            EVTCHNOP_UNMASK,
            EVTCHNOP_RESET,
            EVTCHNOP_INIT_CONTROL,
            EVTCHNOP_EXPAND_ARRAY,
            EVTCHNOP_SET_PRIORITY,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(op as usize, i);
        }
        assert_eq!(EVTCHN_2L_NR_CHANNELS, 4096);
        assert_eq!(VIRQ_TIMER, 0);
        assert_eq!(VIRQ_ARCH_0 + 8, NR_VIRQS);
    }

    #[test]
    fn layouts_match_event_channel_h() {
        assert_eq!(size_of::<EvtchnAllocUnbound>(), 8);
        assert_eq!(offset_of!(EvtchnAllocUnbound, remote_dom), 2);
        assert_eq!(offset_of!(EvtchnAllocUnbound, port), 4);

        assert_eq!(size_of::<EvtchnBindInterdomain>(), 12);
        assert_eq!(offset_of!(EvtchnBindInterdomain, remote_port), 4);
        assert_eq!(offset_of!(EvtchnBindInterdomain, local_port), 8);

        assert_eq!(size_of::<EvtchnBindVirq>(), 12);
        assert_eq!(offset_of!(EvtchnBindVirq, vcpu), 4);
        assert_eq!(offset_of!(EvtchnBindVirq, port), 8);

        assert_eq!(size_of::<EvtchnBindIpi>(), 8);
        assert_eq!(offset_of!(EvtchnBindIpi, port), 4);
        assert_eq!(size_of::<EvtchnClose>(), 4);
        assert_eq!(size_of::<EvtchnSend>(), 4);

        assert_eq!(size_of::<EvtchnStatus>(), 24);
        assert_eq!(align_of::<EvtchnStatus>(), 4);
        assert_eq!(offset_of!(EvtchnStatus, port), 4);
        assert_eq!(offset_of!(EvtchnStatus, status), 8);
        assert_eq!(offset_of!(EvtchnStatus, vcpu), 12);
        assert_eq!(offset_of!(EvtchnStatus, u), 16);

        assert_eq!(size_of::<EvtchnBindVcpu>(), 8);
        assert_eq!(offset_of!(EvtchnBindVcpu, vcpu), 4);
        assert_eq!(size_of::<EvtchnUnmask>(), 4);
        assert_eq!(size_of::<EvtchnReset>(), 2);
    }

    #[test]
    fn status_union_accessors() {
        let s = EvtchnStatus {
            status: EVTCHNSTAT_INTERDOMAIN,
            u: [0x0001, 17],
            ..EvtchnStatus::default()
        };
        assert_eq!(s.remote_dom(), 1);
        assert_eq!(s.remote_port(), 17);
        assert_eq!(s.irq(), 1);
    }
}
