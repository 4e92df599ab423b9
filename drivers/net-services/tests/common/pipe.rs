//! An in-memory Ethernet cable for the smoltcp host tests (loopback, fragments).

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

/// Frames queued on one direction of the cable.
pub type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of an in-memory Ethernet cable (frames up to 1514 bytes, like
/// netfront: a longer one fails the test). While `down` (the guest's netfront
/// reconnecting after a restore) it sends nothing and what arrives is lost.
pub struct PipeEnd {
    pub rx: Queue,
    pub tx: Queue,
    pub down: Rc<Cell<bool>>,
}

/// The two ends of a new cable, both up.
pub fn cable() -> (PipeEnd, PipeEnd) {
    let a: Queue = Rc::default();
    let b: Queue = Rc::default();
    (
        PipeEnd {
            rx: a.clone(),
            tx: b.clone(),
            down: Rc::default(),
        },
        PipeEnd {
            rx: b,
            tx: a,
            down: Rc::default(),
        },
    )
}

pub struct Rx(Vec<u8>);
pub struct Tx(Queue);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        assert!(len <= 1514, "a {len}-byte frame on a 1514-byte link");
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.borrow_mut().push_back(buf);
        r
    }
}

impl Device for PipeEnd {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx)> {
        if self.down.get() {
            self.rx.borrow_mut().clear();
            return None;
        }
        let f = self.rx.borrow_mut().pop_front()?;
        Some((Rx(f), Tx(self.tx.clone())))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx> {
        if self.down.get() {
            return None;
        }
        Some(Tx(self.tx.clone()))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}
