//! External interrupt vectors: a fixed block of IDT entries the kernel attaches handlers to.
//!
//! The IDT is built once and never modified after `lidt`. Instead of patching entries at
//! run time, [`crate::idt`] points every vector of [`EXTERNAL_VECTORS`] at a trampoline
//! generated here; the trampoline looks up the handler registered for its vector with
//! [`register_interrupt_handler`] and calls it. Registration is permanent (one handler per
//! vector for the domain's life, which is what an event-channel upcall needs: the same
//! handler serves again after a resume).
//!
//! Handlers run in interrupt context on the interrupted stack, with interrupts disabled
//! (the entries are interrupt gates), and must not take locks the interrupted code may
//! hold. No end-of-interrupt is sent here: whoever programs the source knows whether
//! one is needed (Xen's `HVM_PARAM_CALLBACK_IRQ` vector delivery needs none).
//!
//! An interrupt on a vector of the block with no handler is reported like a CPU
//! exception (name `#INT`, the vector, error 0), which ends the domain: nothing should
//! be able to raise it.

use core::fmt;

use spin::Once;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame};

use crate::idt::{FaultReport, report};

/// The first vector of the block (Linux uses 0xf3 for Xen's callback; the block
/// 0xf0..=0xf7 sits above anything a legacy PIC or the kernel's exceptions use).
pub const FIRST_EXTERNAL_VECTOR: u8 = 0xf0;
/// Number of vectors in the block.
pub const EXTERNAL_VECTOR_COUNT: u8 = 8;
/// The vectors handlers can be registered for.
pub const EXTERNAL_VECTORS: core::ops::RangeInclusive<u8> =
    FIRST_EXTERNAL_VECTOR..=FIRST_EXTERNAL_VECTOR + (EXTERNAL_VECTOR_COUNT - 1);

/// An interrupt handler: called with interrupts disabled, returns to the interrupted code.
pub type InterruptHandler = fn();

/// Why [`register_interrupt_handler`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The vector is outside [`EXTERNAL_VECTORS`].
    NotExternal(u8),
    /// A handler is already registered for the vector.
    AlreadyRegistered(u8),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::NotExternal(v) => write!(
                f,
                "vector {v:#x} is outside {:#x}..={:#x}",
                EXTERNAL_VECTORS.start(),
                EXTERNAL_VECTORS.end()
            ),
            RegisterError::AlreadyRegistered(v) => {
                write!(f, "vector {v:#x} already has a handler")
            }
        }
    }
}

/// The registered handlers, indexed by `vector - FIRST_EXTERNAL_VECTOR`. `Once::get`
/// is a single atomic load, so the trampolines never wait for anything.
static HANDLERS: [Once<InterruptHandler>; EXTERNAL_VECTOR_COUNT as usize] =
    [const { Once::new() }; EXTERNAL_VECTOR_COUNT as usize];

/// Registers `handler` for `vector` (one of [`EXTERNAL_VECTORS`]), for good.
///
/// Register before anything can raise the vector (before telling Xen about it).
pub fn register_interrupt_handler(
    vector: u8,
    handler: InterruptHandler,
) -> Result<(), RegisterError> {
    let slot = vector
        .checked_sub(FIRST_EXTERNAL_VECTOR)
        .and_then(|i| HANDLERS.get(usize::from(i)))
        .ok_or(RegisterError::NotExternal(vector))?;
    let mut fresh = false;
    slot.call_once(|| {
        fresh = true;
        handler
    });
    if fresh {
        Ok(())
    } else {
        Err(RegisterError::AlreadyRegistered(vector))
    }
}

/// Runs the handler of block entry `index`, or reports the stray interrupt.
fn dispatch(index: u8, frame: &InterruptStackFrame) {
    match HANDLERS.get(usize::from(index)).and_then(Once::get) {
        Some(handler) => handler(),
        None => report(&FaultReport::new(
            "#INT",
            FIRST_EXTERNAL_VECTOR.wrapping_add(index),
            0,
            frame,
            None,
        )),
    }
}

/// Defines one trampoline per block entry.
macro_rules! trampolines {
    ($($name:ident = $index:literal),* $(,)?) => {
        $(
            extern "x86-interrupt" fn $name(frame: InterruptStackFrame) {
                dispatch($index, &frame);
            }
        )*
        /// The trampolines in block order.
        const TRAMPOLINES: [extern "x86-interrupt" fn(InterruptStackFrame);
            EXTERNAL_VECTOR_COUNT as usize] = [$($name),*];
    };
}

trampolines!(
    external_0 = 0,
    external_1 = 1,
    external_2 = 2,
    external_3 = 3,
    external_4 = 4,
    external_5 = 5,
    external_6 = 6,
    external_7 = 7,
);

/// Points every vector of the block at its trampoline (called while building the IDT).
pub(crate) fn install(idt: &mut InterruptDescriptorTable) {
    for (vector, trampoline) in EXTERNAL_VECTORS.zip(TRAMPOLINES) {
        idt[vector].set_handler_fn(trampoline);
    }
}
