//! Cross-checks our definitions against the `xen-sys` crate (bindgen output of
//! Xen's `xen.h` and `event_channel.h`), an independent transcription.
//!
//! `xen-sys` 0.0.0-pre2 was generated with `__XEN_INTERFACE_VERSION__ = 0`, so its
//! `vcpu_time_info` still has `pad1: [i8; 3]` where 4.17 has `flags` + `pad1[2]`;
//! the offsets are compared accordingly. It does not cover `errno.h`,
//! `features.h`, `memory.h`, `vcpu.h`, `io/netif.h` or `io/blkif.h`.
#![cfg(target_arch = "x86_64")]

use core::mem::{align_of, offset_of, size_of};
use xen_abi::event_channel as ev;
use xen_abi::shared_info as si;
use xen_sys as xs;

macro_rules! same_layout {
    ($ours:ty, $theirs:ty, [$($field:ident),* $(,)?]) => {{
        assert_eq!(size_of::<$ours>(), size_of::<$theirs>(), "size of {}", stringify!($ours));
        assert_eq!(align_of::<$ours>(), align_of::<$theirs>(), "align of {}", stringify!($ours));
        $(
            assert_eq!(
                offset_of!($ours, $field),
                offset_of!($theirs, $field),
                "{}.{}",
                stringify!($ours),
                stringify!($field)
            );
        )*
    }};
}

#[test]
fn event_channel_numbers() {
    assert_eq!(ev::EVTCHNOP_BIND_INTERDOMAIN, xs::EVTCHNOP_bind_interdomain);
    assert_eq!(ev::EVTCHNOP_BIND_VIRQ, xs::EVTCHNOP_bind_virq);
    assert_eq!(ev::EVTCHNOP_BIND_PIRQ, xs::EVTCHNOP_bind_pirq);
    assert_eq!(ev::EVTCHNOP_CLOSE, xs::EVTCHNOP_close);
    assert_eq!(ev::EVTCHNOP_SEND, xs::EVTCHNOP_send);
    assert_eq!(ev::EVTCHNOP_STATUS, xs::EVTCHNOP_status);
    assert_eq!(ev::EVTCHNOP_ALLOC_UNBOUND, xs::EVTCHNOP_alloc_unbound);
    assert_eq!(ev::EVTCHNOP_BIND_IPI, xs::EVTCHNOP_bind_ipi);
    assert_eq!(ev::EVTCHNOP_BIND_VCPU, xs::EVTCHNOP_bind_vcpu);
    assert_eq!(ev::EVTCHNOP_UNMASK, xs::EVTCHNOP_unmask);
    assert_eq!(ev::EVTCHNOP_RESET, xs::EVTCHNOP_reset);
    assert_eq!(ev::EVTCHNOP_INIT_CONTROL, xs::EVTCHNOP_init_control);
    assert_eq!(ev::EVTCHNOP_EXPAND_ARRAY, xs::EVTCHNOP_expand_array);
    assert_eq!(ev::EVTCHNOP_SET_PRIORITY, xs::EVTCHNOP_set_priority);

    assert_eq!(ev::EVTCHNSTAT_CLOSED, xs::EVTCHNSTAT_closed);
    assert_eq!(ev::EVTCHNSTAT_UNBOUND, xs::EVTCHNSTAT_unbound);
    assert_eq!(ev::EVTCHNSTAT_INTERDOMAIN, xs::EVTCHNSTAT_interdomain);
    assert_eq!(ev::EVTCHNSTAT_PIRQ, xs::EVTCHNSTAT_pirq);
    assert_eq!(ev::EVTCHNSTAT_VIRQ, xs::EVTCHNSTAT_virq);
    assert_eq!(ev::EVTCHNSTAT_IPI, xs::EVTCHNSTAT_ipi);
}

