use super::harness::*;
use crate::ike::Event;

#[test]
fn main_mode_and_quick_mode_agree_on_keys() {
    let mut p = Pair::new(config("ToB", true), config("ToA", false), 1);
    p.run_until(5.0);
    let fa = p.failures(0);
    let fb = p.failures(1);
    assert!(fa.is_empty() && fb.is_empty(), "{fa:?} {fb:?}");
    let a = p.installed(0);
    let b = p.installed(1);
    assert_eq!(a.len(), 1, "{:?}", p.events(0));
    assert_eq!(b.len(), 1, "{:?}", p.events(1));
    assert_crosswise(&a[0], &b[0]);
    assert!(
        p.events(0)
            .iter()
            .any(|e| matches!(e, Event::IsakmpSaEstablished { .. }))
    );
}
