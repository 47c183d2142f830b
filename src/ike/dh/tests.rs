use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

#[test]
fn agreement_every_group() {
    let mut rng = StdRng::seed_from_u64(1);
    for g in DhGroup::ALL {
        let a = DhPrivate::generate(g, &mut rng);
        let b = DhPrivate::generate(g, &mut rng);
        let (pa, pb) = (a.public_value(), b.public_value());
        assert_eq!(pa.len(), g.len());
        let za = a.shared_secret(&pb).unwrap();
        let zb = b.shared_secret(&pa).unwrap();
        assert_eq!(za.as_bytes(), zb.as_bytes());
        assert_eq!(za.as_bytes().len(), g.len());
    }
}