#[test]
fn virq_numbers() {
    let pairs = [
        (ev::VIRQ_TIMER, xs::VIRQ_TIMER),
        (ev::VIRQ_DEBUG, xs::VIRQ_DEBUG),
        (ev::VIRQ_CONSOLE, xs::VIRQ_CONSOLE),
        (ev::VIRQ_DOM_EXC, xs::VIRQ_DOM_EXC),
        (ev::VIRQ_TBUF, xs::VIRQ_TBUF),
        (ev::VIRQ_DEBUGGER, xs::VIRQ_DEBUGGER),
        (ev::VIRQ_XENOPROF, xs::VIRQ_XENOPROF),
        (ev::VIRQ_CON_RING, xs::VIRQ_CON_RING),
        (ev::VIRQ_PCPU_STATE, xs::VIRQ_PCPU_STATE),
        (ev::VIRQ_MEM_EVENT, xs::VIRQ_MEM_EVENT),
        (ev::VIRQ_ARGO, xs::VIRQ_ARGO),
        (ev::VIRQ_ENOMEM, xs::VIRQ_ENOMEM),
        (ev::VIRQ_XENPMU, xs::VIRQ_XENPMU),
        (ev::VIRQ_ARCH_0, xs::VIRQ_ARCH_0),
        (ev::VIRQ_ARCH_0 + 7, xs::VIRQ_ARCH_7),
    ];
    for (ours, theirs) in pairs {
        assert_eq!(ours, theirs);
    }
}

#[test]
fn event_channel_layouts() {
    same_layout!(
        ev::EvtchnAllocUnbound,
        xs::evtchn_alloc_unbound,
        [dom, remote_dom, port]
    );
    same_layout!(
        ev::EvtchnBindInterdomain,
        xs::evtchn_bind_interdomain,
        [remote_dom, remote_port, local_port]
    );
    same_layout!(ev::EvtchnBindVirq, xs::evtchn_bind_virq, [virq, vcpu, port]);
    same_layout!(ev::EvtchnBindIpi, xs::evtchn_bind_ipi, [vcpu, port]);
    same_layout!(ev::EvtchnClose, xs::evtchn_close, [port]);
    same_layout!(ev::EvtchnSend, xs::evtchn_send, [port]);
    same_layout!(
        ev::EvtchnStatus,
        xs::evtchn_status,
        [dom, port, status, vcpu, u]
    );
    same_layout!(ev::EvtchnBindVcpu, xs::evtchn_bind_vcpu, [port, vcpu]);
    same_layout!(ev::EvtchnUnmask, xs::evtchn_unmask, [port]);
    same_layout!(ev::EvtchnReset, xs::evtchn_reset, [dom]);
}

#[test]
fn shared_info_layouts() {
    assert_eq!(si::XEN_LEGACY_MAX_VCPUS, xs::XEN_LEGACY_MAX_VCPUS as usize);
    same_layout!(si::ArchVcpuInfo, xs::arch_vcpu_info, [cr2, pad]);
    same_layout!(
        si::VcpuTimeInfo,
        xs::vcpu_time_info,
        [
            version,
            pad0,
            tsc_timestamp,
            system_time,
            tsc_to_system_mul,
            tsc_shift
        ]
    );
    // 4.17's `flags` sits where the interface-version-0 `pad1[3]` starts.
    assert_eq!(
        offset_of!(si::VcpuTimeInfo, flags),
        offset_of!(xs::vcpu_time_info, pad1)
    );
    same_layout!(
        si::VcpuInfo,
        xs::vcpu_info,
        [
            evtchn_upcall_pending,
            evtchn_upcall_mask,
            evtchn_pending_sel,
            arch,
            time
        ]
    );
    same_layout!(
        si::ArchSharedInfo,
        xs::arch_shared_info,
        [
            max_pfn,
            pfn_to_mfn_frame_list_list,
            nmi_reason,
            p2m_cr3,
            p2m_vaddr,
            p2m_generation
        ]
    );
    same_layout!(
        si::SharedInfo,
        xs::shared_info,
        [
            vcpu_info,
            evtchn_pending,
            evtchn_mask,
            wc_version,
            wc_sec,
            wc_nsec,
            wc_sec_hi,
            arch
        ]
    );
}
